"""パスワードをお忘れの方 end to end, in a real Chromium against a real gunicorn that
mails through a real SMTP server: ask from the sign-in page, open the mailed link, meet
the password rules, set a new password, sign in with it, and be asked for the second
step all the same (a mailbox alone never gets past two-step verification)."""

from __future__ import annotations

import re

import pytest
from browser_helpers import PASSWORD, evidence_on_failure, open_page, sign_in
from live_server import MemberSpec, enrol, run_server
from mail_server import body_text
from playwright.sync_api import expect
from test_browser_email import assert_addressed_to, mail_environment, wait_for_mail

pytestmark = pytest.mark.browser

# mail_environment's PORTAL_BASE_URL: links are built from it, never from the request.
LINK_RE = re.compile(r"http://127\.0\.0\.1(/login/reset/([A-Za-z0-9_-]{43,}))")
NEW_PASSWORD = "月曜の朝は 珈琲と 古い 地図"


def test_forgotten_password_end_to_end(browser, smtp_server, tmp_path):
    member = MemberSpec("haruka", PASSWORD, email="haruka@example.com", name="高橋遥")
    with run_server(tmp_path, [member], environment=mail_environment(smtp_server)) as server:
        recovery_codes = enrol(server, "haruka")
        watched = open_page(browser, javascript=True)
        page = watched.page
        with evidence_on_failure(watched, server, tmp_path, "forgot"):
            # Ask from the sign-in page, by email address.
            page.goto(f"{server.url}/login")
            page.get_by_role("link", name="パスワードをお忘れの方").click()
            expect(page).to_have_url(f"{server.url}/login/forgot")
            page.get_by_label("ログインIDまたはメールアドレス").fill("Haruka@example.com")
            page.get_by_role("button", name="再設定用のリンクを送る").click()
            expect(page.locator("#forgot-sent")).to_contain_text(
                "パスワード再設定用のリンクを登録のメールアドレスに送信しました。"
                "リンクの有効期限は30分です。"
            )

            # The mail: the link, its 30 minutes, what to do if it was not them.
            mail = wait_for_mail(smtp_server, "パスワード再設定のご案内")
            assert_addressed_to(smtp_server, mail, member.email)
            text = body_text(mail)
            assert "有効期限は30分" in text and "このメールを無視してください" in text
            path, token = LINK_RE.search(text).groups()

            # The link: the token leaves the address bar at once.
            page.goto(f"{server.url}{path}")
            expect(page).to_have_url(f"{server.url}/login/reset")
            expect(page.get_by_role("heading", name="パスワードの再設定")).to_be_visible()
            new = page.get_by_label("新しいパスワード（12文字以上）")
            confirm = page.get_by_label("新しいパスワード（確認）")
            new.fill("haruka-haruka-haruka")
            expect(page.locator("#password-strength")).to_contain_text(
                "ログインID・氏名・メールアドレスを含めないでください。"
            )
            # The rules of the password change, every error at once.
            confirm.fill("something else entirely")
            page.get_by_role("button", name="パスワードを再設定する").click()
            expect(page.locator("#new_password-error")).to_contain_text("推測されやすい")
            expect(page.locator("#new_password_confirm-error")).to_have_text(
                "確認用のパスワードが一致しません。"
            )
            expect(new).to_have_value("")  # nothing secret is sent back

            new.fill(NEW_PASSWORD)
            expect(page.locator("#password-strength")).to_contain_text("パスワードの強さ：強い")
            confirm.fill(NEW_PASSWORD)
            page.get_by_role("button", name="パスワードを再設定する").click()
            expect(page).to_have_url(f"{server.url}/login")
            expect(page.locator(".flashes")).to_contain_text(
                "パスワードを再設定しました。新しいパスワードでログインしてください。"
            )
            notice = wait_for_mail(smtp_server, "パスワードが再設定されました")
            assert_addressed_to(smtp_server, notice, member.email)

            # The link works once.
            page.goto(f"{server.url}{path}")
            expect(page.locator("#reset-error")).to_contain_text("このリンクは使えません。")
            expect(
                page.get_by_role("link", name="再設定用のリンクをもう一度申し込む")
            ).to_be_visible()

            # The old password is gone; the new one leads to the second step, not in.
            sign_in(page, server, member)
            expect(page.locator("#login-error")).to_have_text(
                "ログインIDまたはパスワードが正しくありません。"
            )
            sign_in(page, server, MemberSpec("haruka", NEW_PASSWORD))
            expect(page).to_have_url(f"{server.url}/login/verify")
            page.goto(f"{server.url}/")
            expect(page).to_have_url(f"{server.url}/login/verify")
            page.goto(f"{server.url}/login/recovery")
            page.get_by_label("リカバリーコード").fill(recovery_codes[0])
            page.get_by_role("button", name="ログイン", exact=True).click()
            expect(page).to_have_url(f"{server.url}/")

        # The token never reached the server's log; the redacted path did.
        log = server.log()
        assert token not in log
        assert "/login/reset/[redacted]" in log


def no_sideways_scroll(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"{page.url} is {width} px wide"


def test_forgotten_password_on_a_phone_without_javascript(browser, smtp_server, tmp_path):
    """By login ID, at 390 px, no JavaScript: plain forms all the way, and no page of
    the flow scrolls sideways."""
    member = MemberSpec("sota", PASSWORD, email="sota@example.com", name="山本蒼太")
    with run_server(tmp_path, [member], environment=mail_environment(smtp_server)) as server:
        watched = open_page(browser, javascript=False)
        page = watched.page
        page.set_viewport_size({"width": 390, "height": 844})
        with evidence_on_failure(watched, server, tmp_path, "forgot-nojs"):
            page.goto(f"{server.url}/login")
            no_sideways_scroll(page)
            page.get_by_role("link", name="パスワードをお忘れの方").click()
            no_sideways_scroll(page)
            page.get_by_label("ログインIDまたはメールアドレス").fill("sota")
            page.get_by_role("button", name="再設定用のリンクを送る").click()
            expect(page.locator("#forgot-sent")).to_be_visible()
            no_sideways_scroll(page)
            mail = wait_for_mail(smtp_server, "パスワード再設定のご案内")
            path, _ = LINK_RE.search(body_text(mail)).groups()
            page.goto(f"{server.url}{path}")
            expect(page).to_have_url(f"{server.url}/login/reset")
            no_sideways_scroll(page)
            page.get_by_label("新しいパスワード（12文字以上）").fill(NEW_PASSWORD)
            page.get_by_label("新しいパスワード（確認）").fill(NEW_PASSWORD)
            page.get_by_role("button", name="パスワードを再設定する").click()
            expect(page).to_have_url(f"{server.url}/login")
            expect(page.locator(".flashes")).to_contain_text("パスワードを再設定しました。")
            page.goto(f"{server.url}{path}")
            expect(page.locator("#reset-error")).to_contain_text("このリンクは使えません。")
            no_sideways_scroll(page)
            # No second step set up: the new password signs in (and nothing else did).
            sign_in(page, server, MemberSpec("sota", NEW_PASSWORD))
            expect(page).to_have_url(f"{server.url}/")
