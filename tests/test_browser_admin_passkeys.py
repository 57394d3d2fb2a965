"""The admin screens with passkeys (issue 11, operator side) in a real Chromium against a
real gunicorn, at a desktop and a phone width: nothing scrolls sideways, the member page
lists the keys, and 無効化 → 完了 takes them off the page."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from browser_helpers import (
    PASSWORD,
    TIMEOUT_MS,
    Watched,
    close_dialog,
    evidence_on_failure,
    make_operator,
    sign_in_with_app,
)
from live_server import MemberSpec, enrol_contact, run_server
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

MEMBER = MemberSpec("kaede", PASSWORD, name="楓 さくら")
WIDTHS = {"desktop": (1280, 800), "phone": (390, 844)}
# An operator a width: one app signing in twice would wait for a fresh time step.
OPERATORS = {
    family: MemberSpec(f"keeper-{family}", PASSWORD, name="管理 太郎") for family in WIDTHS
}
KEY_NAMES = ("YubiKey 5C NFC（仕事用）", "iPhone 15 Pro のパスキー")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with run_server(
        tmp_path_factory.mktemp("admin-passkeys"), [*OPERATORS.values(), MEMBER]
    ) as live:
        from portal import audit, members
        from portal.extensions import db
        from portal.models import Passkey

        enrol_contact(live, "kaede", "sms")
        with live.app_context():
            kaede = members.find("kaede")
            now = datetime.now(UTC)
            for n, name in enumerate(KEY_NAMES):
                db.session.add(
                    Passkey(
                        member_id=kaede.id,
                        credential_id=os.urandom(16),
                        public_key=b"x",
                        name=name,
                        created_at=now - timedelta(days=10 - n),
                        last_used_at=now - timedelta(hours=3) if n == 0 else None,
                    )
                )
            db.session.commit()
            audit.record("signin.success", subject=kaede, actor=kaede, method="passkey")
        for operator in OPERATORS.values():
            make_operator(live, operator)
        yield live


def no_sideways_scroll(page: Page, what: str) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.evaluate("document.documentElement.clientWidth")
    assert width <= viewport, f"{what} scrolls sideways: {width} > {viewport}"


def test_the_admin_pages_with_passkeys_fit_and_the_reset_takes_them(browser, server, tmp_path):
    for family, (width, height) in WIDTHS.items():
        context = browser.new_context(
            locale="ja-JP", timezone_id="Asia/Tokyo", viewport={"width": width, "height": height}
        )
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        watched = Watched(page)  # closes the context when done
        with evidence_on_failure(watched, server, tmp_path, family):
            sign_in_with_app(page, server, OPERATORS[family])
            for path, check in (
                ("/admin/policy", "パスキーだけでのログインを許可する"),
                ("/admin/", "パスキー"),
                ("/admin/members?method=passkey", "kaede"),
                ("/admin/members/kaede", KEY_NAMES[1]),
            ):
                page.goto(server.url + path)
                expect(page.locator("main")).to_contain_text(check)
                no_sideways_scroll(page, f"{path} at {width} px")
            keys = page.locator("#passkeys")
            expect(keys.get_by_role("cell", name=KEY_NAMES[0])).to_be_visible()
            expect(keys.get_by_role("cell", name="未使用")).to_be_visible()
            page.locator("#methods").get_by_role("link", name="無効化").click()
            dialog = page.locator("dialog#dialog")
            expect(dialog).to_contain_text("パスキーによる認証")
            no_sideways_scroll(page, f"the reset dialog at {width} px")
            if family == "phone":  # the desktop pass leaves her passkeys for this one
                dialog.get_by_label("はい、無効化して問題ありません。").check()
                dialog.get_by_role("button", name="無効化").click()
                expect(dialog).to_contain_text("二段階認証を無効化しました。")
                close_dialog(page)
                methods = page.locator("#methods")
                expect(methods.get_by_text("未設定", exact=True)).to_be_visible()
                expect(page.locator("#passkeys")).to_have_count(0)
                expect(page.get_by_text(KEY_NAMES[0])).to_have_count(0)
            else:
                dialog.get_by_role("link", name="キャンセル").click()
                expect(dialog).not_to_be_visible()
