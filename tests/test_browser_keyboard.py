"""Every flow with the keyboard alone, in a real Chromium against a real gunicorn: sign-in
with each method (an app code, an emailed code, a texted code, a passkey, a recovery code,
a passkey without the password), the settings dialogs (open, fill, confirm, close with
Escape, focus back where it was) and an operator's 無効化.

Only ``page.keyboard`` acts: Tab and Shift+Tab to move, Enter and Space to press, Escape,
typing (Control+A selects a field's text to replace it). Nothing is clicked or filled;
going to an address (``page.goto``) is typing it into the address bar. ``tab_to`` fails
when a control cannot be reached by Tab, naming where the focus went instead."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from browser_helpers import (
    NO_AUTOFILL,
    PASSWORD,
    Authenticator,
    VirtualAuthenticator,
    Watched,
    app_of,
    current_step,
    evidence_on_failure,
    htmx_idle,
    language_context,
    mailed_code,
    read_secret,
    texted_code,
    wired_environment,
    without_autofill,
    wrong_code,
)
from live_server import MemberSpec, app_secrets, enrol, run_server
from playwright.sync_api import Locator, Page, expect

pytestmark = pytest.mark.browser

APP = MemberSpec("aki", PASSWORD, name="秋山亜紀")  # an authenticator app, then a recovery code
MAIL = MemberSpec("emi", PASSWORD, name="江藤恵美")  # the app first, switches to email
TEXT = MemberSpec("sho", PASSWORD, name="庄司翔")  # SMS only
KEY = MemberSpec("pia", PASSWORD, name="広田ぴあ")  # adds a passkey, then signs in with it
NEW = MemberSpec("nao", PASSWORD, name="中野直")  # sets the app up in the dialogs
OPERATOR = MemberSpec("boss", PASSWORD, name="管理一郎")
SUBJECT = MemberSpec("jun", PASSWORD, name="鈴木純")  # the operator turns 2FA off for this one
PHONE_NUMBER = "+819012345678"
TAB_LIMIT = 60
REAUTH_LABEL = "認証コードまたはリカバリーコード"


@pytest.fixture(scope="module")
def server(tmp_path_factory, module_smtp, module_sms):
    environment = wired_environment(module_smtp, module_sms)
    with run_server(tmp_path_factory.mktemp("keyboard"), environment=environment) as live:
        from portal import members
        from portal.extensions import db
        from portal.models import ContactMethod

        with live.app_context():
            for spec in (APP, MAIL, TEXT, KEY, NEW, OPERATOR, SUBJECT):
                members.create(
                    spec.login_id,
                    email=spec.email_address(),
                    password=spec.password,
                    name=spec.name,
                )
            members.find(OPERATOR.login_id).is_operator = True
            members.find(TEXT.login_id).phone = PHONE_NUMBER
            db.session.commit()
        live.recovery = {
            spec.login_id: enrol(live, spec.login_id) for spec in (APP, MAIL, OPERATOR, SUBJECT)
        }
        live.step = current_step()
        live.secrets = app_secrets(live)
        with live.app_context():
            now = datetime.now(UTC)
            for spec, kind in ((MAIL, "email"), (TEXT, "sms")):
                member_id = members.find(spec.login_id).id
                db.session.add(ContactMethod(member_id=member_id, kind=kind, created_at=now))
            db.session.commit()
        yield live


# --- the keyboard --------------------------------------------------------------------------


def open_tab(browser, server) -> Watched:
    context = language_context(browser, "ja", viewport={"width": 1280, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    return Watched(context.new_page())


def focused(page: Page) -> str:
    return page.evaluate(
        "() => { const el = document.activeElement;"
        " return el ? el.outerHTML.slice(0, 100) : 'nothing'; }"
    )


def has_focus(target: Locator) -> bool:
    return target.evaluate("el => el === document.activeElement")


def tab_to(page: Page, target: Locator, *, backwards: bool = False) -> None:
    """Press Tab (or Shift+Tab) until ``target`` has the focus."""
    htmx_idle(page)
    expect(target).to_be_visible()
    trail = []
    for _ in range(TAB_LIMIT):
        if has_focus(target):
            return
        page.keyboard.press("Shift+Tab" if backwards else "Tab")
        trail.append(focused(page))
    pytest.fail(f"Tab never reached {target}; the focus went:\n" + "\n".join(trail))


def type_into(page: Page, field: Locator, text: str) -> None:
    """Tab to the field, select what is in it and type over it."""
    tab_to(page, field)
    page.keyboard.press("Control+A")
    page.keyboard.type(text)


def press(page: Page, control: Locator, key: str = "Enter", *, backwards: bool = False) -> None:
    tab_to(page, control, backwards=backwards)
    page.keyboard.press(key)


def sign_in(page: Page, server, spec: MemberSpec) -> None:
    page.goto(f"{server.url}/login")
    type_into(page, page.get_by_label("ログインID"), spec.login_id)
    type_into(page, page.get_by_label("パスワード", exact=True), spec.password)
    page.keyboard.press("Enter")


def enter_code(page: Page, code: str, label: str = "認証コード") -> None:
    type_into(page, page.get_by_label(label, exact=True), code)
    page.keyboard.press("Enter")


def sign_out(page: Page, server) -> None:
    press(page, page.locator("header").get_by_role("button", name="ログアウト"))
    expect(page).to_have_url(f"{server.url}/login")


def choose_method(page: Page, name: str) -> None:
    """Open 別の方法で認証する (a <details>) and pick a method."""
    press(page, page.locator("details.alternatives > summary"))
    press(page, page.locator("details.alternatives").get_by_role("button", name=name))


def dialog(page: Page) -> Locator:
    return page.locator("dialog#dialog")


def open_dialog(page: Page, opener: Locator, title: str | re.Pattern) -> None:
    press(page, opener)
    expect(dialog(page).locator("#dialog-title")).to_have_text(title)
    # portal.js moves the focus into the new content once it has settled.
    expect(page.locator("#dialog-content :focus")).to_have_count(1)


def close_by(page: Page, key: str, refresh: str) -> None:
    """Close the dialog with ``key`` on whatever has the focus; wait for the page behind
    it to be fetched again."""
    with page.expect_response(lambda r: r.request.method == "GET" and r.url.endswith(refresh)):
        page.keyboard.press(key)
    expect(dialog(page)).to_be_hidden()


def focus_stays_in_dialog(page: Page) -> None:
    """A modal dialog keeps the focus: a round of Tabs never lands behind it."""
    for _ in range(12):
        page.keyboard.press("Tab")
        inside = page.evaluate(
            "() => { const el = document.activeElement;"
            " return !el || el === document.body || el.closest('dialog#dialog') !== null; }"
        )
        assert inside, f"the focus left the dialog for {focused(page)}"


# --- signing in ----------------------------------------------------------------------------


def test_sign_in_with_an_app_code_then_a_recovery_code(browser, server, tmp_path):
    app = app_of(server, APP)
    watched = open_tab(browser, server)
    page = watched.page
    with evidence_on_failure(watched, server, tmp_path, "keyboard-app"):
        sign_in(page, server, APP)
        expect(page).to_have_url(f"{server.url}/login/verify")
        # A wrong code: the message is read out and the field, emptied, keeps the focus.
        enter_code(page, wrong_code(app))
        error = page.locator("#code-error")
        expect(error).to_have_attribute("role", "alert")
        code_field = page.get_by_label("認証コード", exact=True)
        expect(code_field).to_be_focused()
        page.keyboard.type(app.fresh_code())
        page.keyboard.press("Enter")
        expect(page).to_have_url(f"{server.url}/")

        sign_out(page, server)
        sign_in(page, server, APP)
        expect(page).to_have_url(f"{server.url}/login/verify")
        press(page, page.get_by_role("link", name="リカバリーコードを使う"))
        expect(page).to_have_url(f"{server.url}/login/recovery")
        type_into(
            page,
            page.get_by_label("リカバリーコード", exact=True),
            server.recovery[APP.login_id][0],
        )
        page.keyboard.press("Enter")
        expect(page).to_have_url(f"{server.url}/")


def test_sign_in_with_an_emailed_code_and_a_texted_code(
    browser, server, tmp_path, module_smtp, module_sms
):
    watched = open_tab(browser, server)
    page = watched.page
    with evidence_on_failure(watched, server, tmp_path, "keyboard-mail"):
        # The app is asked first; 別の方法で認証する switches to email.
        sign_in(page, server, MAIL)
        expect(page.locator("#verify-box")).to_contain_text("認証アプリ")
        sent = len(module_smtp.messages)
        choose_method(page, "メールでコードを受け取る")
        expect(page.locator("#verify-box")).to_contain_text("メールで送信した")
        enter_code(page, mailed_code(module_smtp, MAIL.email_address(), sent))
        expect(page).to_have_url(f"{server.url}/")
        sign_out(page, server)

        texts = len(module_sms.requests)
        sign_in(page, server, TEXT)
        expect(page.locator("#verify-box")).to_contain_text("SMSで送信した")
        enter_code(page, texted_code(module_sms, texts))
        expect(page).to_have_url(f"{server.url}/")


def test_add_a_passkey_then_sign_in_with_it(browser, server, tmp_path):
    watched = open_tab(browser, server)
    page = watched.page
    with evidence_on_failure(watched, server, tmp_path, "keyboard-passkey"):
        authenticator = VirtualAuthenticator(page)
        page.add_init_script(NO_AUTOFILL)
        sign_in(page, server, KEY)
        expect(page).to_have_url(f"{server.url}/")
        without_autofill(page, True)  # passkeys only when the member asks, by key press

        # Settings by the header's menu; the passkey's set-up dialog, step by step.
        press(
            page,
            page.get_by_role("navigation", name="メインメニュー").get_by_role(
                "link", name="二段階認証設定"
            ),
        )
        expect(page).to_have_url(f"{server.url}/settings/2fa")
        section = page.locator("#section-passkey")
        open_dialog(
            page,
            section.get_by_role("link", name="設定を開始する"),
            "パスキー・セキュリティキーの登録",
        )
        name = dialog(page).get_by_label("パスキーの名前")
        expect(name).to_be_focused()
        page.keyboard.press("Control+A")
        page.keyboard.type("仕事用のパソコン")
        page.keyboard.press("Enter")
        create = dialog(page).get_by_role("button", name="パスキーを作成する")
        press(page, create)
        expect(dialog(page).locator("#dialog-title")).to_have_text(
            "パスキー「仕事用のパソコン」を登録しました。"
        )
        assert len(authenticator.credentials()) == 1
        focus_stays_in_dialog(page)
        press(page, dialog(page).get_by_role("link", name="完了"))
        expect(dialog(page)).to_be_hidden()
        # 設定を開始する is gone; the focus is on what took its place (the same dialog).
        expect(section.get_by_role("link", name="パスキーを追加する")).to_be_focused()

        # Password, then the passkey as the second step; then the passkey alone.
        sign_out(page, server)
        sign_in(page, server, KEY)
        expect(page).to_have_url(f"{server.url}/login/verify")
        press(page, page.get_by_role("button", name="パスキーで認証する"))
        expect(page).to_have_url(f"{server.url}/")
        sign_out(page, server)
        press(page, page.get_by_role("button", name="パスキーでログイン"))
        expect(page).to_have_url(f"{server.url}/")


# --- the settings dialogs --------------------------------------------------------------------


def test_settings_dialogs(browser, server, tmp_path):
    watched = open_tab(browser, server)
    page = watched.page
    with evidence_on_failure(watched, server, tmp_path, "keyboard-settings"):
        sign_in(page, server, NEW)
        expect(page).to_have_url(f"{server.url}/")
        page.goto(f"{server.url}/settings/2fa")
        # The first Tab shows 本文へスキップ; Enter on it skips the header.
        page.keyboard.press("Tab")
        skip = page.get_by_role("link", name="本文へスキップ")
        expect(skip).to_be_focused()
        assert skip.bounding_box()["x"] >= 0, "the skip link stays off screen when focused"
        page.keyboard.press("Enter")
        expect(page.locator("main#main")).to_be_focused()
        app_section = page.locator("#section-app")
        email_start = page.locator("#section-email").get_by_role("link", name="設定を開始する")

        # Escape closes a dialog; the focus is back on the control that opened it.
        open_dialog(page, email_start, "メールによる認証の設定")
        focus_stays_in_dialog(page)
        close_by(page, "Escape", "/settings/2fa")
        expect(email_start).to_be_focused()

        # The app: the key read from the dialog, a wrong code, the right one, the codes.
        # Each typed at once and sent with Enter: new content settles at once, so the
        # field htmx focuses is in a form htmx already sends (with htmx's default 20 ms,
        # Enter could send it as a plain page request instead).
        assert page.evaluate("htmx.config.defaultSettleDelay") == 0
        start = app_section.get_by_role("link", name="設定を開始する")
        open_dialog(page, start, "認証アプリによる認証の設定")
        code_field = dialog(page).get_by_label("アプリに表示された6桁の認証コード")
        expect(code_field).to_be_focused()
        app = Authenticator(read_secret(dialog(page)))  # the key the dialog shows
        page.keyboard.type(wrong_code(app))
        page.keyboard.press("Enter")
        expect(dialog(page).locator("#code-error")).to_be_visible()
        expect(code_field).to_be_focused()
        page.keyboard.type(app.fresh_code())
        page.keyboard.press("Enter")
        expect(dialog(page).locator("#recovery-codes li")).to_have_count(10)
        # The key's copy button and the codes' tools answer Enter too (no mouse needed).
        press(page, dialog(page).get_by_role("button", name="コードをコピー"))
        expect(dialog(page).locator("#recovery-codes-status")).to_have_text("コピーしました")
        press(page, dialog(page).get_by_role("link", name="完了"))
        expect(dialog(page)).to_be_hidden()
        expect(page.locator("#section-app-title")).to_be_focused()

        # Turning it off: Space ticks the box, which enables 無効化; Escape on the result.
        disable = app_section.get_by_role("link", name="設定を無効化する")
        open_dialog(page, disable, re.compile("無効化"))
        button = dialog(page).get_by_role("button", name="無効化", exact=True)
        expect(button).to_be_disabled()
        press(page, dialog(page).get_by_label("はい、無効化して問題ありません。"), " ")
        expect(button).to_be_enabled()
        press(page, button)
        expect(dialog(page).locator(".done")).to_be_visible()
        close_by(page, "Escape", "/settings/2fa")
        expect(page.locator("#section-app-title")).to_be_focused()
        expect(app_section.locator(".badge-off")).to_be_visible()

        # On a phone the header's menu opens and leads on by keyboard too.
        page.set_viewport_size({"width": 390, "height": 844})
        press(page, page.get_by_role("button", name="メニュー"), backwards=True)
        menu = page.get_by_role("navigation", name="メインメニュー")
        expect(menu).to_be_visible()
        press(page, menu.get_by_role("link", name="マイページ"))
        expect(page).to_have_url(f"{server.url}/")


def test_confirm_on_a_dialog_page(browser, server, tmp_path):
    """本人確認 opened by its address (the member-info page links to it): Enter sends
    the code and the member lands where the link said, not in a modal."""
    app = app_of(server, MAIL)  # its app is still unused: a code at once
    watched = open_tab(browser, server)
    page = watched.page
    with evidence_on_failure(watched, server, tmp_path, "keyboard-reauth-page"):
        sign_in(page, server, MAIL)
        enter_code(page, app.fresh_code())
        expect(page).to_have_url(f"{server.url}/")
        page.goto(f"{server.url}/settings/reauth?next=/settings/profile")
        enter_code(page, wrong_code(app), REAUTH_LABEL)
        expect(page.locator("#code-error")).to_be_visible()
        expect(page).to_have_url(re.compile(r"/settings/reauth"))
        expect(dialog(page)).to_be_hidden()
        expect(page.locator("[id=code]")).to_have_count(1)
        enter_code(page, server.recovery[MAIL.login_id][0], REAUTH_LABEL)
        expect(page).to_have_url(f"{server.url}/settings/profile")
        expect(dialog(page)).to_be_hidden()


# --- an operator's 無効化 --------------------------------------------------------------------


def test_operator_turns_a_members_two_step_off(browser, server, tmp_path):
    watched = open_tab(browser, server)
    page = watched.page
    with evidence_on_failure(watched, server, tmp_path, "keyboard-admin"):
        sign_in(page, server, OPERATOR)
        enter_code(page, app_of(server, OPERATOR).fresh_code())
        expect(page).to_have_url(f"{server.url}/")
        press(page, page.get_by_role("link", name="管理画面"))
        press(
            page,
            page.get_by_role("navigation", name="管理メニュー").get_by_role(
                "link", name="メンバー", exact=True
            ),
        )
        expect(page).to_have_url(f"{server.url}/admin/members")
        press(page, page.get_by_role("link", name=SUBJECT.login_id, exact=True))
        expect(page).to_have_url(f"{server.url}/admin/members/{SUBJECT.login_id}")

        methods = page.locator("#methods")
        reset = methods.get_by_role("link", name="無効化", exact=True)
        open_dialog(page, reset, re.compile("二段階認証を無効化"))
        focus_stays_in_dialog(page)
        press(page, dialog(page).get_by_label("はい、無効化して問題ありません。"), " ")
        press(page, dialog(page).get_by_role("button", name="無効化", exact=True))
        done = dialog(page).get_by_role("link", name="完了")
        expect(done).to_be_visible()
        tab_to(page, done)
        close_by(page, "Enter", f"/admin/members/{SUBJECT.login_id}")
        expect(methods.get_by_role("link", name="無効化", exact=True)).to_have_count(0)
        expect(methods.get_by_role("heading", name="二段階認証の方法")).to_be_focused()
