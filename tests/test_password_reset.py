"""パスワードをお忘れの方: the link rules (domain, with an injected clock), the pages
(same answer for everyone, rate limits, bad links, password rules, what a reset ends),
and the operators' 「パスワード再設定のリンクを送る」."""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
from conftest import NOW, PASSWORD, PHONE, enrol_app, get_member
from mail_server import body_text
from test_policy import set_policy

from portal import members, password_reset, twofactor
from portal.extensions import db
from portal.models import AuditEvent, PasswordReset, RememberedDevice
from portal.twofactor import devices
from portal.web import background

NEW_PASSWORD = "月曜の朝は 珈琲と 古い 地図"
TOO_MANY = "ログインの試行回数が多すぎます。しばらく待ってから再度お試しください。"
SENT = "入力されたログインIDまたはメールアドレスが登録されている場合は"
INVALID = "このリンクは使えません。"
LINK_RE = re.compile(r"https://portal\.example\.com(/login/reset/[A-Za-z0-9_-]+)")
HX = {"HX-Request": "true"}
# Every CSRF token on a page (the head's meta and each form's hidden field, such as the
# language switch in the footer): signed with the time, so two answers a second apart differ.
CSRF_TOKENS = re.compile(r'(name="csrf[-_]token"[^>]*? (?:content|value)=)"[^"]*"')


def rows(app) -> list[PasswordReset]:
    with app.app_context():
        found = list(db.session.scalars(db.select(PasswordReset).order_by(PasswordReset.id)))
        for row in found:
            db.session.expunge(row)
        return found


def audit_rows(app, event: str) -> list[AuditEvent]:
    with app.app_context():
        found = list(
            db.session.scalars(
                db.select(AuditEvent).where(AuditEvent.event == event).order_by(AuditEvent.id)
            )
        )
        for row in found:
            db.session.expunge(row)
        return found


def add_member(app, login_id: str, email: str, **kw) -> int:
    with app.app_context():
        return members.create(login_id, email=email, password=PASSWORD, **kw).id


def issue(app, login_id: str = "alice", now: datetime | None = None, by: str = "") -> str:
    with app.app_context():
        return password_reset.issue(members.find(login_id), now or datetime.now(UTC), by)


def forgot(client, typed: str, **kw):
    """Ask for a link, and wait for the work done after the answer (the lookup, the
    link, the mail and the audit row run on a background thread)."""
    response = client.post("/login/forgot", data={"login_id": typed}, **kw)
    background.wait_idle()
    return response


def open_link(client, token: str):
    return client.get(f"/login/reset/{token}")


def set_new(client, new: str = NEW_PASSWORD, confirm: str | None = None):
    data = {"new_password": new, "new_password_confirm": new if confirm is None else confirm}
    return client.post("/login/reset", data=data)


# --- the link rules (domain) ---------------------------------------------------------------


def test_only_a_keyed_hash_of_the_token_is_stored(app, ctx, member):
    token = password_reset.issue(get_member(member), NOW)
    assert len(token) >= 43  # secrets.token_urlsafe(32): 256 random bits
    [row] = db.session.scalars(db.select(PasswordReset)).all()
    assert re.fullmatch(r"[0-9a-f]{64}", row.token_hash)
    assert token not in row.token_hash
    import hashlib

    assert row.token_hash != hashlib.sha256(token.encode()).hexdigest()  # keyed, not plain
    assert row.expires_at == NOW + timedelta(minutes=30) and row.requested_by == ""


def test_a_link_works_for_30_minutes(app, ctx, member):
    token = password_reset.issue(get_member(member), NOW)
    assert password_reset.find(token, NOW + timedelta(minutes=29, seconds=59)) is not None
    assert password_reset.find(token, NOW + timedelta(minutes=30)) is None
    reset = password_reset.find(token, NOW)
    assert password_reset.opened(reset.token_hash, NOW + timedelta(minutes=30)) is None
    assert password_reset.use(reset.token_hash, NOW + timedelta(minutes=31)) is None


def test_a_link_works_once(app, ctx, member):
    token = password_reset.issue(get_member(member), NOW)
    reset = password_reset.find(token, NOW)
    assert password_reset.use(reset.token_hash, NOW + timedelta(minutes=1)).id == member
    assert password_reset.use(reset.token_hash, NOW + timedelta(minutes=2)) is None
    assert password_reset.find(token, NOW + timedelta(minutes=2)) is None
    assert password_reset.opened(reset.token_hash, NOW + timedelta(minutes=2)) is None


def test_a_newer_link_voids_the_older_one(app, ctx, member):
    m = get_member(member)
    older = password_reset.issue(m, NOW)
    older_hash = password_reset.find(older, NOW).token_hash
    newer = password_reset.issue(m, NOW + timedelta(minutes=1))
    assert password_reset.find(older, NOW + timedelta(minutes=2)) is None
    assert password_reset.opened(older_hash, NOW + timedelta(minutes=2)) is None
    assert password_reset.use(older_hash, NOW + timedelta(minutes=2)) is None
    assert password_reset.find(newer, NOW + timedelta(minutes=2)) is not None


def test_a_token_opens_only_its_own_members_link(app, ctx, member):
    bob = members.create("bob", email="bob@example.com", password=PASSWORD)
    alices = password_reset.issue(get_member(member), NOW)
    bobs = password_reset.issue(bob, NOW)
    assert password_reset.member_of(password_reset.find(bobs, NOW)).login_id == "bob"
    assert password_reset.member_of(password_reset.find(alices, NOW)).login_id == "alice"
    # Using Bob's link leaves Alice's alone, and a newer link for Bob leaves it too.
    assert password_reset.use(password_reset.find(bobs, NOW).token_hash, NOW).login_id == "bob"
    password_reset.issue(bob, NOW)
    assert password_reset.find(alices, NOW) is not None
    assert password_reset.find(alices + "x", NOW) is None
    assert password_reset.find("", NOW) is None and password_reset.opened("", NOW) is None


def test_any_password_change_voids_pending_links(app, ctx, member):
    m = get_member(member)
    token = password_reset.issue(m, NOW)
    members.set_password(m, NEW_PASSWORD)
    assert password_reset.find(token, NOW) is None


def test_who_a_typed_id_or_address_names(app, ctx, member):
    members.create("bob", email="Shared@Example.com", password=PASSWORD)
    members.create("carol", email="shared@example.com", password=PASSWORD)
    assert password_reset.member_for("  ALICE ").id == member
    assert password_reset.member_for("Alice@Example.COM").id == member
    assert password_reset.member_for("shared@example.com") is None  # two members: neither
    assert password_reset.member_for("nobody") is None
    assert password_reset.member_for("nobody@example.com") is None
    assert password_reset.member_for("") is None


# --- asking for a link ---------------------------------------------------------------------


def test_the_login_page_links_to_the_forgotten_password_page(client):
    page = client.get("/login").text
    assert '<a href="/login/forgot">パスワードをお忘れの方</a>' in page
    forgot_page = client.get("/login/forgot")
    assert forgot_page.status_code == 200
    assert "ログインIDまたはメールアドレス" in forgot_page.text


@pytest.mark.wired
def test_the_answer_is_the_same_whoever_is_named(app, client, member, smtp_server):
    """Known ID, known address, unknown ID, unknown address, a member without an
    address, an address two members share: one page, word for word."""
    add_member(app, "bob", "shared@example.com")
    add_member(app, "carol", "shared@example.com")
    add_member(app, "dave", "dave@example.com")
    with app.app_context():
        members.find("dave").email = ""
        db.session.commit()
    answers = set()
    for typed in (
        "alice",
        "ALICE@example.com",
        "nobody",
        "nobody@example.com",
        "dave",
        "shared@example.com",
    ):
        response = forgot(client, typed)
        # The CSRF token is re-signed with the time: the only part that may differ.
        text = CSRF_TOKENS.sub(r'\1""', response.text)
        answers.add((response.status_code, text))
    assert len(answers) == 1
    status, text = answers.pop()
    assert status == 200 and SENT in text and "30分" in text
    # Only Alice's two requests mailed a link (the second voided the first).
    mails = smtp_server.wait_for(2)
    assert [m["To"] for m in mails] == ["alice@example.com", "alice@example.com"]
    assert len(rows(app)) == 1


@pytest.mark.wired
def test_the_mail_carries_a_working_link(app, client, member, smtp_server):
    forgot(client, "alice")
    [mail] = smtp_server.wait_for(1)
    assert "パスワード再設定のご案内" in mail["Subject"]
    text = body_text(mail)
    assert "有効期限は30分" in text and "心当たりがない場合は、このメールを無視してください" in text
    assert "ログインID: alice" in text and "管理者" not in text
    path = LINK_RE.search(text).group(1)  # built from PORTAL_BASE_URL, not the Host header
    assert open_link(client, path.rsplit("/", 1)[1]).location == "/login/reset"


@pytest.mark.wired
def test_the_answer_never_waits_for_the_lookup_or_the_mail(
    app, client, member, smtp_server, monkeypatch
):
    """Timing: a known ID costs a database write and a mail, an unknown one nothing. The
    answer comes before the ID is even looked up, on another thread, so its time is the
    same for both (the reviewer measured 7.7 ms against 2.6 ms when it was not)."""
    release = threading.Event()
    looked_up_on = []
    real_member_for = password_reset.member_for

    def slow_member_for(typed):
        looked_up_on.append(threading.current_thread().name)
        assert release.wait(10)
        return real_member_for(typed)

    monkeypatch.setattr(password_reset, "member_for", slow_member_for)
    for typed in ("alice", "nobody-here"):
        response = client.post("/login/forgot", data={"login_id": typed})
        assert SENT in response.text
    assert smtp_server.messages == [] and rows(app) == []
    release.set()
    background.wait_idle()
    assert all(name.startswith("portal-bg") for name in looked_up_on), looked_up_on
    assert len(looked_up_on) == 2
    assert smtp_server.wait_for(1)[0]["To"] == "alice@example.com"
    assert len(rows(app)) == 1


def test_requests_are_audited_without_what_was_typed(app, client, member):
    forgot(client, "alice")
    forgot(client, "typed-by-mistake-secret")
    known, unknown = audit_rows(app, "password.reset_requested")
    assert known.subject_label == "alice" and json.loads(known.detail) == {
        "mailed": True,
        "via": "login_id",
    }
    assert unknown.subject_id is None and json.loads(unknown.detail)["mailed"] is False
    assert "typed-by-mistake-secret" not in unknown.detail + unknown.subject_label


def test_an_empty_request_is_a_field_error(client, member):
    response = client.post("/login/forgot", data={"login_id": "  "})
    assert "ログインIDまたはメールアドレスを入力してください。" in response.text
    assert SENT not in response.text


def test_a_signed_in_member_is_sent_to_the_password_change(client, member):
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    assert client.get("/login/forgot").location == "/settings/password"


limits = pytest.mark.settings(
    RATELIMIT_ENABLED=True,
    PORTAL_LIMIT_RESET_ADDRESS="4 per minute",
    PORTAL_LIMIT_RESET_ACCOUNT="2 per 15 minutes",
    PORTAL_LIMIT_RESET_TOKEN="3 per minute",
)


def assert_refused(response) -> None:
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 15 * 60
    assert TOO_MANY in response.text and SENT not in response.text


@limits
def test_requests_from_one_address_are_limited(app, client, member):
    for typed in ("a1", "a2", "a3", "a4"):
        assert forgot(client, typed).status_code == 200
    assert_refused(forgot(client, "alice"))
    assert len(rows(app)) == 0  # the refused request issued nothing
    other = app.test_client()
    assert forgot(other, "alice", environ_base={"REMOTE_ADDR": "198.51.100.9"}).status_code == 200


@limits
@pytest.mark.wired
def test_requests_for_one_account_are_limited_and_tell_nothing(app, member, smtp_server):
    """From ever new addresses: an account gets two links per 15 minutes, and an
    unknown ID is refused exactly alike (a refusal does not tell who is registered)."""
    answers = {}
    for typed in ("alice", "nobody"):
        seen = []
        for i in range(4):
            client = app.test_client()
            response = forgot(client, typed, environ_base={"REMOTE_ADDR": f"203.0.113.{i}"})
            seen.append((response.status_code, TOO_MANY in response.text))
        answers[typed] = seen
    assert answers["alice"] == answers["nobody"] == [(200, False)] * 2 + [(429, True)] * 2
    smtp_server.wait_for(2)
    assert len(smtp_server.messages) == 2
    throttled = audit_rows(app, "request.throttled")
    assert {json.loads(e.detail)["bucket"] for e in throttled} == {"reset-account"}


@limits
def test_opening_links_is_limited_per_address(app, client, member):
    for _ in range(3):
        assert INVALID in open_link(client, "guess").text
    refused = open_link(client, issue(app))
    assert refused.status_code == 429 and TOO_MANY in refused.text
    assert "Retry-After" in refused.headers and "/login/reset" not in (refused.location or "")


# --- the link --------------------------------------------------------------------------


def test_opening_the_link_moves_the_token_out_of_the_address(app, client, member):
    response = open_link(client, issue(app))
    assert response.status_code == 302 and response.location == "/login/reset"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    page = client.get("/login/reset")
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"
    assert 'name="new_password"' in page.text and 'name="new_password_confirm"' in page.text
    assert "ログインID「alice」" in page.text
    assert len(rows(app)) == 1 and rows(app)[0].used_at is None  # opening changes nothing


@pytest.mark.parametrize("case", ["unknown", "expired", "used", "voided"])
def test_a_dead_link_says_so_and_offers_a_new_one(app, client, member, case):
    token = issue(app, now=datetime.now(UTC) - timedelta(minutes=31) if case == "expired" else None)
    if case == "used":
        assert open_link(client, token).location == "/login/reset"
        assert set_new(client).location == "/login"
    if case == "voided":
        issue(app)
    if case == "unknown":
        token = "x" * 43
    response = open_link(app.test_client(), token)
    assert response.status_code == 200
    assert INVALID in response.text and 'href="/login/forgot"' in response.text
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_the_form_without_a_link_is_the_dead_link_page(client, member):
    assert INVALID in client.get("/login/reset").text
    response = set_new(client)
    assert INVALID in response.text
    with client.application.app_context():
        assert members.authenticate("alice", PASSWORD) is not None


def test_a_link_that_dies_while_the_form_is_open_cannot_be_used(app, client, member):
    open_link(client, issue(app))
    issue(app)  # a newer link was asked for meanwhile
    assert INVALID in set_new(client).text
    with app.app_context():
        assert members.authenticate("alice", PASSWORD) is not None


def test_every_password_error_shows_at_once(app, client, member):
    open_link(client, issue(app))
    response = set_new(client, "", "")
    assert "新しいパスワードを入力してください。" in response.text
    assert "確認用のパスワードを入力してください。" in response.text
    response = set_new(client, "short", "other")
    assert "12文字以上128文字以内" in response.text
    assert "確認用のパスワードが一致しません。" in response.text
    response = set_new(client, "password1234")
    assert "推測されやすいため使えません" in response.text
    response = set_new(client, "alice-alice-alice-alice")
    assert "ログインID・氏名・メールアドレスを含めないでください。" in response.text
    # The form keeps its shape and echoes no password back.
    assert 'name="new_password_confirm"' in response.text
    assert "alice-alice-alice-alice" not in response.text
    assert 'aria-invalid="true"' in response.text
    with app.app_context():
        assert members.authenticate("alice", PASSWORD) is not None
    assert rows(app)[0].used_at is None  # still usable after mistakes


def test_the_strength_meter_needs_a_working_link(app, client, member):
    weak = client.post("/login/password-strength", data={"new_password": "alice-alice-alice"})
    assert "パスワードの強さ" not in weak.text  # no link: advice only, no judging
    open_link(client, issue(app))
    weak = client.post("/login/password-strength", data={"new_password": "alice-alice-alice"})
    assert "ログインID・氏名・メールアドレスを含めないでください。" in weak.text
    strong = client.post("/login/password-strength", data={"new_password": NEW_PASSWORD})
    assert "パスワードの強さ：" in strong.text and "強い" in strong.text


@pytest.mark.wired
def test_a_reset_ends_everything_but_the_second_step(app, client, member_with_totp, smtp_server):
    member_id, totp_obj, _ = member_with_totp
    # Alice is signed in elsewhere, and one browser skips the code.
    elsewhere = app.test_client()
    elsewhere.post("/login", data={"login_id": "alice", "password": PASSWORD})
    elsewhere.post("/login/verify", data={"code": totp_obj.now()})
    assert elsewhere.get("/").status_code == 200
    with app.app_context():
        devices.remember(
            get_member(member_id), datetime.now(UTC), timedelta(days=30), label="x", ip=""
        )
    token = issue(app)
    open_link(client, token)
    other_token = issue(app, by="")  # a newer link replaces the one opened...
    open_link(client, other_token)
    response = set_new(client)
    assert response.location == "/login"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    page = client.get("/login").text
    assert "パスワードを再設定しました。新しいパスワードでログインしてください。" in page
    assert client.get("/").location.startswith("/login")  # not signed in
    assert elsewhere.get("/").location.startswith("/login")  # every session ended
    with app.app_context():
        assert members.authenticate("alice", PASSWORD) is None
        assert members.authenticate("alice", NEW_PASSWORD) is not None
        assert db.session.scalars(db.select(RememberedDevice)).all() == []
    assert [r.used_at is not None for r in rows(app)] == [True]
    # The link is spent: opening it again says so.
    assert INVALID in open_link(app.test_client(), other_token).text
    # The member is told, and the audit says who asked, never the token.
    notice = smtp_server.wait_for(1)[-1]
    assert "パスワードが再設定されました" in notice["Subject"]
    assert "二段階認証は引き続き必要です" in body_text(notice)
    [done] = audit_rows(app, "password.reset")
    assert done.subject_label == "alice" and done.actor_label == "alice"
    assert other_token not in done.detail and token not in done.detail
    # The new password alone does not sign in: the second step is asked.
    fresh = app.test_client()
    login = fresh.post("/login", data={"login_id": "alice", "password": NEW_PASSWORD})
    assert login.location == "/login/verify"
    assert fresh.get("/").location == "/login/verify"


def test_a_reset_does_not_lift_a_second_step_lock(app, client, member_with_totp):
    with app.app_context():
        m = get_member(member_with_totp[0])
        m.tfa_blocked_at = datetime.now(UTC)
        db.session.commit()
    open_link(client, issue(app))
    assert set_new(client).location == "/login"
    with app.app_context():
        assert get_member(member_with_totp[0]).tfa_blocked_at is not None


def test_two_tabs_cannot_both_use_one_link(app, client, member):
    open_link(client, issue(app))
    with client.session_transaction() as saved:
        copy = dict(saved)
    assert set_new(client).location == "/login"
    second = app.test_client()
    with second.session_transaction() as s:
        s.update(copy)
    assert INVALID in set_new(second, "another long passphrase here").text
    with app.app_context():
        assert members.authenticate("alice", NEW_PASSWORD) is not None


@pytest.mark.settings(WTF_CSRF_ENABLED=True)
def test_forged_requests_issue_and_change_nothing(app, client, member):
    from conftest import extract_csrf

    other = app.test_client()
    forged = extract_csrf(other.get("/login/forgot").text)
    client.get("/login/forgot")
    refused = client.post("/login/forgot", data={"login_id": "alice", "csrf_token": forged})
    assert refused.status_code == 400 and rows(app) == []
    open_link(client, issue(app))
    response = client.post(
        "/login/reset",
        data={"new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD},
    )
    assert response.status_code == 400
    with app.app_context():
        assert members.authenticate("alice", PASSWORD) is not None
    token = extract_csrf(client.get("/login/reset").text)
    response = client.post(
        "/login/reset",
        data={
            "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD,
            "csrf_token": token,
        },
    )
    assert response.location == "/login"


# --- operators ------------------------------------------------------------------------------


@pytest.mark.wired
def test_an_operator_sends_the_link(app, admin_client, member, smtp_server):
    page = admin_client.get("/admin/members/alice").text
    assert "パスワード再設定のリンクを送る" in page
    assert 'hx-get="/admin/members/alice/password-reset"' in page
    dialog = admin_client.get("/admin/members/alice/password-reset", headers=HX).text
    assert "本人からの依頼であることを確認してから送ってください" in dialog
    assert 'action="/admin/members/alice/password-reset"' in dialog
    assert rows(app) == [] and smtp_server.messages == []  # the dialog sends nothing
    done = admin_client.post("/admin/members/alice/password-reset", headers=HX)
    assert "パスワード再設定のリンクを送信しました" in done.text and "a***@example.com" in done.text
    [row] = rows(app)
    assert row.requested_by == "boss"
    [mail] = smtp_server.wait_for(1)
    assert mail["To"] == "alice@example.com"
    text = body_text(mail)
    assert "管理者が" in text and "有効期限は30分" in text
    [event] = audit_rows(app, "admin.password_reset_sent")
    assert event.actor_label == "boss" and event.subject_label == "alice"
    # The member uses it like their own; the audit names the operator who sent it.
    member_client = app.test_client()
    assert open_link(member_client, LINK_RE.search(text).group(1).rsplit("/", 1)[1]).location
    assert set_new(member_client).location == "/login"
    [reset] = audit_rows(app, "password.reset")
    assert json.loads(reset.detail) == {"requested_by": "boss"}


def test_an_operator_post_without_javascript_is_a_page(app, admin_client, member):
    page = admin_client.post("/admin/members/alice/password-reset")
    assert page.status_code == 200 and "<html" in page.text
    assert "パスワード再設定のリンクを送信しました" in page.text
    assert '<a class="button primary" href="/admin/members/alice"' in page.text  # 完了


def test_no_link_for_a_member_without_an_address(app, admin_client, member):
    with app.app_context():
        get_member(member).email = ""
        db.session.commit()
    page = admin_client.get("/admin/members/alice").text
    assert "パスワード再設定のリンクを送る" not in page
    assert "メールアドレスが登録されていないため" in page
    refused = admin_client.post("/admin/members/alice/password-reset", headers=HX)
    assert "メールアドレスが登録されていないため、パスワード再設定のリンクを送れません。" in (
        refused.text
    )
    assert rows(app) == [] and audit_rows(app, "admin.password_reset_sent") == []


def test_a_stale_operator_is_asked_for_the_second_step(app, admin_client, member):
    with admin_client.session_transaction() as s:
        s["tfa_at"] -= 11 * 60
    asked = admin_client.post("/admin/members/alice/password-reset", headers=HX)
    assert "本人確認" in asked.text and rows(app) == []


def test_a_member_cannot_send_links(app, client, member):
    add_member(app, "bob", "bob@example.com")
    with app.app_context():
        enrol_app(members.find("bob"))
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    assert client.post("/admin/members/bob/password-reset").status_code == 403
    assert rows(app) == []


def test_the_access_log_never_holds_a_token():
    """gunicorn writes request lines and referrers; the reset path is redacted in both."""
    from portal.access_log import redact

    token = "Abc-_123" * 6
    assert redact(f"GET /login/reset/{token} HTTP/1.1") == "GET /login/reset/[redacted] HTTP/1.1"
    assert redact(f"https://portal.example.com/login/reset/{token}?x=1") == (
        "https://portal.example.com/login/reset/[redacted]?x=1"
    )
    for untouched in ("POST /login/reset HTTP/1.1", "/login/password-strength", "/login"):
        assert redact(untouched) == untouched


# --- one mailbox must never pass both steps ----------------------------------------------


def give_email_method(app, login_id: str = "alice") -> None:
    from portal.models import ContactMethod

    with app.app_context():
        m = members.find(login_id)
        db.session.add(ContactMethod(member_id=m.id, kind="email", created_at=NOW))
        db.session.commit()


def reset_by_mail(app, client) -> None:
    open_link(client, issue(app))
    assert set_new(client).location == "/login"


@pytest.mark.wired
def test_a_mailbox_alone_cannot_pass_both_steps(app, client, member, smtp_server):
    """The attack: someone who holds only the mailbox resets the password by mail, then
    asks for the second step by mail too. Email is held back until another second step
    is passed; with email alone and recovery codes, a recovery code is asked."""
    give_email_method(app)
    with app.app_context():
        from portal.twofactor import recovery

        codes = recovery.issue(members.find("alice"), NOW)
    reset_by_mail(app, client)
    before = len(smtp_server.messages)
    login = client.post("/login", data={"login_id": "alice", "password": NEW_PASSWORD})
    assert login.location == "/login/recovery"
    page = client.get("/login/recovery").text
    assert "今回のログインではメールの認証コードを使えません" in page
    assert "メールで届いた認証コードを使う" not in page
    # No sign-in code was mailed, and choosing email is ignored.
    client.post("/login/method", data={"method": "email"})
    assert client.get("/login/verify").location == "/login/recovery"
    assert all("ログイン用の認証コード" not in m["Subject"] for m in smtp_server.messages[before:])
    assert client.get("/").location.startswith("/login")
    # A recovery code passes; after that, email counts again.
    assert client.post("/login/recovery", data={"recovery_code": codes[0]}).location == "/"
    client.post("/logout")
    again = app.test_client()
    login = again.post("/login", data={"login_id": "alice", "password": NEW_PASSWORD})
    assert login.location == "/login/verify"
    assert "a***@example.com" in again.get("/login/verify").text


def test_email_alone_without_recovery_codes_is_refused_not_let_in(app, client, member):
    give_email_method(app)
    reset_by_mail(app, client)
    login = client.post("/login", data={"login_id": "alice", "password": NEW_PASSWORD})
    assert login.status_code == 200
    assert "管理者に連絡してください" in login.text
    assert client.get("/").location.startswith("/login")
    assert [e.subject_label for e in audit_rows(app, "signin.mailbox_only")] == ["alice"]


def test_with_an_app_too_the_app_is_asked_and_email_is_not_offered(app, client, member_with_totp):
    _, totp_obj, _ = member_with_totp
    give_email_method(app)
    with app.app_context():
        members.find("alice").preferred_method = "email"
        db.session.commit()
    reset_by_mail(app, client)
    login = client.post("/login", data={"login_id": "alice", "password": NEW_PASSWORD})
    assert login.location == "/login/verify"
    page = client.get("/login/verify").text
    assert "認証アプリ（Google Authenticator など）" in page
    assert "メールでコードを受け取る" not in page
    assert "ほかの方法かリカバリーコードで認証してください" in page
    assert client.post("/login/verify", data={"code": totp_obj.now()}).location == "/"


def test_the_hold_ends_with_the_next_second_step(app, ctx, member_with_totp):
    member, _, _ = member_with_totp
    m = get_member(member)
    assert not twofactor.mailbox_only(m)
    token = password_reset.issue(m, NOW)
    reset = password_reset.find(token, NOW)
    password_reset.use(reset.token_hash, NOW + timedelta(minutes=1))
    m = get_member(member)
    assert m.password_reset_at == NOW + timedelta(minutes=1)
    assert twofactor.mailbox_only(m)
    m.last_second_step_at = NOW  # a second step before the reset does not count
    assert twofactor.mailbox_only(m)
    m.last_second_step_at = NOW + timedelta(minutes=1)
    assert not twofactor.mailbox_only(m)


def test_a_member_without_a_second_step_is_not_held(app, ctx, member):
    """Nothing to hold email back from; a method set up later must simply work."""
    token = password_reset.issue(get_member(member), NOW)
    password_reset.use(password_reset.find(token, NOW).token_hash, NOW)
    m = get_member(member)
    assert m.password_reset_at is None and not twofactor.mailbox_only(m)


def test_an_operator_reset_ends_the_hold(app, ctx, member_with_totp):
    member, _, _ = member_with_totp
    token = password_reset.issue(get_member(member), NOW)
    password_reset.use(password_reset.find(token, NOW).token_hash, NOW)
    assert twofactor.mailbox_only(get_member(member))
    twofactor.reset_all(get_member(member), now=NOW)
    assert not twofactor.mailbox_only(get_member(member))


def test_no_skip_and_no_email_re_auth_while_held(app, client, member_with_totp):
    """The reviewer's attack: app + email, the password reset by mail, a sign-in from a
    trusted network that skips the second step, then a re-auth by an emailed code to
    make the session fresh (which would also end the hold). Neither may happen."""
    _, totp_obj, _ = member_with_totp
    give_email_method(app)
    set_policy(app, trusted_networks="127.0.0.0/24 skip")  # the test client's address
    skipped = app.test_client()
    login = skipped.post("/login", data={"login_id": "alice", "password": PASSWORD})
    assert login.location == "/"  # the network skips the second step before the reset
    reset_by_mail(app, client)
    login = client.post("/login", data={"login_id": "alice", "password": NEW_PASSWORD})
    assert login.location == "/login/verify"  # no skip while held
    assert "メールでコードを受け取る" not in client.get("/login/verify").text
    # Even a session that got in some other way cannot re-authenticate by email.
    with app.app_context():
        m = members.find("alice")
        assert twofactor.verify_any(m, "123456", NOW, "email").ok is False
        assert twofactor.usable_methods(m) == ["app"]
        assert twofactor.mailbox_only(m)
    assert client.post("/login/verify", data={"code": totp_obj.now()}).location == "/"
    with app.app_context():
        assert not twofactor.mailbox_only(members.find("alice"))


@pytest.mark.wired
def test_an_email_change_voids_links_sent_to_the_old_address(app, client, member, smtp_server):
    token = issue(app)
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    client.post(
        "/settings/profile",
        data={"email": "new@example.org", "phone": PHONE, "current_password": PASSWORD},
    )
    mail = smtp_server.wait_for(1)[-1]
    assert "連絡先変更の確認コード" in mail["Subject"]
    code = re.search(r"(\d{6})", body_text(mail)).group(1)
    client.post("/settings/profile/confirm", data={"kind": "email", "code": code})
    with app.app_context():
        assert members.find("alice").email == "new@example.org"
    assert INVALID in open_link(app.test_client(), token).text


def test_a_crash_on_the_link_page_never_logs_the_token(app, client, member, caplog, monkeypatch):
    """Flask logs an unhandled error with the request path: the token must not be in it."""
    token = issue(app)

    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(password_reset, "find", broken)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    assert open_link(client, token).status_code == 500
    assert "Exception on /login/reset/[redacted] [GET]" in caplog.text
    assert token not in caplog.text
