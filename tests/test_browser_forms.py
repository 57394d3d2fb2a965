"""Member-area forms in a real Chromium against a real gunicorn (issue 15): a member on
a device that skips the code fills in a form through 入力 → 確認 → サンキュー, is asked
for a fresh second step on the confirm page (the dialog with JavaScript, a page of its
own without), keeps the answers throughout, gets a receipt mail, and follows the
thank-you page's 二段階認証設定 link. At 390 px no page scrolls sideways."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from browser_helpers import (
    PASSWORD,
    app_of,
    evidence_on_failure,
    htmx_idle,
    make_operator,
    open_page,
    sign_in,
    sign_in_with_app,
    sign_out,
    wired_environment,
    wrong_code,
)
from live_server import MemberSpec, app_secrets, enrol, run_server
from mail_server import body_text
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

OPERATOR = MemberSpec("chief", PASSWORD, name="管理 太郎")
BUILDER_MEMBER = MemberSpec("kaito", PASSWORD, name="海斗")
MEMBERS = {
    js: MemberSpec(f"member-{'js' if js else 'plain'}", PASSWORD, name="桜井さくら")
    for js in (True, False)
}
# Signed in with a code just now; an app of its own, so as not to wait for a time step
# the other tests' sign-ins have not used.
FRESH_MEMBER = MemberSpec("member-fresh", PASSWORD, name="桜井さくら")
FORM = {
    "slug": "seminar",
    "title": "セミナーのお申し込み",
    "open": True,
    "require_2fa": "warn",
    "step_up_minutes": 10,
    "listed": True,
    "pages": {
        "input": "<p>%member:name% 様、以下をご入力ください。</p>",
        "confirm": "<p>コース：%form:course%</p>",
        "thanks": "<p>%form:course% のお申し込みを受け付けました。</p>"
        '<p><a href="%url/rel:tfa:setting%">二段階認証設定</a>もご確認ください。</p>',
    },
    "fields": [
        {
            "name": "course",
            "label": "コース",
            "type": "select",
            "required": True,
            "choices": ["入門コース", "応用コース"],
        },
        {"name": "day", "label": "希望日", "type": "date", "required": True},
        {"name": "note", "label": "ご要望", "type": "textarea", "help": "自由にお書きください。"},
        {"name": "agree", "label": "利用規約に同意する", "type": "checkbox", "required": True},
    ],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory, module_smtp, module_sms):
    environment = wired_environment(module_smtp, module_sms)
    with run_server(
        tmp_path_factory.mktemp("forms-server"),
        [*MEMBERS.values(), OPERATOR, BUILDER_MEMBER, FRESH_MEMBER],
        environment=environment,
    ) as live:
        from portal import member_forms

        for spec in (*MEMBERS.values(), BUILDER_MEMBER, FRESH_MEMBER):
            enrol(live, spec.login_id)
        live.secrets = app_secrets(live)
        make_operator(live, OPERATOR)  # enrols too, and sets live.step
        with live.app_context():
            member_forms.save(None, member_forms.parse(FORM), by="chief")
        live.smtp = module_smtp
        yield live


def no_sideways_scroll(page: Page, what: str) -> None:
    """At 390 px the page fits its width (and at 1280 px, where it starts)."""
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 800})
        wide = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert wide <= 0, f"{what} scrolls sideways by {wide}px at {width}px"
    page.set_viewport_size({"width": 1280, "height": 800})


def skip_the_code_next_time(page: Page, server, spec: MemberSpec) -> None:
    """Sign in ticking この端末では次回からコード入力をスキップする, sign out, sign in
    again: this session never passed a second step (the device skipped it)."""
    sign_in(page, server, spec)
    page.get_by_label("認証コード", exact=True).fill(app_of(server, spec).fresh_code())
    page.get_by_label("この端末では次回からコード入力をスキップする").check()
    page.get_by_role("button", name="認証する").click()
    expect(page).to_have_url(f"{server.url}/")
    sign_out(page, server)
    sign_in(page, server, spec)
    expect(page).to_have_url(f"{server.url}/")


def fill_in(watched, server) -> None:
    page = watched.page
    page.get_by_role("link", name="セミナーのお申し込み").first.click()
    expect(page).to_have_url(f"{server.url}/forms/seminar")
    expect(page.get_by_text("桜井さくら 様、以下をご入力ください。")).to_be_visible()
    # Nothing entered: each error in place, the page not sent on.
    page.get_by_role("button", name="確認する").click()
    expect(page.locator("#f-course-error")).to_have_text("「コース」を選択してください。")
    expect(page.locator("#f-agree-error")).to_have_text(
        "「利用規約に同意する」にチェックを入れてください。"
    )
    no_sideways_scroll(page, "the input page with errors")
    forget_the_expected_400(watched)
    page.get_by_label("コース").select_option("応用コース")
    page.get_by_label("希望日").fill("2026-12-24")
    page.get_by_label("ご要望").fill("<b>駐車場</b>を使います")
    page.get_by_label("利用規約に同意する").check()
    page.get_by_role("button", name="確認する").click()
    expect(page).to_have_url(f"{server.url}/forms/seminar/confirm/{confirm_id(page)}")
    expect(page.locator("#form-answers")).to_contain_text("<b>駐車場</b>を使います")
    # 戻る keeps every answer.
    page.get_by_role("link", name="戻る").click()
    expect(page.get_by_label("コース")).to_have_value("応用コース")
    expect(page.get_by_label("ご要望")).to_have_value("<b>駐車場</b>を使います")
    expect(page.get_by_label("利用規約に同意する")).to_be_checked()
    page.get_by_role("button", name="確認する").click()
    expect(page.locator("#form-step-up")).to_be_visible()
    no_sideways_scroll(page, "the confirm page")


def forget_the_expected_400(watched) -> None:
    """The input page sent back with its errors answers 400: the browser notes it in the
    console, and that one is no fault."""
    note = "/forms/seminar: Failed to load resource: the server responded with a status of 400"
    assert any(note in p for p in watched.problems), watched.problems
    watched.problems[:] = [p for p in watched.problems if note not in p]


def confirm_id(page: Page) -> str:
    return page.url.rsplit("/", 1)[1]


def sent_answers(server, login_id: str) -> list[dict]:
    from portal.extensions import db
    from portal.models import FormSubmission

    with server.app_context():
        rows = db.session.scalars(
            db.select(FormSubmission).where(
                FormSubmission.login_id == login_id, FormSubmission.submitted_at.is_not(None)
            )
        )
        return [json.loads(row.answers) | {"stepped_up": row.stepped_up} for row in rows]


def thanked(page: Page, server, spec: MemberSpec, mails_before: int) -> None:
    expect(page.get_by_text("応用コース のお申し込みを受け付けました。")).to_be_visible()
    expect(page.locator(".flashes")).to_contain_text("受付内容をメールでお送りしました。")
    expect(page.locator("ol.form-steps [aria-current=step]")).to_have_text("完了")
    no_sideways_scroll(page, "the thank-you page")
    assert sent_answers(server, spec.login_id) == [
        {
            "course": "応用コース",
            "day": "2026-12-24",
            "note": "<b>駐車場</b>を使います",
            "agree": "1",
            "stepped_up": True,
        }
    ]
    mails = [
        m for m in list(server.smtp.messages)[mails_before:] if m["To"] == spec.email_address()
    ]
    assert len(mails) == 1 and "■ コース\n  応用コース" in body_text(mails[0])
    page.locator(".member-page-body").get_by_role("link", name="二段階認証設定").click()
    expect(page).to_have_url(f"{server.url}/settings/2fa")


def test_with_javascript_the_check_is_a_dialog_on_the_confirm_page(browser, server, tmp_path):
    spec = MEMBERS[True]
    watched = open_page(browser, javascript=True)
    page = watched.page
    with evidence_on_failure(watched, server, tmp_path, "forms-js"):
        skip_the_code_next_time(page, server, spec)
        fill_in(watched, server)
        here = page.url
        mails_before = len(server.smtp.messages)
        page.get_by_role("button", name="送信する").click()
        dialog = page.locator("dialog#dialog")
        expect(dialog).to_be_visible()
        expect(dialog).to_contain_text("このフォームを送信するには、認証アプリの6桁のコード")
        assert page.url == here  # the confirm page stays beneath the dialog
        assert sent_answers(server, spec.login_id) == []
        no_sideways_scroll(page, "the check over the confirm page")
        dialog.get_by_label("認証コード").fill(app_of(server, spec).fresh_code())
        dialog.get_by_role("button", name="確認する").click()
        expect(page.locator(".flashes")).to_contain_text("本人確認が完了しました。")
        assert page.url == here
        expect(page.locator("#form-answers")).to_contain_text("応用コース")
        expect(page.locator("#form-step-up")).to_have_count(0)
        htmx_idle(page)
        page.get_by_role("button", name="送信する").click()
        expect(page).to_have_url(f"{server.url}/forms/seminar/thanks/{here.rsplit('/', 1)[1]}")
        thanked(page, server, spec, mails_before)
        # Back to the sent confirm page: it is not sent twice.
        page.goto(here)
        expect(page).to_have_url(f"{server.url}/forms/seminar/thanks/{here.rsplit('/', 1)[1]}")
        assert len(sent_answers(server, spec.login_id)) == 1
    assert watched.problems == []


def test_without_javascript_the_check_is_a_page_of_its_own(browser, server, tmp_path):
    spec = MEMBERS[False]
    watched = open_page(browser, javascript=False)
    page = watched.page
    with evidence_on_failure(watched, server, tmp_path, "forms-plain"):
        skip_the_code_next_time(page, server, spec)
        fill_in(watched, server)
        here = page.url
        mails_before = len(server.smtp.messages)
        page.get_by_role("button", name="送信する").click()
        expect(page.get_by_role("heading", name="本人確認")).to_be_visible()
        expect(
            page.get_by_text("このフォームを送信するには、認証アプリの6桁のコード")
        ).to_be_visible()
        no_sideways_scroll(page, "the check as a page")
        page.get_by_label("認証コード").fill(wrong_code(app_of(server, spec)))
        page.get_by_role("button", name="確認する").click()
        expect(page.get_by_text("認証コードが正しくありません。")).to_be_visible()
        page.get_by_label("認証コード").fill(app_of(server, spec).fresh_code())
        page.get_by_role("button", name="確認する").click()
        expect(page).to_have_url(here)
        expect(page.locator(".flashes")).to_contain_text("本人確認が完了しました。")
        page.get_by_role("button", name="送信する").click()
        thanked(page, server, spec, mails_before)
    assert watched.problems == []


def test_a_fresh_second_step_sends_at_once(browser, server, tmp_path):
    """A member signed in with the code just now sends at once: no check asked."""
    spec = FRESH_MEMBER
    watched = open_page(browser, javascript=True)
    page = watched.page
    with evidence_on_failure(watched, server, tmp_path, "forms-fresh"):
        sign_in(page, server, spec)  # this browser has no skip cookie: the code is asked
        page.get_by_label("認証コード", exact=True).fill(app_of(server, spec).fresh_code())
        page.get_by_role("button", name="認証する").click()
        expect(page).to_have_url(f"{server.url}/")
        page.goto(f"{server.url}/forms/seminar")
        page.get_by_label("コース").select_option("入門コース")
        page.get_by_label("希望日").fill("2027-01-10")
        page.get_by_label("利用規約に同意する").check()
        page.get_by_role("button", name="確認する").click()
        expect(page.locator("#form-step-up")).to_have_count(0)
        page.get_by_role("button", name="送信する").click()
        expect(page.get_by_text("入門コース のお申し込みを受け付けました。")).to_be_visible()
    assert watched.problems == []


def test_an_operator_builds_a_form_a_member_sends_it_the_operator_reads_it(
    browser, server, tmp_path
):
    """The issue's whole story: the editor (rows added in the page, the keyword on the
    thank-you page, step-up on), the member's three pages with the check, then the
    answer in the admin list and its CSV."""
    watched = open_page(browser, javascript=True)
    page = watched.page
    with evidence_on_failure(watched, server, tmp_path, "forms-operator"):
        sign_in_with_app(page, server, OPERATOR)
        page.goto(f"{server.url}/admin/forms")
        page.get_by_role("link", name="新しいフォーム").click()
        page.get_by_label("タイトル").fill("見学会の予約")
        page.get_by_label("スラッグ（URLの末尾: /forms/スラッグ）").fill("visit")
        page.get_by_label("送信前の本人確認").fill("5")
        page.get_by_label("マイページとメニューに表示する（受付中のときだけ）").check()
        rows = page.locator("fieldset.form-field-row")
        expect(rows).to_have_count(1)  # a new form starts with one blank field
        row = page.locator("#row-0")
        row.get_by_label("項目名（半角英小文字・数字・_）").fill("slot")
        row.get_by_label("表示名", exact=True).fill("希望の時間帯")
        row.get_by_label("種類", exact=True).select_option("select")
        row.get_by_label("選択肢（種類が「選択肢」のとき。1行に1つ）").fill("午前\n午後")
        row.get_by_label("必須", exact=True).check()
        page.get_by_role("button", name="項目を追加").click()
        expect(rows).to_have_count(2)  # swapped in: what was typed is still there
        expect(page.locator("#row-0 legend")).to_contain_text("希望の時間帯")
        row = page.locator("#row-1")
        row.get_by_label("項目名（半角英小文字・数字・_）").fill("guests")
        row.get_by_label("表示名", exact=True).fill("人数")
        row.get_by_label("種類", exact=True).select_option("number")
        htmx_idle(page)
        # The second row moves above the first, in the page, before anything is saved.
        htmx_idle(page)
        page.get_by_role("button", name="項目 2 を上へ").click()
        expect(page.locator("#row-0 legend")).to_contain_text("人数")
        expect(rows).to_have_count(2)
        page.get_by_label("サンキューページの本文（HTML）").fill(
            "<p>%form:slot% の見学を受け付けました。</p>"
            '<p><a href="%url/rel:tfa:setting%">二段階認証設定</a>もご確認ください。</p>'
        )
        page.get_by_label("タイトル").press("Enter")  # Enter saves
        expect(page).to_have_url(f"{server.url}/admin/forms")
        expect(page.locator(".flashes")).to_contain_text("フォーム「見学会の予約」を保存しました。")
    with server.app_context():
        from portal import member_forms

        spec = member_forms.spec_of(member_forms.find("visit"))
        assert [f.name for f in spec.fields] == ["guests", "slot"]
        assert spec.step_up_minutes == 5

    member = open_page(browser, javascript=True)
    page = member.page
    with evidence_on_failure(member, server, tmp_path, "forms-member"):
        skip_the_code_next_time(page, server, BUILDER_MEMBER)
        page.locator("#member-pages").get_by_role("link", name="見学会の予約").click()
        page.get_by_label("人数").fill("3")
        page.get_by_label("希望の時間帯").select_option("午後")
        page.get_by_role("button", name="確認する").click()
        expect(page.locator("#form-step-up")).to_contain_text("5分以内の本人確認")
        page.get_by_role("button", name="送信する").click()
        dialog = page.locator("dialog#dialog")
        dialog.get_by_label("認証コード").fill(app_of(server, BUILDER_MEMBER).fresh_code())
        dialog.get_by_role("button", name="確認する").click()
        expect(page.locator(".flashes")).to_contain_text("本人確認が完了しました。")
        htmx_idle(page)
        page.get_by_role("button", name="送信する").click()
        expect(page.get_by_text("午後 の見学を受け付けました。")).to_be_visible()
        link = page.locator(".member-page-body").get_by_role("link", name="二段階認証設定")
        expect(link).to_have_attribute("href", "/settings/2fa")

    watched = open_page(browser, javascript=True)
    page = watched.page
    with evidence_on_failure(watched, server, tmp_path, "forms-answers"):
        sign_in_with_app(page, server, OPERATOR)
        page.goto(f"{server.url}/admin/forms")
        page.get_by_role("link", name="1件").click()
        expect(page.get_by_role("heading", name="送信内容: 見学会の予約")).to_be_visible()
        table = page.locator("table")
        expect(table).to_contain_text("kaito")
        expect(table).to_contain_text("午後")
        no_sideways_scroll(page, "the answers")
        with page.expect_download() as download:
            page.get_by_role("link", name="CSVでダウンロード").click()
        text = Path(download.value.path()).read_bytes().decode("utf-8")
        assert text.startswith("\ufeff")
        header, row = text.lstrip("\ufeff").splitlines()[:2]
        assert "ログインID" in header and "人数" in header and "希望の時間帯" in header
        assert "kaito" in row and "午後" in row and ",3," in row and "はい" in row
