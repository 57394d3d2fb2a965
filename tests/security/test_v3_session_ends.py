"""OWASP ASVS 4.0.3, V3: sessions that must end — a pending sign-in once used, and
every other session on the member's request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from conftest import PASSWORD

from portal import sessions
from portal.extensions import db
from portal.models import AuditEvent


def test_v3_2_1_a_pending_sign_in_cannot_be_used_again_after_its_second_step(
    app, client, auth, member_with_totp
):
    """A copy of the password-only cookie, taken before the code was entered, must
    not allow a second sign-in with another code while its 5 minutes last."""
    _, totp_obj, codes = member_with_totp
    auth.login()
    pending_cookie = client.get_cookie("portal_session").value
    assert auth.verify(totp_obj.now()).location == "/"
    copy = app.test_client()
    copy.set_cookie("portal_session", pending_cookie)
    later_code = totp_obj.at(datetime.now(UTC) + timedelta(seconds=30))
    for url, data in (
        ("/login/verify", {"code": later_code}),
        ("/login/recovery", {"recovery_code": codes[0]}),
    ):
        response = copy.post(url, data=data)
        assert response.status_code == 302 and response.location == "/login"
    assert copy.get("/").status_code == 302
    assert copy.get("/login/verify").location == "/login"
    # Nothing was spent by the refused attempts.
    from portal import members
    from portal.twofactor import recovery

    with app.app_context():
        assert recovery.remaining(members.find("alice")) == 10


def test_v3_2_1_two_racing_copies_of_one_pending_cookie_sign_in_once(
    app, client, auth, member_with_totp
):
    """Two requests with the same pending cookie and two different valid proofs: only
    one becomes a session."""
    import threading

    _, totp_obj, codes = member_with_totp
    auth.login()
    cookie = client.get_cookie("portal_session").value
    barrier = threading.Barrier(2, timeout=30)
    results = []

    def attempt(url, data):
        c = app.test_client()
        c.set_cookie("portal_session", cookie)
        barrier.wait()
        results.append(c.post(url, data=data).location)

    threads = [
        threading.Thread(target=attempt, args=("/login/verify", {"code": totp_obj.now()})),
        threading.Thread(target=attempt, args=("/login/recovery", {"recovery_code": codes[0]})),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == ["/", "/login"]


def test_v3_3_4_a_member_can_sign_out_every_other_session(app, auth, member_with_totp, monkeypatch):
    _, totp_obj, _ = member_with_totp
    here, laptop, phone = app.test_client(), app.test_client(), app.test_client()
    # Three sign-ins need three time steps: the one before, now and the next. The
    # server's clock holds still meanwhile, so a step ending mid-loop cannot push the
    # first code out of its window.
    signed_in_at = datetime.now(UTC)
    monkeypatch.setattr(sessions, "now", lambda: signed_in_at)
    for offset, client in enumerate((here, laptop, phone)):
        client.post("/login", data={"login_id": "alice", "password": PASSWORD})
        code = totp_obj.at(signed_in_at + timedelta(seconds=30 * (offset - 1)))
        assert client.post("/login/verify", data={"code": code}).location == "/"
    monkeypatch.undo()
    page = here.get("/settings/2fa").text
    assert "すべての端末からサインアウト" in page
    response = here.post("/settings/sessions/end-others")
    assert response.location == "/settings/2fa"
    assert "ほかのすべての端末からサインアウトしました。" in here.get("/settings/2fa").text
    assert here.get("/").status_code == 200
    for other in (laptop, phone):
        assert other.get("/").status_code == 302
    with app.app_context():
        event = db.session.scalar(
            db.select(AuditEvent).where(AuditEvent.event == "sessions.ended_others")
        )
        assert event.subject_label == "alice"


@pytest.mark.settings(WTF_CSRF_ENABLED=True)
def test_v3_3_4_signing_out_others_works_without_javascript_and_needs_csrf(app, member):
    import re

    client = app.test_client()
    token = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/login").text)[1]
    client.post("/login", data={"login_id": "alice", "password": PASSWORD, "csrf_token": token})
    other = app.test_client()
    other_token = re.search(r'name="csrf-token" content="([^"]+)"', other.get("/login").text)[1]
    other.post(
        "/login", data={"login_id": "alice", "password": PASSWORD, "csrf_token": other_token}
    )
    assert client.post("/settings/sessions/end-others").status_code == 400  # forged
    assert other.get("/").status_code == 200
    page = client.get("/settings/2fa").text
    token = re.search(r'name="csrf-token" content="([^"]+)"', page)[1]
    assert (
        client.post("/settings/sessions/end-others", data={"csrf_token": token}).status_code == 302
    )
    assert other.get("/").status_code == 302 and client.get("/").status_code == 200


def test_v3_3_2_a_session_left_alone_for_30_minutes_ends(app, client, auth, member_with_totp):
    _, totp_obj, _ = member_with_totp
    auth.full_login(totp_obj)
    with client.session_transaction() as s:
        s["seen_at"] -= 31 * 60
    response = client.get("/settings/2fa")
    assert response.status_code == 302
    assert response.location.startswith("/login?next=")
    page = client.get(response.location).text
    assert "しばらく操作がなかったため、ログアウトしました。" in page
    assert client.get("/").status_code == 302  # the session does not come back


def test_v3_3_2_activity_keeps_a_session_alive(app, client, auth, member_with_totp):
    _, totp_obj, _ = member_with_totp
    auth.full_login(totp_obj)
    for _ in range(3):  # 3 × 20 minutes of use, each request within the idle limit
        with client.session_transaction() as s:
            s["seen_at"] -= 20 * 60
            s["auth_at"] -= 20 * 60
        assert client.get("/").status_code == 200


@pytest.mark.settings(PORTAL_IDLE_MINUTES=5)
def test_v3_3_2_the_idle_limit_follows_portal_idle_minutes(app, client, member):
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    with client.session_transaction() as s:
        s["seen_at"] -= 4 * 60
    assert client.get("/").status_code == 200
    with client.session_transaction() as s:
        s["seen_at"] -= 6 * 60
    assert client.get("/").status_code == 302
