"""Passkeys in a real Chromium with its virtual authenticator (Chrome DevTools Protocol:
ctap2, internal, resident keys, user verification) against a real gunicorn opened at
localhost: register a passkey in settings, sign in with password + passkey, then with
the passkey alone (the button, and the login-ID field's autofill), then remove it."""

from __future__ import annotations

import pytest
from browser_helpers import (
    NO_AUTOFILL,
    PASSWORD,
    VirtualAuthenticator,
    evidence_on_failure,
    open_page,
    sign_in,
    sign_out,
    without_autofill,
)
from live_server import MemberSpec, run_server
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

MEMBER = MemberSpec("hikari", PASSWORD, name="光田ひかり")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with run_server(tmp_path_factory.mktemp("passkey-server"), [MEMBER]) as live:
        yield live


def no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"page is {width}px wide"


def test_register_use_and_remove_a_passkey(browser, server, tmp_path):
    watched = open_page(browser, javascript=True)
    page = watched.page
    with evidence_on_failure(watched, server, tmp_path, "passkey"):
        authenticator = VirtualAuthenticator(page)
        page.add_init_script(NO_AUTOFILL)
        sign_in(page, server, MEMBER)
        expect(page).to_have_url(f"{server.url}/")

        # Settings: name the key, then the browser's prompt; recovery codes come with it.
        page.goto(f"{server.url}/settings/2fa")
        section = page.locator("#section-passkey")
        expect(section.get_by_role("heading")).to_have_text("パスキー・セキュリティキーによる認証")
        section.get_by_role("link", name="設定を開始する").click()
        dialog = page.locator("dialog#dialog")
        expect(dialog.locator("#dialog-title")).to_have_text("パスキー・セキュリティキーの登録")
        dialog.get_by_label("パスキーの名前").fill("仕事用のパソコン")
        dialog.get_by_role("button", name="次へ").click()
        expect(dialog).to_contain_text("「仕事用のパソコン」として登録します。")
        dialog.get_by_role("button", name="パスキーを作成する").click()
        expect(dialog.locator("#dialog-title")).to_have_text(
            "パスキー「仕事用のパソコン」を登録しました。"
        )
        expect(dialog.locator("#recovery-codes li")).to_have_count(10)
        dialog.get_by_role("link", name="完了").click()
        expect(dialog).to_be_hidden()
        expect(section.locator(".key-name")).to_have_text(["仕事用のパソコン"])
        stored = authenticator.credentials()
        assert len(stored) == 1 and stored[0]["isResidentCredential"]

        # Password, then the passkey as the second step; then the button on /login. This
        # tab plays a browser without passkey autofill, so that no autofill offer on
        # /login answers before the member does what the test says.
        without_autofill(page, True)
        sign_out(page, server)
        sign_in(page, server, MEMBER)
        expect(page).to_have_url(f"{server.url}/login/verify")
        page.get_by_role("button", name="パスキーで認証する").click()
        expect(page).to_have_url(f"{server.url}/")
        sign_out(page, server)
        page.get_by_role("button", name="パスキーでログイン").click()
        expect(page).to_have_url(f"{server.url}/")

        # The passkey alone from the login-ID field's autofill (conditional mediation):
        # the virtual authenticator picks it as soon as /login offers it.
        without_autofill(page, False)
        page.locator("header").get_by_role("button", name="ログアウト").click()
        expect(page).to_have_url(f"{server.url}/")
        with server.app_context():
            from portal.extensions import db
            from portal.models import AuditEvent

            methods = list(
                db.session.scalars(
                    db.select(AuditEvent.method)
                    .where(AuditEvent.event == "signin.success")
                    .order_by(AuditEvent.id)
                )
            )
        assert methods == [None, "passkey", "passkey", "passkey"]

        # Rename, then remove (the confirm dialog of every method).
        page.goto(f"{server.url}/settings/2fa")
        section.get_by_role("link", name="名前を変更").click()
        dialog.get_by_label("パスキーの名前").fill("自宅のパソコン")
        dialog.get_by_role("button", name="変更する").click()
        expect(dialog.locator("#dialog-title")).to_have_text("名前を変更しました。")
        dialog.get_by_role("link", name="完了").click()
        expect(section.locator(".key-name")).to_have_text(["自宅のパソコン"])
        page.set_viewport_size({"width": 390, "height": 844})
        no_sideways_scroll(page)
        page.screenshot(path=str(tmp_path / "settings-390.png"), full_page=True)
        section.get_by_role("link", name="削除").click()
        expect(dialog.locator("#dialog-title")).to_contain_text("無効化")
        dialog.get_by_label("はい、無効化して問題ありません。").check()
        dialog.get_by_role("button", name="無効化").click()
        expect(dialog.locator("#dialog-title")).to_have_text(
            "パスキー「自宅のパソコン」の無効化が完了しました。"
        )
        dialog.get_by_role("link", name="完了").click()
        expect(section.locator(".badge")).to_have_text("未設定")
