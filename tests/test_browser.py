"""What a member sees in a real Chromium against a real gunicorn: setting up, using,
replacing and disabling the authenticator app, with and without JavaScript."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from browser_helpers import (
    PASSWORD,
    RECOVERY_CODE_RE,
    WRONG_CODE,
    Authenticator,
    close_dialog,
    current_step,
    evidence_on_failure,
    open_dialog,
    open_page,
    read_secret,
    sign_in,
    sign_out,
    verify,
    verify_without_navigation,
    wrong_code,
)
from live_server import MemberSpec, run_server
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

JS_MEMBER = MemberSpec("hanako", PASSWORD, name="山田花子")
NOJS_MEMBER = MemberSpec("taro", PASSWORD, name="山田太郎")


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with run_server(
        tmp_path_factory.mktemp("browser-server"), [JS_MEMBER, NOJS_MEMBER], workers=2, threads=2
    ) as live:
        yield live


# --- the tests ----------------------------------------------------------------------------


def test_authenticator_app_lifecycle_with_javascript(browser, server, tmp_path):
    watched = open_page(browser, javascript=True)
    page = watched.page
    member = JS_MEMBER
    with evidence_on_failure(watched, server, tmp_path, "javascript"):
        sign_in(page, server, member)
        expect(page).to_have_url(f"{server.url}/")
        expect(page.get_by_text("二段階認証：未設定")).to_be_visible()

        # Set up: QR code and secret in a modal dialog, a wrong code, then the right one.
        page.goto(f"{server.url}/settings/2fa")
        open_dialog(page, "設定を開始する", "認証アプリによる認証の設定", None, member)
        dialog = page.locator("dialog#dialog")
        expect(dialog.locator("svg.qr")).to_be_visible()
        phone = Authenticator(read_secret(dialog))
        dialog.get_by_label("アプリに表示された6桁の認証コード").fill(wrong_code(phone))
        dialog.get_by_role("button", name="確認する").click()
        expect(dialog.locator("#code-error")).to_have_text(WRONG_CODE)
        expect(page).to_have_url(f"{server.url}/settings/2fa")
        expect(dialog).to_be_visible()
        assert read_secret(dialog) == phone.totp.secret, "the secret changed after a typo"

        dialog.get_by_label("アプリに表示された6桁の認証コード").fill(phone.fresh_code())
        dialog.get_by_role("button", name="確認する").click()
        expect(dialog.locator("#recovery-codes li")).to_have_count(10)
        codes = dialog.locator("#recovery-codes li").all_inner_texts()
        assert all(RECOVERY_CODE_RE.fullmatch(c) for c in codes), codes
        assert len(set(codes)) == 10, codes
        download = dialog.locator("#recovery-download")
        expect(download).to_have_attribute("download", "recovery-codes.txt")
        href = download.get_attribute("href") or ""
        assert href.startswith("data:text/plain"), href
        assert unquote(href.split(",", 1)[1]).split() == codes

        close_dialog(page)
        app_section = page.locator("#section-app")
        expect(app_section.get_by_role("link", name="設定を無効化する")).to_be_visible()
        expect(page.locator("#section-recovery")).to_contain_text("残り 10 個")

        # Sign in again: a wrong code is refused in place, the next code lets the member in.
        sign_out(page, server)
        sign_in(page, server, member)
        expect(page).to_have_url(f"{server.url}/login/verify")
        verify_without_navigation(watched, server, wrong_code(phone))
        verify(page, server, phone.fresh_code())

        # Replace the app: the new secret is proven, then the old one stops working.
        page.goto(f"{server.url}/settings/2fa")
        open_dialog(page, "認証アプリを変更する", "認証アプリを変更する", phone, member)
        expect(dialog.locator("svg.qr")).to_be_visible()
        new_phone = Authenticator(read_secret(dialog))
        assert new_phone.totp.secret != phone.totp.secret
        dialog.get_by_label("アプリに表示された6桁の認証コード").fill(new_phone.fresh_code())
        dialog.get_by_role("button", name="確認する").click()
        expect(dialog.locator("#dialog-title")).to_have_text("認証アプリを変更しました。")
        expect(dialog).to_contain_text("新しい端末の認証アプリに表示されるコードでログイン")
        close_dialog(page)
        expect(app_section.get_by_role("link", name="設定を無効化する")).to_be_visible()

        sign_out(page, server)
        sign_in(page, server, member)
        expect(page).to_have_url(f"{server.url}/login/verify")
        # The old phone's next code: it would pass if the old secret were still valid
        # (a later step than any the server has accepted, inside its window).
        old_code = phone.code_at(current_step() + 1)
        assert old_code not in new_phone.window(), "one-in-a-million collision; run again"
        verify_without_navigation(watched, server, old_code)
        verify(page, server, new_phone.fresh_code())

        # Disable: the button waits for the confirmation box.
        page.goto(f"{server.url}/settings/2fa")
        open_dialog(page, "設定を無効化する", "認証アプリによる認証の無効化", new_phone, member)
        confirm = dialog.get_by_label("はい、無効化して問題ありません。")
        disable = dialog.get_by_role("button", name="無効化", exact=True)
        expect(confirm).not_to_be_checked()
        expect(disable).to_be_disabled()
        confirm.check()
        expect(disable).to_be_enabled()
        disable.click()
        expect(dialog).to_contain_text("認証アプリによる認証の無効化が完了しました。")
        expect(dialog.get_by_role("link", name="完了")).to_be_visible()
        close_dialog(page)
        expect(app_section.get_by_role("link", name="設定を開始する")).to_be_visible()
        expect(app_section).to_contain_text("未設定")

        # And the password alone signs in again.
        sign_out(page, server)
        sign_in(page, server, member)
        expect(page).to_have_url(f"{server.url}/")
        expect(page.get_by_text("二段階認証：未設定")).to_be_visible()


def test_set_up_and_recovery_sign_in_without_javascript(browser, server, tmp_path):
    watched = open_page(browser, javascript=False)
    page = watched.page
    member = NOJS_MEMBER
    with evidence_on_failure(watched, server, tmp_path, "no-javascript"):
        sign_in(page, server, member)
        expect(page).to_have_url(f"{server.url}/")

        # The set-up "dialog" is a page of its own.
        page.goto(f"{server.url}/settings/2fa")
        page.locator("#section-app").get_by_role("link", name="設定を開始する").click()
        setup_url = f"{server.url}/settings/2fa/app/setup"
        expect(page).to_have_url(setup_url)
        main = page.locator("main")
        expect(main.locator("#dialog-title")).to_have_text("認証アプリによる認証の設定")
        expect(main.locator("svg.qr")).to_be_visible()
        phone = Authenticator(read_secret(main))

        # A wrong code re-renders the page with the message.
        main.get_by_label("アプリに表示された6桁の認証コード").fill(wrong_code(phone))
        with page.expect_navigation():
            main.get_by_role("button", name="確認する").click()
        expect(page).to_have_url(setup_url)
        expect(main.locator("#code-error")).to_have_text(WRONG_CODE)
        assert read_secret(main) == phone.totp.secret

        main.get_by_label("アプリに表示された6桁の認証コード").fill(phone.fresh_code())
        with page.expect_navigation():
            main.get_by_role("button", name="確認する").click()
        expect(main.locator("#recovery-codes li")).to_have_count(10)
        codes = main.locator("#recovery-codes li").all_inner_texts()
        assert all(RECOVERY_CODE_RE.fullmatch(c) for c in codes), codes

        main.get_by_role("link", name="完了").click()
        expect(page).to_have_url(f"{server.url}/settings/2fa")
        expect(
            page.locator("#section-app").get_by_role("link", name="設定を無効化する")
        ).to_be_visible()
        expect(page.locator("#section-recovery")).to_contain_text("残り 10 個")

        # Phone lost: sign in with a recovery code.
        sign_out(page, server)
        sign_in(page, server, member)
        expect(page).to_have_url(f"{server.url}/login/verify")
        page.get_by_role("link", name="リカバリーコードを使う").click()
        expect(page).to_have_url(f"{server.url}/login/recovery")
        page.get_by_label("リカバリーコード", exact=True).fill(codes[0])
        page.get_by_role("button", name="ログイン", exact=True).click()
        expect(page).to_have_url(f"{server.url}/")
        expect(page.locator(".flashes")).to_contain_text(
            "リカバリーコードでログインしました。残りのリカバリーコードは9個です。"
        )
        expect(page.get_by_text("二段階認証：設定済み")).to_be_visible()
