"""Password guessing is rate limited per client address and per account."""

from __future__ import annotations

import pytest
from conftest import PASSWORD

TOO_MANY = "ログインの試行回数が多すぎます。"

limits_on = pytest.mark.settings(
    RATELIMIT_ENABLED=True,
    PORTAL_LOGIN_LIMIT_PER_ADDRESS="8 per minute",
    PORTAL_LOGIN_LIMIT_PER_ACCOUNT="5 per minute",
    PORTAL_REAUTH_LIMIT="3 per 15 minutes",
)


def wrong(client, login_id="alice", **kw):
    return client.post("/login", data={"login_id": login_id, "password": "wrong password"}, **kw)


@limits_on
def test_account_limit_stops_guessing_even_the_right_password(client, member):
    for _ in range(5):
        assert wrong(client).status_code == 200
    response = client.post("/login", data={"login_id": "ALICE", "password": PASSWORD})
    assert response.status_code == 429 and TOO_MANY in response.text
    assert 'name="password"' in response.text  # the form is still there


@limits_on
def test_address_limit_covers_many_accounts(client, member):
    for i in range(8):
        assert wrong(client, f"user{i}").status_code == 200
    assert wrong(client, "someone").status_code == 429


@limits_on
def test_limit_message_swaps_in_place_for_htmx(client, member):
    for _ in range(5):
        wrong(client)
    response = wrong(client, headers={"HX-Request": "true"})
    assert response.status_code == 429
    assert response.text.lstrip().startswith("<form") and TOO_MANY in response.text


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
    response = client.post(url, data={"password": PASSWORD})
    assert response.status_code == 429 and TOO_MANY in response.text
