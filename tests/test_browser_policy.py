"""The operator's policy in a real Chromium against a real gunicorn: the operator makes
2FA required; a member without it is walked through set-up before reaching the TOP
page; then ticks この端末では次回からコード入力をスキップする and is not asked next time."""

from __future__ import annotations

import pytest
from browser_helpers import (
    PASSWORD,
    Authenticator,
    close_dialog,
    evidence_on_failure,
    make_operator,
    open_dialog,
    open_page,
    read_secret,
    sign_in,
    sign_in_with_app,
    sign_out,
)
from live_server import MemberSpec, run_server
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

OPERATOR = MemberSpec("chief", PASSWORD, name="管理 太郎")
MEMBER = MemberSpec("sakura", PASSWORD, name="桜井さくら")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with run_server(tmp_path_factory.mktemp("policy-server"), [OPERATOR, MEMBER]) as live:
        make_operator(live, OPERATOR)
        yield live


def test_required_policy_walks_a_member_through_set_up_then_remembers(browser, server, tmp_path):
    watched = open_page(browser, javascript=True)
    page = watched.page
    with evidence_on_failure(watched, server, tmp_path, "operator"):
        sign_in_with_app(page, server, OPERATOR)
        page.goto(f"{server.url}/admin/policy")
        expect(page.get_by_role("heading", name="二段階認証方式の設定")).to_be_visible()
        page.get_by_label("メンバー", exact=True).select_option("required")
        page.get_by_label("必須にするまでの猶予期間（日数、0〜365）").fill("0")
        page.get_by_role("button", name="設定を保存する").click()
        expect(page.locator(".flashes")).to_contain_text("二段階認証方式の設定を保存しました。")

    watched = open_page(browser, javascript=True)
    page = watched.page
    with evidence_on_failure(watched, server, tmp_path, "member"):
        sign_in(page, server, MEMBER)
        # Straight to set-up: nothing else is reachable until a method is set up.
        expect(page).to_have_url(f"{server.url}/settings/2fa/setup")
        expect(page.get_by_text("このサイトでは二段階認証が必須です。")).to_be_visible()
        page.goto(f"{server.url}/settings/profile")
        expect(page).to_have_url(f"{server.url}/settings/2fa/setup")

        open_dialog(page, "設定を開始する", "認証アプリによる認証の設定", None, MEMBER)
        dialog = page.locator("dialog#dialog")
        phone = Authenticator(read_secret(dialog))
        dialog.get_by_label("アプリに表示された6桁の認証コード").fill(phone.fresh_code())
        dialog.get_by_role("button", name="確認する").click()
        expect(dialog.locator("#recovery-codes li")).to_have_count(10)
        close_dialog(page)
        page.get_by_role("link", name="マイページへ進む").click()
        expect(page).to_have_url(f"{server.url}/")
        expect(page.get_by_text("二段階認証：設定済み")).to_be_visible()

        # Next sign-in: the code page offers the skip box; tick it.
        sign_out(page, server)
        sign_in(page, server, MEMBER)
        expect(page).to_have_url(f"{server.url}/login/verify")
        box = page.get_by_label("この端末では次回からコード入力をスキップする")
        expect(box).to_be_visible()
        page.get_by_label("認証コード", exact=True).fill(phone.fresh_code())
        box.check()
        page.get_by_role("button", name="認証する").click()
        expect(page).to_have_url(f"{server.url}/")

        # And the time after: no code asked on this browser.
        sign_out(page, server)
        sign_in(page, server, MEMBER)
        expect(page).to_have_url(f"{server.url}/")
        page.goto(f"{server.url}/settings/2fa")
        devices = page.locator("#section-devices")
        expect(devices.get_by_text("この端末", exact=True)).to_be_visible()
        devices.get_by_role("button", name="この端末の記憶を解除").click()
        expect(page.locator(".flashes")).to_contain_text("端末の記憶を解除しました。")
        sign_out(page, server)
        sign_in(page, server, MEMBER)
        expect(page).to_have_url(f"{server.url}/login/verify")
