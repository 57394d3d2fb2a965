"""Rate limits: password checks per address, per account and address, per account
(loose) and per device; second-step pages, re-authentication and admin POSTs per
address. Every 429 carries Retry-After and the portal's message."""

from __future__ import annotations

import pytest
from conftest import PASSWORD

from portal.config import ConfigError, from_environment

TOO_MANY = "ログインの試行回数が多すぎます。"

limits_on = pytest.mark.settings(
    RATELIMIT_ENABLED=True,
    PORTAL_LIMIT_LOGIN_ADDRESS="8 per minute",
    PORTAL_LIMIT_LOGIN_ACCOUNT_ADDRESS="5 per minute",
    PORTAL_LIMIT_LOGIN_ACCOUNT="20 per minute",
    PORTAL_LIMIT_LOGIN_DEVICE="5 per minute",
    PORTAL_LIMIT_REAUTH_PASSWORD="3 per 15 minutes",
    PORTAL_LIMIT_VERIFY="4 per minute",
    PORTAL_LIMIT_RECOVERY="3 per minute",
    PORTAL_LIMIT_RESEND="2 per minute",
    PORTAL_LIMIT_REAUTH="6 per minute",
    PORTAL_LIMIT_ADMIN="3 per minute",
)


def wrong(client, login_id="alice", **kw):
    return client.post("/login", data={"login_id": login_id, "password": "wrong password"}, **kw)


def assert_limited(response, message=TOO_MANY):
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 15 * 60
    assert message in response.text


@limits_on
def test_failures_from_one_address_stop_guessing_even_the_right_password(client, member):
    for _ in range(5):
        assert wrong(client).status_code == 200
    response = client.post("/login", data={"login_id": "ALICE", "password": PASSWORD})
    assert_limited(response)
    assert 'name="password"' in response.text  # the form is still there


@limits_on
def test_refused_requests_do_not_count(app, client, member):
    """Only checked, failed passwords fill an account's buckets: hammering a full bucket
    does not keep it full for longer or spill into the loose per-account bucket."""
    for _ in range(5):
        wrong(client)
    for _ in range(30):
        assert wrong(client).status_code == 429
    other = app.test_client()
    response = other.post(
        "/login",
        data={"login_id": "alice", "password": PASSWORD},
        environ_base={"REMOTE_ADDR": "198.51.100.7"},
    )
    assert response.location == "/"


@limits_on
def test_address_limit_covers_many_accounts(client, member):
    for i in range(8):
        assert wrong(client, f"user{i}").status_code == 200
    assert_limited(wrong(client, "someone"))


@limits_on
def test_limit_message_swaps_in_place_for_htmx(client, member):
    for _ in range(5):
        wrong(client)
    response = wrong(client, headers={"HX-Request": "true"})
    assert_limited(response)
    assert response.text.lstrip().startswith("<form")


@limits_on
def test_other_addresses_are_not_affected_by_one_addresss_limit(app, member):
    a, b = app.test_client(), app.test_client()
    for i in range(8):
        wrong(a, f"user{i}", environ_base={"REMOTE_ADDR": "203.0.113.1"})
    assert wrong(a, "x", environ_base={"REMOTE_ADDR": "203.0.113.1"}).status_code == 429
    response = b.post(
        "/login",
        data={"login_id": "alice", "password": PASSWORD},
        environ_base={"REMOTE_ADDR": "203.0.113.2"},
    )
    assert response.location == "/"


@limits_on
def test_reauth_password_is_limited(client, member):
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    with client.session_transaction() as s:
        s["auth_at"] -= 11 * 60
    url = "/settings/reauth?next=/settings/2fa/app/setup"
    for _ in range(3):
        assert "パスワードが正しくありません。" in client.post(url, data={"password": "x"}).text
    assert_limited(client.post(url, data={"password": PASSWORD}))


@limits_on
@pytest.mark.parametrize(
    ("url", "field", "allowed"),
    [("/login/verify", "code", 4), ("/login/recovery", "recovery_code", 3)],
)
def test_second_step_pages_are_limited_per_address(
    client, auth, member_with_totp, url, field, allowed
):
    _, totp_obj, _ = member_with_totp
    auth.login()
    for _ in range(allowed):
        assert client.post(url, data={field: "000000"}).status_code == 200
    response = client.post(url, data={field: totp_obj.now()})
    assert_limited(response)
    assert client.get("/").status_code == 302  # the right code did not get through


@limits_on
def test_resend_and_method_switch_are_limited_per_address(app, client, auth, member):
    from datetime import UTC, datetime

    from portal import members
    from portal.extensions import db
    from portal.models import ContactMethod

    with app.app_context():
        m = members.find("alice")
        db.session.add(ContactMethod(member_id=m.id, kind="email", created_at=datetime.now(UTC)))
        db.session.commit()
    auth.login()
    for _ in range(2):
        assert client.post("/login/resend").status_code == 200
    assert_limited(client.post("/login/resend"))
    assert_limited(client.post("/login/method", data={"method": "email"}))


@limits_on
def test_reauthentication_is_limited_per_address(client, auth, member_with_totp):
    _, totp_obj, _ = member_with_totp
    auth.full_login(totp_obj)
    url = "/settings/reauth"
    for _ in range(6):
        assert client.post(url, data={"code": "000000"}).status_code in (200, 429)
    assert_limited(client.post(url, data={"code": "000000"}))


@limits_on
def test_admin_posts_are_limited_per_address(app, admin_client):
    for _ in range(3):
        assert admin_client.post("/admin/pages/new", data={"title": ""}).status_code == 200
    response = admin_client.post("/admin/pages/new", data={"title": "t", "slug": "s"})
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
    assert "リクエストが多すぎます。" in response.text
    assert admin_client.get("/admin/").status_code == 200  # reading is not limited


@pytest.mark.parametrize("raw", ["often", "5 per fortnight", ""])
def test_bad_limit_settings_stop_start_up(raw):
    with pytest.raises(ConfigError, match="PORTAL_LIMIT_VERIFY"):
        from_environment({"PORTAL_LIMIT_VERIFY": raw})


def test_limit_settings_come_from_the_environment():
    assert from_environment({"PORTAL_LIMIT_ADMIN": "5 per minute;50 per hour"}) == {
        "PORTAL_LIMIT_ADMIN": "5 per minute;50 per hour"
    }
