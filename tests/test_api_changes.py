"""The admin API's changes (issue 14), with a write token only: the reset (無効化) with
the admin button's effects, mail and audit row."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from conftest import PASSWORD, enrol_app
from mail_server import body_text

from portal import api_tokens, members, sessions, twofactor
from portal.extensions import db
from portal.models import AuditEvent, ContactMethod, RecoveryCode, TotpCredential


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
    assert json.loads(event.detail) == {"methods": ["app", "sms"], "token": "Help desk"}
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
