"""Email as the second step, in a real Chromium against a real gunicorn that mails
through a real SMTP server: setting it up from the settings dialog, signing in with the
mailed code (a typo, the 60-second resend rule), and switching to email at sign-in when
the authenticator app is the preferred method."""

from __future__ import annotations

import contextlib
import re
import time
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from browser_helpers import (
    PASSWORD,
    RECOVERY_CODE_RE,
    WRONG_CODE,
    Watched,
    close_dialog,
    evidence_on_failure,
    open_page,
    sign_in,
    sign_out,
    verify,
    verify_without_navigation,
)
from live_server import MemberSpec, enrol, run_server
from mail_server import SMTPServer, body_text
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

MAIL_TIMEOUT = 10.0  # seconds for a mail to reach the SMTP server
CODE_RE = re.compile(r"認証コード: (\d{6})")
SETUP_SUBJECT = "二段階認証の設定用の確認コード"
SIGNIN_SUBJECT = "ログイン用の認証コード"
ENABLED_SUBJECT = "二段階認証の方法が追加されました"
RESEND_WAIT = re.compile(r"あと(\d+)秒で再送できます。")


def mail_environment(smtp: SMTPServer) -> dict[str, str]:
    return {
        "MAIL_SERVER": smtp.host,
        "MAIL_PORT": str(smtp.port),
        # Production mode refuses MAIL_SERVER without the public address for links.
        "PORTAL_BASE_URL": "http://127.0.0.1",
        # The tests sign one account in several times within a minute.
        "PORTAL_RATELIMIT": "no",
    }


# --- the member's mailbox -------------------------------------------------------------


def wait_for_mail(
    smtp: SMTPServer, subject_part: str, *, start: int = 0, timeout: float = MAIL_TIMEOUT
) -> EmailMessage:
    """The first message from index ``start`` on whose subject contains ``subject_part``
    (mails sent by one request may arrive in any order); fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        arrived = list(smtp.messages)
        for msg in arrived[start:]:
            if subject_part in str(msg["Subject"]):
                return msg
        left = deadline - time.monotonic()
        if left <= 0:
            subjects = [str(m["Subject"]) for m in arrived[start:]]
            pytest.fail(
                f"no mail with {subject_part!r} in its subject within {timeout} s; got {subjects}"
            )
        # On a timeout the loop above reports what did arrive.
        with contextlib.suppress(pytest.fail.Exception):
            smtp.wait_for(len(arrived) + 1, timeout=left)


def assert_addressed_to(smtp: SMTPServer, msg: EmailMessage, address: str) -> None:
    assert msg["To"] == address, msg["To"]
    envelope = smtp.envelopes[next(i for i, m in enumerate(smtp.messages) if m is msg)]
    assert envelope.rcpt_tos == (address,), envelope


def code_in(msg: EmailMessage) -> str:
    match = CODE_RE.search(body_text(msg))
    assert match, f"no code in the mail:\n{body_text(msg)}"
    return match.group(1)


def other_code(code: str) -> str:
    """A well-formed code that is not the one mailed."""
    return next(c for c in ("000000", "111111", "222222") if c != code)


# --- what a member does -------------------------------------------------------------------


def resend_without_navigation(page: Page, server) -> None:
    """Click コードを再送する right after a code was sent: refused in place (htmx swap)."""
    navigations: list[str] = []

    def navigated(frame) -> None:
        if frame == page.main_frame:
            navigations.append(frame.url)

    page.evaluate("window.__marker = 2")
    page.on("framenavigated", navigated)
    try:
        page.get_by_role("button", name="コードを再送する").click()
        wait = page.locator("#verify-box .help.countdown")
        expect(wait).to_have_text(RESEND_WAIT)
    finally:
        page.remove_listener("framenavigated", navigated)
    assert page.evaluate("window.__marker") == 2, "the page was reloaded"
    assert navigations == [], navigations
    expect(page).to_have_url(f"{server.url}/login/verify")
    # Help text, not a red error; and it counts down while the member waits.
    expect(page.locator("#verify-box .error")).to_have_count(0)
    seconds = int(RESEND_WAIT.fullmatch(wait.inner_text()).group(1))
    assert 0 < seconds <= 60, seconds
    page.wait_for_timeout(2_500)
    later = int(RESEND_WAIT.fullmatch(wait.inner_text()).group(1))
    # A busy machine may deliver fewer of the once-a-second ticks, or read it later.
    assert seconds - 10 <= later < seconds, (seconds, later)


# --- the tests ----------------------------------------------------------------------------


def test_email_set_up_and_sign_in_with_javascript(browser, smtp_server, tmp_path):
    member = MemberSpec("mika", PASSWORD, email="mika@example.com", name="佐藤美香")
    shown = "m***@example.com"
    with run_server(tmp_path, [member], environment=mail_environment(smtp_server)) as server:
        watched: Watched = open_page(browser, javascript=True)
        page = watched.page
        with evidence_on_failure(watched, server, tmp_path, "email"):
            sign_in(page, server, member)
            expect(page).to_have_url(f"{server.url}/")
            expect(page.get_by_text("二段階認証：未設定")).to_be_visible()

            # Set up: the dialog names the masked address; a code is sent only on request.
            page.goto(f"{server.url}/settings/2fa")
            section = page.locator("#section-email")
            section.get_by_role("link", name="設定を開始する").click()
            dialog = page.locator("dialog#dialog")
            expect(dialog.locator("#dialog-title")).to_have_text("メールによる認証の設定")
            assert dialog.evaluate("d => d.open && d.matches(':modal')"), "dialog is not modal"
            expect(dialog).to_contain_text(f"送信先：{shown}")
            assert smtp_server.messages == [], "a mail was sent before the member asked"
            dialog.get_by_role("button", name="コードを送信する").click()
            expect(dialog.get_by_role("status")).to_have_text(
                f"{shown} に認証コードを送信しました。"
            )
            setup_mail = wait_for_mail(smtp_server, SETUP_SUBJECT)
            assert_addressed_to(smtp_server, setup_mail, member.email)
            setup_code = code_in(setup_mail)

            code_field = dialog.get_by_label("届いた6桁の認証コード")
            code_field.fill(other_code(setup_code))
            dialog.get_by_role("button", name="確認する").click()
            expect(dialog.locator("#code-error")).to_have_text(WRONG_CODE)
            expect(page).to_have_url(f"{server.url}/settings/2fa")
            expect(dialog).to_be_visible()

            sent_before = len(smtp_server.messages)
            code_field.fill(setup_code)
            dialog.get_by_role("button", name="確認する").click()
            expect(dialog.locator("#recovery-codes li")).to_have_count(10)
            expect(dialog.locator("#dialog-title")).to_have_text(
                "メールによる認証の設定が完了しました。"
            )
            codes = dialog.locator("#recovery-codes li").all_inner_texts()
            assert all(RECOVERY_CODE_RE.fullmatch(c) for c in codes), codes
            assert len(set(codes)) == 10, codes
            expect(dialog.get_by_role("link", name="完了")).to_be_visible()

            notice = wait_for_mail(smtp_server, ENABLED_SUBJECT, start=sent_before)
            assert_addressed_to(smtp_server, notice, member.email)
            assert "メールによる認証" in body_text(notice)

            close_dialog(page)
            expect(section.get_by_role("link", name="設定を無効化する")).to_be_visible()
            expect(section.locator(".state-on")).to_contain_text("設定済み")
            expect(page.locator("#section-recovery")).to_contain_text("残り 10 個")

            # Sign in again: the password step mails a code.
            sign_out(page, server)
            sent_before = len(smtp_server.messages)
            sign_in(page, server, member)
            expect(page).to_have_url(f"{server.url}/login/verify")
            expect(page.locator("#verify-box")).to_contain_text(
                f"{shown} にメールで送信した6桁の認証コードを入力してください。"
            )
            signin_mail = wait_for_mail(smtp_server, SIGNIN_SUBJECT, start=sent_before)
            assert_addressed_to(smtp_server, signin_mail, member.email)
            signin_code = code_in(signin_mail)

            # A typo is refused in place; a resend within 60 s is refused in place too.
            verify_without_navigation(watched, server, other_code(signin_code))
            sent_before = len(smtp_server.messages)
            resend_without_navigation(page, server)
            assert len(smtp_server.messages) == sent_before, "a refused resend sent a mail"
            expect(page.locator("#verify-box")).to_contain_text(
                f"{shown} にメールで送信した6桁の認証コードを入力してください。"
            )

            # The first mail's code is still the valid one.
            verify(page, server, signin_code)


def test_switch_from_app_to_email_at_sign_in(browser, smtp_server, tmp_path, monkeypatch):
    from portal import members, twofactor
    from portal.twofactor import Status

    member = MemberSpec("ken", PASSWORD, email="ken@example.com", name="鈴木健")
    shown = "k***@example.com"
    environment = mail_environment(smtp_server)
    with run_server(tmp_path, [member], environment=environment) as server:
        # Arrange in the server's database: the app first (so it is preferred), then
        # email, proven with a setup code that really goes through the SMTP server.
        enrol(server, member.login_id)
        for name in ("MAIL_SERVER", "MAIL_PORT", "PORTAL_BASE_URL"):
            monkeypatch.setenv(name, environment[name])  # read by create_app
        with server.app_context():
            m = members.find(member.login_id)
            twofactor.send_setup_code(m, "email", datetime.now(UTC))
            setup_mail = wait_for_mail(smtp_server, SETUP_SUBJECT)
            assert_addressed_to(smtp_server, setup_mail, member.email)
            status, new_codes = twofactor.enable_contact(
                m, "email", code_in(setup_mail), datetime.now(UTC)
            )
            assert status is Status.OK and new_codes == [], (status, new_codes)
            assert twofactor.enabled_methods(m) == ["app", "email"]
            assert twofactor.preferred_method(m) == "app"

        watched = open_page(browser, javascript=True)
        page = watched.page
        with evidence_on_failure(watched, server, tmp_path, "switch-to-email"):
            sent_before = len(smtp_server.messages)
            sign_in(page, server, member)
            expect(page).to_have_url(f"{server.url}/login/verify")
            box = page.locator("#verify-box")
            expect(box).to_contain_text("認証アプリ（Google Authenticator など）")
            expect(page.get_by_role("button", name="コードを再送する")).to_have_count(0)
            assert len(smtp_server.messages) == sent_before, "the app sign-in sent a mail"

            alternatives = page.locator("details.alternatives")
            choose_email = alternatives.get_by_role("button", name="メールでコードを受け取る")
            expect(choose_email).to_be_hidden()
            alternatives.locator("summary", has_text="別の方法で認証する").click()
            expect(choose_email).to_be_visible()
            choose_email.click()

            expect(page).to_have_url(f"{server.url}/login/verify")
            expect(box).to_contain_text(
                f"{shown} にメールで送信した6桁の認証コードを入力してください。"
            )
            signin_mail = wait_for_mail(smtp_server, SIGNIN_SUBJECT, start=sent_before)
            assert_addressed_to(smtp_server, signin_mail, member.email)
            # The way back to the app is offered now (inside the closed <details>).
            expect(alternatives.locator("button")).to_have_text(["認証アプリのコードを入力する"])

            verify(page, server, code_in(signin_mail))
