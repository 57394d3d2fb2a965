"""The admin API's changes (issue 14), with a write token only: the reset (無効化) with
the admin button's effects, mail and audit row, and the password link (an invitation for
a member without a password, else a reset link)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from conftest import PASSWORD, enrol_app
from mail_server import body_text

from portal import api_tokens, members, notify, sessions, twofactor
from portal.extensions import db
from portal.models import AuditEvent, ContactMethod, PasswordReset, RecoveryCode, TotpCredential


def make_token(app, scope: str, name: str = "Help desk") -> dict[str, str]:
    with app.app_context():
        token = api_tokens.create(name, scope, by="boss", now=sessions.now())[0]
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def write(app) -> dict[str, str]:
    return make_token(app, "write")


@pytest.fixture
def read(app) -> dict[str, str]:
    return make_token(app, "read", "HR system")


@pytest.fixture
def gina(app):
    """A member with an app and SMS, signed in in a browser of her own."""
    with app.app_context():
        m = members.create("gina", email="gina@example.com", password=PASSWORD, name="Gina")
        totp = enrol_app(m)
        db.session.add(ContactMethod(member_id=m.id, kind="sms", created_at=datetime.now(UTC)))
        db.session.commit()
        member_id = m.id
    browser = app.test_client()
    browser.post("/login", data={"login_id": "gina", "password": PASSWORD})
    browser.post("/login/verify", data={"code": totp.now()})
    assert browser.get("/").status_code == 200
    return member_id, browser


def events(app, event: str) -> list[AuditEvent]:
    with app.app_context():
        found = list(db.session.scalars(db.select(AuditEvent).where(AuditEvent.event == event)))
        db.session.expunge_all()
        return found


def has_two_factor(app, login_id: str) -> bool:
    with app.app_context():
        return twofactor.has_two_factor(members.find(login_id))


@pytest.mark.wired
def test_a_reset_has_the_admin_buttons_effects_mail_and_audit(
    app, client, write, gina, smtp_server
):
    member_id, browser = gina
    answer = client.post("/api/v1/members/GINA/reset-2fa", headers=write)
    assert answer.status_code == 200, answer.text
    assert answer.json == {"login_id": "gina", "methods": ["app", "sms"]}
    with app.app_context():
        for model in (TotpCredential, ContactMethod, RecoveryCode):
            assert db.session.scalar(db.select(model).where(model.member_id == member_id)) is None
    assert browser.get("/").status_code == 302  # her sessions ended
    notice = smtp_server.wait_for(1)[-1]
    assert notice["To"] == "gina@example.com" and "無効化" in notice["Subject"]
    assert "パスワードだけでログインできます" in body_text(notice)
    [event] = events(app, "admin.reset_2fa")
    assert (event.actor_label, event.actor_id, event.subject_label) == (
        "api:Help desk",
        None,
        "gina",
    )
    assert json.loads(event.detail) == {
        "methods": ["app", "sms"],
        "token": "Help desk",
        "token_id": 1,
    }
    assert events(app, "api.request") == []  # one row for the call: the reset's own
    fresh = app.test_client()
    signed_in = fresh.post("/login", data={"login_id": "gina", "password": PASSWORD})
    assert signed_in.location == "/settings/2fa/setup"


def test_a_second_reset_is_a_conflict_and_changes_nothing(app, client, write, gina):
    _, browser = gina
    assert client.post("/api/v1/members/gina/reset-2fa", headers=write).status_code == 200
    with app.app_context():
        generation = members.find("gina").session_generation
    again = client.post("/api/v1/members/gina/reset-2fa", headers=write)
    assert again.status_code == 409 and again.json["error"]["code"] == "nothing_to_reset"
    with app.app_context():
        assert members.find("gina").session_generation == generation
    assert len(events(app, "admin.reset_2fa")) == 1
    [call] = events(app, "api.request")
    assert json.loads(call.detail)["status"] == 409


def test_a_read_token_may_not_reset(app, client, read, gina):
    _, browser = gina
    answer = client.post("/api/v1/members/gina/reset-2fa", headers=read)
    assert answer.status_code == 403 and answer.json["error"]["code"] == "insufficient_scope"
    assert has_two_factor(app, "gina") and browser.get("/").status_code == 200
    assert events(app, "admin.reset_2fa") == []
    [call] = events(app, "api.request")
    assert json.loads(call.detail) == {
        "call": "POST /api/v1/members/gina/reset-2fa",
        "status": 403,
        "token": "HR system",
        "token_id": 1,  # a name can be used again: the id tells the tokens apart
    }


def test_an_operators_second_step_is_reset_on_the_admin_page_only(
    app, client, write, operator_totp
):
    answer = client.post("/api/v1/members/boss/reset-2fa", headers=write)
    assert answer.status_code == 403 and answer.json["error"]["code"] == "operator_account"
    assert has_two_factor(app, "boss")


def test_reset_needs_a_known_member_a_token_and_a_post(app, client, write, read, gina):
    missing = client.post("/api/v1/members/nobody/reset-2fa", headers=write)
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"
    # Scope first: a read token learns nothing from the member's name.
    assert client.post("/api/v1/members/nobody/reset-2fa", headers=read).status_code == 403
    assert client.post("/api/v1/members/gina/reset-2fa").status_code == 401
    assert client.get("/api/v1/members/gina/reset-2fa", headers=write).status_code == 405
    assert has_two_factor(app, "gina")


def test_a_signed_in_operator_cannot_be_made_to_reset(app, admin_client, gina):
    """No cookie and no CSRF token on the API: a cross-site form posted through the
    operator's browser has no credential at all."""
    answer = admin_client.post("/api/v1/members/gina/reset-2fa", data={"confirm": "y"})
    assert answer.status_code == 401 and answer.json["error"]["code"] == "token_missing"
    assert has_two_factor(app, "gina")


# --- password links ----------------------------------------------------------------------


def link_rows(app, login_id: str) -> list[PasswordReset]:
    with app.app_context():
        found = list(
            db.session.scalars(
                db.select(PasswordReset).where(PasswordReset.member_id == members.find(login_id).id)
            )
        )
        db.session.expunge_all()
        return found


@pytest.mark.wired
def test_a_member_with_a_password_is_mailed_a_reset_link(app, client, write, member, smtp_server):
    answer = client.post("/api/v1/members/alice/password-link", headers=write)
    assert answer.status_code == 200, answer.text
    assert answer.json == {"login_id": "alice", "kind": "reset", "expires_in_minutes": 30}
    mail = smtp_server.wait_for(1)[-1]
    assert mail["To"] == "alice@example.com"
    assert "https://portal.example.com/login/reset/" in body_text(mail)
    [row] = link_rows(app, "alice")
    assert row.requested_by == "api:Help desk" and row.used_at is None
    [event] = events(app, "admin.password_reset_sent")
    assert event.actor_label == "api:Help desk" and event.subject_label == "alice"
    assert json.loads(event.detail) == {
        "call": "POST /api/v1/members/alice/password-link",
        "mailed": True,
        "token": "Help desk",
        "token_id": 1,
    }
    assert events(app, "api.request") == []  # the call's one row is the sending's
    # A second link voids the first.
    assert client.post("/api/v1/members/alice/password-link", headers=write).status_code == 200
    [newer] = link_rows(app, "alice")
    assert newer.token_hash != row.token_hash


@pytest.mark.wired
def test_a_member_without_a_password_is_mailed_an_invitation(app, client, write, smtp_server):
    with app.app_context():
        m = members.create("newbie", email="newbie@example.com", password=PASSWORD)
        m.password_hash = members.NO_PASSWORD  # as imported
        db.session.commit()
    answer = client.post("/api/v1/members/newbie/password-link", headers=write)
    assert answer.status_code == 200, answer.text
    assert answer.json == {
        "login_id": "newbie",
        "kind": "invitation",
        "expires_in_minutes": app.config["PORTAL_INVITE_DAYS"] * 24 * 60,
    }
    mail = smtp_server.wait_for(1)[-1]
    assert mail["To"] == "newbie@example.com" and "招待" in mail["Subject"]
    [event] = events(app, "member.invited")
    assert event.actor_label == "api:Help desk"
    assert json.loads(event.detail)["days"] == app.config["PORTAL_INVITE_DAYS"]


def test_a_member_without_an_address_gets_no_link(app, client, write, member):
    with app.app_context():
        members.find("alice").email = ""
        db.session.commit()
    answer = client.post("/api/v1/members/alice/password-link", headers=write)
    assert answer.status_code == 409 and answer.json["error"]["code"] == "no_email"
    assert link_rows(app, "alice") == []
    [call] = events(app, "api.request")
    assert json.loads(call.detail)["status"] == 409


def test_a_read_token_may_not_send_links(app, client, read, member):
    answer = client.post("/api/v1/members/alice/password-link", headers=read)
    assert answer.status_code == 403 and answer.json["error"]["code"] == "insufficient_scope"
    assert link_rows(app, "alice") == []
    missing = client.post("/api/v1/members/nobody/password-link", headers=make_token(app, "write"))
    assert missing.status_code == 404


def test_a_mail_server_refusal_is_a_503(app, client, write, member, monkeypatch):
    def refuse(*args, **kwargs):
        raise notify.DeliveryError("refused")

    monkeypatch.setattr(notify, "send_email", refuse)
    answer = client.post("/api/v1/members/alice/password-link", headers=write)
    assert answer.status_code == 503 and answer.json["error"]["code"] == "mail_failed"
    [event] = events(app, "admin.password_reset_sent")
    assert json.loads(event.detail)["mailed"] is False


# --- review of the API -------------------------------------------------------------------


@pytest.mark.wired
@pytest.mark.settings(RATELIMIT_ENABLED=True, PORTAL_LIMIT_RESET_ACCOUNT="3 per 15 minutes")
def test_a_token_cannot_flood_a_members_mailbox(app, client, write, member, smtp_server):
    """Review finding: 40 calls in a row mailed 40 links (each voiding the one before)
    with a looping or stolen token. The calls share パスワードをお忘れの方's limit per
    member: the fourth is a 429 and sends nothing."""
    for _ in range(3):
        response = client.post("/api/v1/members/alice/password-link", headers=write)
        assert response.status_code == 200, response.json
    refused = client.post("/api/v1/members/alice/password-link", headers=write)
    assert refused.status_code == 429 and refused.json["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) > 0
    assert len(smtp_server.wait_for(3)) == 3
    # The member's own forgot-password requests count against the same limit.
    assert client.post("/login/forgot", data={"login_id": "alice"}).status_code == 429


@pytest.mark.wired
def test_no_link_is_mailed_to_an_operator_through_the_api(
    app, client, write, operator, smtp_server
):
    """Review finding: the password link was sent for operators too, though a token never
    changes an operator's account (the admin page does, with a fresh second step)."""
    response = client.post("/api/v1/members/boss/password-link", headers=write)
    assert response.status_code == 403
    assert response.json["error"]["code"] == "operator_account"
    assert smtp_server.messages == []
    with app.app_context():
        assert db.session.scalar(db.select(PasswordReset)) is None


def test_two_tokens_of_one_name_are_told_apart_in_the_log(app, client, gina):
    """Review finding: a revoked token and a new one of the same name both wrote
    api:Help desk: the log could not say which acted. The id goes with the name."""
    old = make_token(app, "read")
    with app.app_context():
        assert api_tokens.revoke(api_tokens.listed()[0], sessions.now())
    new = make_token(app, "read")
    assert client.get("/api/v1/members/gina", headers=old).status_code == 401
    assert client.get("/api/v1/members/gina", headers=new).status_code == 200
    [refused] = events(app, "api.refused")
    [used] = events(app, "api.request")
    assert json.loads(refused.detail)["token_id"] != json.loads(used.detail)["token_id"]
