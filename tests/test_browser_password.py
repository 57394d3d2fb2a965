"""The password page in a real Chromium: the live strength meter (ASVS 2.1.8) and the
"show password" button (ASVS 2.1.12), with the CSP on and no console errors."""

from __future__ import annotations

import pytest
from browser_helpers import PASSWORD, evidence_on_failure, open_page, sign_in
from live_server import MemberSpec, run_server
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

MEMBER = MemberSpec("kenta", PASSWORD, name="佐藤健太")
NOJS_MEMBER = MemberSpec("yumi", PASSWORD, name="鈴木由美")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with run_server(tmp_path_factory.mktemp("password-server"), [MEMBER, NOJS_MEMBER]) as live:
        yield live


def test_strength_meter_and_show_password(browser, server, tmp_path):
    watched = open_page(browser, javascript=True)
    page = watched.page
    with evidence_on_failure(watched, server, tmp_path, "password"):
        sign_in(page, server, MEMBER)
        expect(page).to_have_url(f"{server.url}/")
        page.goto(f"{server.url}/settings/password")
        new = page.get_by_label("新しいパスワード（12文字以上）")
        strength = page.locator("#password-strength")
        expect(strength).to_contain_text("12文字以上。")

        new.fill("password1234")
        expect(strength).to_contain_text("パスワードの強さ：弱い")
        expect(strength).to_contain_text("よく使われているパスワード")
        new.fill("kenta-kenta-kenta")
        expect(strength).to_contain_text("ログインID・氏名・メールアドレスを含めないでください。")
        new.fill("月曜の朝は 珈琲と 古い 地図")
        expect(strength).to_contain_text("パスワードの強さ：強い")

        # Show what was typed, then hide it again.
        show = page.get_by_role("button", name="パスワードを表示").nth(1)
        show.click()
        expect(new).to_have_attribute("type", "text")
        expect(page.get_by_role("button", name="パスワードを隠す")).to_have_count(1)
        page.get_by_role("button", name="パスワードを隠す").click()
        expect(new).to_have_attribute("type", "password")

        page.get_by_label("現在のパスワード").fill(PASSWORD)
        page.get_by_label("新しいパスワード（確認）").fill("月曜の朝は 珈琲と 古い 地図")
        page.get_by_role("button", name="変更する").click()
        expect(page.locator(".flashes")).to_contain_text("パスワードを変更しました。")


def test_without_javascript_the_server_still_judges(browser, server, tmp_path):
    watched = open_page(browser, javascript=False)
    page = watched.page
    with evidence_on_failure(watched, server, tmp_path, "password-nojs"):
        sign_in(page, server, NOJS_MEMBER)
        page.goto(f"{server.url}/settings/password")
        expect(page.get_by_role("button", name="パスワードを表示")).to_have_count(0)
        page.get_by_label("現在のパスワード").fill(PASSWORD)
        page.get_by_label("新しいパスワード（12文字以上）").fill("password1234")
        page.get_by_label("新しいパスワード（確認）").fill("password1234")
        page.get_by_role("button", name="変更する").click()
        expect(page.locator("#new_password-error")).to_contain_text("推測されやすい")
