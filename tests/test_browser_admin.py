"""The admin screens of issue 10 in a real Chromium against a real gunicorn: the member
page is up to date after 無効化 → 完了, the audit log's date range is checked in place
(htmx), and the pages an operator lists reach マイページ and the menu."""

from __future__ import annotations

import pytest
from browser_helpers import (
    PASSWORD,
    close_dialog,
    evidence_on_failure,
    make_operator,
    open_page,
    sign_in,
    sign_in_with_app,
)
from live_server import MemberSpec, enrol_contact, run_server
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

OPERATOR = MemberSpec("chief", PASSWORD, name="管理 太郎")
MEMBER = MemberSpec("sakura", PASSWORD, name="桜井さくら")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with run_server(tmp_path_factory.mktemp("admin-server"), [OPERATOR, MEMBER]) as live:
        enrol_contact(live, "sakura", "email")
        make_operator(live, OPERATOR)
        yield live


def test_operator_resets_lists_a_page_and_checks_the_audit_range(browser, server, tmp_path):
    watched = open_page(browser, javascript=True)
    page = watched.page
    with evidence_on_failure(watched, server, tmp_path, "operator"):
        sign_in_with_app(page, server, OPERATOR)

        # Bug 1: after 無効化 → 完了 the card no longer lists the method or the button.
        page.goto(f"{server.url}/admin/members/sakura")
        methods = page.locator("#methods")
        expect(methods.get_by_role("cell", name="メール", exact=True)).to_be_visible()
        methods.get_by_role("link", name="無効化").click()
        dialog = page.locator("dialog#dialog")
        expect(dialog.locator("#dialog-title")).to_contain_text("二段階認証を無効化")
        dialog.get_by_label("はい、無効化して問題ありません。").check()
        dialog.get_by_role("button", name="無効化").click()
        expect(dialog).to_contain_text("二段階認証を無効化しました。")
        close_dialog(page)
        expect(methods.get_by_text("未設定", exact=True)).to_be_visible()
        expect(methods.get_by_role("link", name="無効化")).to_have_count(0)
        expect(methods.get_by_role("cell", name="メール", exact=True)).to_have_count(0)
        left = page.locator("#member-facts dt:text-is('リカバリーコード残数') + dd")
        expect(left).to_have_text("-")  # the recovery codes went with the reset

        # Bug 9: a start after the end is a field error, shown in place by the htmx search.
        page.goto(f"{server.url}/admin/audit")
        page.get_by_label("開始日").fill("2026-03-02")
        page.get_by_label("終了日").fill("2026-03-01")
        page.get_by_role("button", name="絞り込む").click()
        error = page.locator("#from-error")
        expect(error).to_have_text("開始日は終了日以前の日付を指定してください。")
        expect(page.get_by_label("開始日")).to_have_attribute("aria-invalid", "true")
        page.get_by_label("開始日").fill("2026-02-28")
        page.get_by_role("button", name="絞り込む").click()
        expect(error).to_have_count(0)
        expect(page.get_by_label("開始日")).to_have_value("2026-02-28")

        # Bug 10: words, not keys or JSON.
        page.goto(f"{server.url}/admin/audit?member=sakura")
        expect(page.locator("#audit-table")).to_contain_text("無効化した方法：メール")
        expect(page.locator("#audit-table")).not_to_contain_text('{"methods"')

        # Bug 15: the operator lists a page, with its order.
        page.goto(f"{server.url}/admin/pages/new")
        page.get_by_label("タイトル").fill("会員規約")
        page.get_by_label("スラッグ（URLの末尾: /pages/スラッグ）").fill("terms")
        page.get_by_label("本文（HTML）").fill("<p>規約の本文</p>")
        page.get_by_label("マイページとメニューに表示する").check()
        page.get_by_label("表示順（0〜999、小さい順に表示）").fill("5")
        page.get_by_role("button", name="保存する").click()
        expect(page.locator(".flashes")).to_contain_text(
            "メンバーページ「会員規約」を保存しました。"
        )
        expect(page.locator("#page-table")).to_contain_text("表示（表示順 5）")

    watched = open_page(browser, javascript=True)
    page = watched.page
    with evidence_on_failure(watched, server, tmp_path, "member"):
        sign_in(page, server, MEMBER)  # the password alone since the reset
        expect(page.locator("header nav")).to_be_attached()
        page.goto(f"{server.url}/")
        card = page.locator("#member-pages")
        expect(card.get_by_role("heading", name="お知らせ・ページ")).to_be_visible()
        card.get_by_role("link", name="会員規約").click()
        expect(page).to_have_url(f"{server.url}/pages/terms")
        expect(page.get_by_text("規約の本文")).to_be_visible()
        link = page.locator("header nav").get_by_role("link", name="会員規約")
        expect(link).to_have_attribute("aria-current", "page")
