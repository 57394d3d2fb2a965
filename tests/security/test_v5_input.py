"""OWASP ASVS 4.0.3, V5 Validation, sanitisation and encoding: the attacks, performed.

Each test name carries the ASVS item it proves (``v5_1_5`` is 5.1.5)."""

from __future__ import annotations

import io

import pytest
from conftest import PASSWORD
from mail_server import body_text

from portal import members
from portal.extensions import db
from portal.models import Member

HX = {"HX-Request": "true"}


def test_v5_1_5_htmx_redirect_to_a_non_ascii_next_is_encoded(client, auth, member_with_totp):
    """Review finding: HX-Redirect carried a raw non-ASCII ``next``; gunicorn dropped the
    response after the code was accepted, so every retry counted as a wrong code."""
    _, totp_obj, _ = member_with_totp
    client.get("/pages/ご案内")  # asks to sign in, remembering where to go
    login = client.post(
        "/login?next=/pages/ご案内",
        data={"login_id": "alice", "password": PASSWORD},
    )
    assert login.location == "/login/verify"
    response = client.post("/login/verify", data={"code": totp_obj.now()}, headers=HX)
    target = response.headers["HX-Redirect"]
    assert target.isascii()
    assert target == "/pages/%E3%81%94%E6%A1%88%E5%86%85"


def test_v5_1_5_htmx_redirect_after_password_only_sign_in_is_encoded(client, member):
    response = client.post(
        "/login?next=/pages/日本語?q=ä#x",
        data={"login_id": "alice", "password": PASSWORD},
        headers=HX,
    )
    assert response.headers["HX-Redirect"].isascii()
    assert response.headers["HX-Redirect"].startswith("/pages/%E6%97%A5%E6%9C%AC%E8%AA%9E")


# Every form with text fields, and the field to send as a file part instead of text.
FILE_PART_TARGETS = [
    ("/login", "login_id", "anonymous"),
    ("/login", "password", "anonymous"),
    ("/login/verify", "code", "pending"),
    ("/login/recovery", "recovery_code", "pending"),
    ("/login/method", "method", "pending"),
    ("/settings/reauth", "code", "signed_in"),
    ("/settings/2fa/app/setup", "code", "signed_in"),
    ("/settings/2fa/email/setup", "code", "signed_in"),
    ("/settings/2fa/preferred", "method", "signed_in"),
    ("/settings/2fa/app/disable", "confirm", "signed_in"),
    ("/settings/profile", "name", "signed_in"),
    ("/settings/profile", "email", "signed_in"),
    ("/settings/profile/confirm", "code", "signed_in"),
    ("/settings/password", "new_password", "signed_in"),
    ("/admin/pages/new", "title", "operator"),
    ("/admin/pages/new", "body", "operator"),
    ("/admin/members/alice/reset", "confirm", "operator"),
]


@pytest.mark.parametrize(("url", "field", "who"), FILE_PART_TARGETS)
def test_v5_1_4_a_file_where_text_is_expected_is_a_field_error(
    request, app, client, auth, member_with_totp, url, field, who
):
    """Review finding: a text field sent as a multipart file part answered 500."""
    _, totp_obj, _ = member_with_totp
    if who == "pending":
        auth.login()
    elif who == "signed_in":
        auth.full_login(totp_obj)
    elif who == "operator":
        client = request.getfixturevalue("admin_client")
    with app.app_context():
        before = db.session.get(Member, 1).__dict__.copy()
    response = client.post(
        url,
        data={field: (io.BytesIO(b"\x00\xff" * 100), "x.bin"), "other": "text"},
        content_type="multipart/form-data",
    )
    assert response.status_code < 500, response.text
    with app.app_context():
        after = db.session.get(Member, 1)
        for column in ("name", "email", "phone", "password_hash", "login_id"):
            assert getattr(after, column) == before[column]


def test_v5_1_4_the_file_is_named_as_a_field_error(client, member):
    response = client.post(
        "/login",
        data={"login_id": (io.BytesIO(b"alice"), "id.txt"), "password": PASSWORD},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    assert "この項目にファイルは送信できません。文字で入力してください。" in response.text
    assert client.get("/").status_code == 302  # not signed in


def test_v5_1_4_a_json_body_is_not_read_as_a_form(client, member):
    response = client.post("/login", json={"login_id": "alice", "password": PASSWORD})
    assert response.status_code == 200 and client.get("/").status_code == 302


@pytest.mark.wired
@pytest.mark.parametrize(
    ("user_agent", "shown"),
    [
        (
            "ignore this, scheduled maintenance, see https://evil.example/reset bot",
            "不明なブラウザ",
        ),
        ("Mozilla/5.0 https://evil.example/ call 0120-000-000 now", "不明なブラウザ"),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
            "(KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
            "Chrome / Windows",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
            "Mobile Safari / iOS",
        ),
    ],
)
def test_v5_2_2_attacker_text_never_reaches_a_notice_mail(
    app, client, member, smtp_server, user_agent, shown
):
    """Review finding: the raw User-Agent (300 characters) was printed in notices, so an
    intruder could write instructions and a link into the owner's genuine mail."""
    client.environ_base["HTTP_USER_AGENT"] = user_agent
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    client.post(
        "/settings/password",
        data={
            "current_password": PASSWORD,
            "new_password": "a brand new passphrase",
            "new_password_confirm": "a brand new passphrase",
        },
    )
    body = body_text(smtp_server.wait_for(1)[0])
    assert f"ブラウザ: {shown}" in body
    assert "evil" not in body and "maintenance" not in body and "0120" not in body
    with app.app_context():
        assert members.check_password(members.find("alice"), "a brand new passphrase")
