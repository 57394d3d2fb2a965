"""axe-core (WCAG 2.0/2.1/2.2 A and AA, and best practices) on every page and every open
dialog, error states included, at 1280 px and at 390 px, in every language of the UI:
no violation of any impact; and the checks axe leaves to people (targets of 24 x 24 px,
errors announced and tied to their field, nothing said by colour alone, the QR code's
text alternative carrying the key). See axe_helpers.

Every GET route of the URL map is visited (each test walks its share: signed out, a
member, an operator), then the states a route alone does not show: wrong codes, empty
forms, each method's code page, the dialogs opened the htmx way step by step. The walk
finds its way by URLs, ids and attributes, never by visible text, so adding a language
to LANGUAGES is all it takes to check it too."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from axe_helpers import AXE_VERSION, WCAG, assert_accessible, axe_results, load_axe, unexplained
from browser_helpers import (
    PASSWORD,
    SECOND_STEP,
    Watched,
    app_of,
    current_step,
    evidence_on_failure,
    form_answered,
    htmx_idle,
    language_context,
    mailed_code,
    read_secret,
    route_urls,
    texted_code,
    wired_environment,
    wrong_code,
)
from live_server import MemberSpec, app_secrets, enrol, run_server
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

# The languages the walk runs in: one more entry (with its locale in browser_helpers.LOCALES)
# checks one more language.
LANGUAGES = ("ja", "en")
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
PHONE_NUMBER = "+819012345678"
PAGE_SLUG = "guide"


@dataclass(frozen=True)
class Cast:
    """The people of one language's walk (their own accounts: the walk changes them)."""

    lang: str

    def spec(self, role: str, name: str) -> MemberSpec:
        return MemberSpec(f"{role}-{self.lang}", PASSWORD, name=name)

    @property
    def member(self) -> MemberSpec:  # every method: app, email, SMS and a passkey
        return self.spec("hana", "山田花子")

    @property
    def newcomer(self) -> MemberSpec:  # no second step yet: sets up SMS and email here
        return self.spec("ken", "佐藤健")

    @property
    def subject(self) -> MemberSpec:  # the operator's subject: app, a key, a device, locked
        return self.spec("jun", "鈴木純")

    @property
    def operator(self) -> MemberSpec:
        return self.spec("chief", "管理太郎")

    @property
    def unenrolled(self) -> MemberSpec:  # an operator without a second step: forced to set up
        return self.spec("boss", "新任管理者")

    @property
    def plain(self) -> MemberSpec:  # app, email and a passkey, in a browser without JavaScript
        return self.spec("mio", "中村美緒")

    @property
    def locked(self) -> MemberSpec:  # email codes, locked out of codes and recovery for now
        return self.spec("aki", "高橋亜希")

    @property
    def blocked(self) -> MemberSpec:  # email codes, locked until an operator lifts it
        return self.spec("sho", "伊藤翔")

    def everyone(self) -> list[MemberSpec]:
        return [
            self.member,
            self.newcomer,
            self.subject,
            self.operator,
            self.unenrolled,
            self.plain,
            self.locked,
            self.blocked,
        ]


# --- the server: mail and SMS really delivered, every kind of member ---------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory, module_smtp, module_sms):
    casts = [Cast(lang) for lang in LANGUAGES]
    environment = wired_environment(module_smtp, module_sms)
    with run_server(tmp_path_factory.mktemp("a11y"), environment=environment) as live:
        arrange(live, casts)
        yield live


def arrange(live, casts: list[Cast]) -> None:
    from portal import api_tokens, members, pages, password_reset
    from portal.extensions import db
    from portal.models import ContactMethod, Passkey
    from portal.twofactor import devices, policy

    # Created here rather than by the CLI one process each: the same rows, 10 s sooner.
    with live.app_context():
        for cast in casts:
            for spec in cast.everyone():
                members.create(
                    spec.login_id,
                    email=spec.email_address(),
                    password=spec.password,
                    name=spec.name,
                )
    live.recovery = {}
    for cast in casts:
        for spec in (cast.member, cast.plain, cast.subject, cast.operator):
            live.recovery[spec.login_id] = enrol(live, spec.login_id)
    live.step = current_step()  # enrol() used the current step of every app
    live.key_ids, live.tokens = {}, {}
    with live.app_context():
        now = datetime.now(UTC)
        for cast in casts:
            for spec in (cast.operator, cast.unenrolled):
                members.find(spec.login_id).is_operator = True
            # Past the grace period: set-up is forced (operators must have a second step).
            members.find(cast.unenrolled.login_id).created_at = now - timedelta(days=30)
            member = members.find(cast.member.login_id)
            member.phone = PHONE_NUMBER
            member.preferred_method = "app"
            for kind in ("email", "sms"):
                db.session.add(ContactMethod(member_id=member.id, kind=kind, created_at=now))
            subject = members.find(cast.subject.login_id)
            subject.tfa_blocked_at, subject.tfa_streak = now, 100
            locked = members.find(cast.locked.login_id)
            locked.tfa_locked_until = locked.recovery_locked_until = now + timedelta(hours=1)
            blocked = members.find(cast.blocked.login_id)
            blocked.tfa_blocked_at, blocked.tfa_streak = now, 100
            plain = members.find(cast.plain.login_id)
            for who in (locked, blocked, plain):
                db.session.add(ContactMethod(member_id=who.id, kind="email", created_at=now))
            keys = {}
            for who, name in (
                (member, "仕事用のノートパソコン"),
                (subject, "YubiKey 5"),
                (plain, "スマートフォン"),
            ):
                keys[who.login_id] = Passkey(
                    member_id=who.id,
                    credential_id=f"a11y-{who.login_id}".encode(),
                    public_key=b"-",
                    name=name,
                    created_at=now,
                )
                db.session.add(keys[who.login_id])
            db.session.commit()
            live.key_ids[cast.lang] = keys[member.login_id].id
            devices.remember(subject, now, timedelta(days=30), label="Chrome / Windows", ip="::1")
            live.tokens[cast.lang] = password_reset.issue(subject, now)
        policy.current(now).operator_enforcement_since = now - timedelta(days=30)
        page = pages.save(
            None,
            title="二段階認証のご案内",
            slug=PAGE_SLUG,
            body="<h2>設定の手順</h2><p>%member:name% さん、"
            '<a href="%url/rel:tfa:setting%">二段階認証設定ページ</a>へどうぞ。</p>',
            by="chief",
            listed=True,
        )
        live.page_id = page.id
        live.terminal_id = devices.mark_terminal("受付のパソコン", "chief", now)[1].id
        live.api_token_id = api_tokens.create("人事システム", "read", by="chief", now=now)[1].id
        form = None
        live.draft_ids, live.submission_ids = {}, {}
        for cast in casts:
            form, live.draft_ids[cast.lang], live.submission_ids[cast.lang] = form_answered(
                members.find(cast.member.login_id), "chief", PAGE_SLUG, form
            )
        live.form_id = form.id
    live.secrets = app_secrets(live)


def share(endpoint: str) -> str:
    """Which test walks a GET route: every route falls to exactly one."""
    if endpoint.startswith("admin."):
        return "operator"
    if endpoint.startswith("auth.") and endpoint not in SECOND_STEP:
        return "signed out"
    return "member"


def urls_of(server, lang: str, who: str) -> dict[str, list[str]]:
    cast = Cast(lang)
    samples = {
        "login_id": [cast.subject.login_id],
        "page_id": [server.page_id],
        "terminal_id": [server.terminal_id],
        "token_id": [server.api_token_id],
        "key_id": [server.key_ids[lang]],
        "slug": [PAGE_SLUG],
        "token": [server.tokens[lang]],
        "form_id": [server.form_id],
        "draft_id": [server.draft_ids[lang]],
        "submission_id": [server.submission_ids[lang]],
    }
    urls = route_urls(server, samples)
    return {e: found for e, found in urls.items() if share(e) == who}


# --- the walk --------------------------------------------------------------------------------


class Walk:
    """One browser tab in one language; ``check`` runs the audit at 1280 and at 390 px."""

    def __init__(self, browser, server, lang: str):
        context = language_context(browser, lang, viewport=DESKTOP)
        self.watched = Watched(context.new_page())
        self.page = self.watched.page
        self.server = server
        self.lang = lang

    def url(self, path: str) -> str:
        return f"{self.server.url}{path}"

    def goto(self, path: str) -> None:
        response = self.page.goto(self.url(path))
        assert response is not None and response.status < 500, (path, response)
        # The page is in the language this walk asked for.
        expect(self.page.locator("html")).to_have_attribute("lang", self.lang)

    def ready(self) -> Page:
        """The page to audit, once the tab is at rest."""
        self.page.wait_for_load_state("load")
        htmx_idle(self.page)
        return self.page

    def check(self, what: str) -> None:
        page = self.ready()
        assert_accessible(page, f"[{self.lang}] {what}")
        page.set_viewport_size(PHONE)
        try:
            assert_accessible(page, f"[{self.lang}] {what}, at 390 px")
        finally:
            page.set_viewport_size(DESKTOP)

    def check_print(self, what: str) -> None:
        """The sheet as it prints: the recovery codes under a line naming the site, the
        account and the day, on the first page, nothing else of the page; held to WCAG
        (see assert_accessible)."""
        page = self.ready()
        sheet = page.locator("#recovery-sheet")
        heading = sheet.locator(".print-only")
        expect(heading).to_be_hidden()
        page.emulate_media(media="print")
        try:
            expect(heading).to_be_visible()
            box = sheet.bounding_box()
            assert box is not None and box["x"] == 0 and box["y"] == 0, box
            visible = page.evaluate(
                """() => [...document.body.querySelectorAll("*")]
                  .filter(e => e.checkVisibility({visibilityProperty: true})
                    && [...e.childNodes].some(n => n.nodeType === 3 && n.data.trim()))
                  .map(e => e.closest("#recovery-sheet") ? null : e.outerHTML.slice(0, 80))
                  .filter(Boolean)"""
            )
            assert visible == [], visible  # text outside the sheet would print too
            assert_accessible(page, f"[{self.lang}] {what}, printed", WCAG)
        finally:
            page.emulate_media(media="screen")

    def forget_expected_console_errors(self, status: int) -> None:
        """The browser notes each 4xx answer in the console; an expected one is no fault."""
        note = f"status of {status}"
        self.watched.problems[:] = [p for p in self.watched.problems if note not in p]

    # --- forms, by their fields' names (the same in every language) -------------------

    def submit(self, form: str) -> None:
        htmx_idle(self.page)
        self.page.locator(form).locator("button[type=submit]").first.click()

    def sign_in(self, spec: MemberSpec) -> None:
        self.goto("/login")
        form = self.page.locator("#login-form")
        form.locator("[name=login_id]").fill(spec.login_id)
        form.locator("[name=password]").fill(spec.password)
        self.submit("#login-form")

    def enter_code(self, code: str) -> None:
        self.page.locator("#verify-form [name=code]").fill(code)
        self.submit("#verify-form")

    def choose_method(self, kind: str) -> None:
        page = self.page
        if not page.locator("details.alternatives").evaluate("d => d.open"):
            page.locator("details.alternatives > summary").click()
        page.locator(f"details.alternatives form:has([name=method][value={kind}]) button").click()
        expect(page).to_have_url(self.url("/login/verify"))

    def sign_out(self) -> None:
        self.page.locator("header form[action$='/logout'] button").click()
        expect(self.page).to_have_url(self.url("/login"))

    # --- dialogs -------------------------------------------------------------------------------

    @property
    def dialog(self):
        return self.page.locator("dialog#dialog")

    def open_dialog(self, opener: str, shows: str) -> None:
        """Click the control (an hx-get link) and wait for the dialog to show ``shows``."""
        htmx_idle(self.page)
        self.page.locator(opener).first.click()
        expect(self.dialog).to_be_visible()
        expect(self.dialog.locator(shows).first).to_be_visible()
        htmx_idle(self.page)

    def in_dialog(self, selector: str):
        return self.dialog.locator(selector)

    def close_dialog(self, how: Callable[[], None], refresh: str | None) -> None:
        """Close it (Escape, キャンセル, 完了) and wait for the page behind to be fetched again."""
        if refresh is None:
            how()
        else:
            with self.page.expect_response(
                lambda r: r.request.method == "GET" and r.url.endswith(refresh)
            ):
                how()
        expect(self.dialog).to_be_hidden()

    def escape(self, refresh: str | None) -> None:
        self.close_dialog(lambda: self.page.keyboard.press("Escape"), refresh)

    def done(self, refresh: str | None) -> None:
        self.close_dialog(lambda: self.in_dialog("a[data-close-dialog]").first.click(), refresh)

    def force_unconfirmed(self) -> None:
        """Send a confirm dialog without its box ticked (portal.js keeps the button
        disabled until it is; the server refuses and says why)."""
        self.in_dialog("button.danger").evaluate("b => { b.disabled = false; b.click(); }")
        expect(self.in_dialog("#confirm-error")).to_be_visible()

    def walk_routes(self, urls: dict[str, list[str]]) -> None:
        for endpoint, found in sorted(urls.items()):
            for path in found:
                self.goto(path)
                self.check(f"{endpoint} {path}")


class NoScriptWalk(Walk):
    """A tab with JavaScript off. axe is JavaScript and needs the page's timers, which a
    browser without JavaScript does not run; so ``check`` audits a mirror: the same
    document as this tab parsed it (<noscript> content shown, scripts gone), served at
    the same URL to a second tab whose own scripts run."""

    def __init__(self, browser, server, lang: str):
        context = language_context(browser, lang, viewport=DESKTOP, java_script_enabled=False)
        self.watched = Watched(context.new_page())
        self.page = self.watched.page
        self.server = server
        self.lang = lang
        self.mirror = language_context(browser, lang, viewport=DESKTOP).new_page()

    def submit(self, form: str) -> None:
        self.page.locator(form).locator("button[type=submit]").first.click()

    def ready(self) -> Page:
        page, mirror = self.page, self.mirror
        page.wait_for_load_state("load")
        html = re.sub(r"<script\b[^>]*>.*?</script>", "", page.content(), flags=re.S | re.I)
        html = html.replace("<noscript>", "<div data-noscript>").replace("</noscript>", "</div>")
        url = page.url

        def serve(route) -> None:
            route.fulfill(status=200, content_type="text/html; charset=utf-8", body=html)

        mirror.unroute_all()
        mirror.route(lambda u: u == url, serve)
        mirror.goto(url)
        # The mirror shows what the tab shows: no script ran there either.
        assert mirror.evaluate("typeof window.htmx") == "undefined"
        mirror.set_viewport_size(DESKTOP)
        return mirror

    def check(self, what: str) -> None:
        super().check(f"{what}, without JavaScript")

    def check_print(self, what: str) -> None:
        super().check_print(f"{what}, without JavaScript")

    def follow(self, link: str) -> None:
        """A dialog's opener followed as a plain link: the dialog as a page of its own."""
        self.page.locator(link).first.click()
        self.page.wait_for_load_state("load")


# --- the tests ---------------------------------------------------------------------------------


def test_axe_runs_past_the_csp_and_every_check_can_fail(browser, server, tmp_path):
    """The CSP refuses an injected <script> (so axe goes in through Runtime.evaluate),
    and each check fails on a page made to break it."""
    walk = Walk(browser, server, "ja")
    page = walk.page
    with evidence_on_failure(walk.watched, server, tmp_path, "axe-setup"):
        walk.goto("/login")
        with pytest.raises(PlaywrightError, match="Content Security Policy"):
            page.add_script_tag(content="window.injected = 1")
        walk.watched.problems.clear()  # the CSP's own report of the refused script
        assert page.evaluate("typeof window.injected") == "undefined"
        load_axe(page)
        assert page.evaluate("axe.version") == AXE_VERSION
        assert axe_results(page)["violations"] == []

        page.evaluate(
            """() => {
              const main = document.querySelector("main");
              main.insertAdjacentHTML("beforeend",
                '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">'
                + '<p><button type="button" id="tiny"></button></p>'
                + '<p><a href="#a" id="dot">.</a> <a href="#b">y</a></p>'
                + '<form><div class="field"><p class="error">wrong</p><input name="x"></div></form>'
                + '<span class="badge"></span>');
              // Set through the CSSOM: the CSP refuses style attributes.
              Object.assign(document.getElementById("tiny").style,
                {minHeight: "0", height: "12px", width: "12px", padding: "0"});
            }"""
        )
        with pytest.raises(AssertionError) as failed:
            assert_accessible(page, "a page made to fail")
        message = str(failed.value)
        for expected in (
            "image-alt (critical)",  # axe
            "button-name (critical)",
            '<button type="button" id="tiny"',  # a button under 24 x 24 px
            '<a href="#a" id="dot">.</a> is',  # a small link crowded by another
            'not announced: <p class="error">wrong</p>',
            "not tied to its field",
            'no words: <span class="badge"></span>',
        ):
            assert expected in message, message


def test_only_known_undecided_contrast_is_let_through():
    """axe's "needs review" results pass only as the known colour cases."""

    def result(rule: str, message: str) -> dict:
        return {"id": rule, "nodes": [{"any": [{"message": message}], "target": ["p"]}]}

    gradient = "Element's background color could not be determined due to a background gradient"
    assert unexplained([result("color-contrast", gradient)]) == []
    other = result("color-contrast", "Element's background color is too similar to the text")
    assert unexplained([other]) == [other]
    rule = result("aria-valid-attr-value", gradient)
    assert unexplained([rule]) == [rule]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_signed_out_pages(browser, server, tmp_path, lang):
    walk = Walk(browser, server, lang)
    page = walk.page
    with evidence_on_failure(walk.watched, server, tmp_path, f"signed-out-{lang}"):
        # The password-reset link (a real one) moves on to /login/reset and its form.
        walk.walk_routes(urls_of(server, lang, "signed out"))
        expect(page).to_have_url(walk.url("/login/reset"))

        # The strength meter under the new password; then a mismatch.
        page.locator("[name=new_password]").fill("password")
        expect(page.locator("#password-strength meter")).to_be_visible()
        walk.check("reset: the strength of a weak password")
        page.locator("[name=new_password]").fill("a long and unguessable phrase")
        page.locator("[name=new_password_confirm]").fill("something else entirely")
        walk.submit("main form")
        expect(page.locator("#new_password_confirm-error")).to_be_visible()
        walk.check("reset: the passwords differ")
        walk.goto("/login/reset/not-a-token")
        expect(page.locator("#reset-error")).to_be_visible()
        walk.check("reset: a broken link")

        # Sign-in: パスキーでログイン shown (passkeys.js), then each kind of refusal.
        walk.goto("/login")
        expect(page.locator("#passkey-login [data-passkey-start]")).to_be_visible()
        walk.check("login with the passkey button")
        walk.submit("#login-form")
        expect(page.locator("#login_id-error")).to_be_visible()
        walk.check("login: both fields empty")
        page.locator("#login-form [name=login_id]").fill(Cast(lang).member.login_id)
        page.locator("#login-form [name=password]").fill("not the password")
        walk.submit("#login-form")
        expect(page.locator("#login-error")).to_be_visible()
        walk.check("login: a wrong password")

        walk.goto("/login/forgot")
        walk.submit("main form")
        expect(page.locator("#login_id-error")).to_be_visible()
        walk.check("forgot: nothing entered")
        page.locator("[name=login_id]").fill("nobody-here")
        walk.submit("main form")
        expect(page.locator("#forgot-sent")).to_be_visible()
        walk.check("forgot: sent")

        response = page.goto(walk.url("/no-such-page"))
        assert response is not None and response.status == 404
        walk.forget_expected_console_errors(404)
        walk.check("error 404")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_member_pages_and_dialogs(browser, server, tmp_path, lang):
    cast = Cast(lang)
    member = cast.member
    app = app_of(server, member)
    walk = Walk(browser, server, lang)
    page = walk.page
    with evidence_on_failure(walk.watched, server, tmp_path, f"member-{lang}"):
        # The second step: each method's code page, wrong codes, the recovery page.
        walk.sign_in(member)
        expect(page).to_have_url(walk.url("/login/verify"))
        walk.check("code page: app")
        walk.enter_code(wrong_code(app))
        expect(page.locator("#code-error")).to_be_visible()
        walk.check("code page: a wrong code")
        page.locator("details.alternatives > summary").click()
        walk.check("code page: the other methods shown")
        walk.choose_method("email")
        expect(page.locator("#resend-form")).to_be_visible()
        walk.check("code page: email")
        walk.submit("#resend-form")
        expect(page.locator("#verify-box .countdown")).to_be_visible()
        walk.check("code page: email, resent too soon")
        walk.choose_method("sms")
        walk.check("code page: SMS")
        walk.choose_method("passkey")
        expect(page.locator("#verify-box form[data-passkey]")).to_be_visible()
        walk.check("code page: passkey")
        page.locator("a[href$='/login/recovery']").click()
        expect(page).to_have_url(walk.url("/login/recovery"))
        walk.check("recovery page")
        page.locator("#recovery-form [name=recovery_code]").fill("aaaaa-aaaaa")
        walk.submit("#recovery-form")
        expect(page.locator("#recovery_code-error")).to_be_visible()
        walk.check("recovery page: a wrong code")
        walk.goto("/login/verify")
        walk.choose_method("app")
        page.locator("#verify-form [name=remember_device]").check()  # for the second visit
        walk.enter_code(app.fresh_code())
        expect(page).to_have_url(walk.url("/"))

        # Every member page (dialogs' own pages too), then their error states.
        walk.walk_routes(urls_of(server, lang, "member"))
        walk.goto("/settings/profile")
        page.locator("main form:has([name=email]) [name=email]").fill("not an address")
        walk.submit("main form:has([name=email])")
        expect(page.locator("#email-error")).to_be_visible()
        walk.check("profile: a wrong address, no password")
        walk.goto("/settings/password")
        walk.submit("main form")
        expect(page.locator("#current_password-error")).to_be_visible()
        walk.check("password change: nothing entered")
        # Hovering the header's ログアウト changes its colour, never its size (it used to
        # shrink to its text under the pointer).
        logout = page.locator("header form[action$='/logout'] button")
        resting = logout.bounding_box()
        logout.hover()
        page.evaluate("Promise.allSettled(document.getAnimations().map(a => a.finished))")
        assert logout.bounding_box() == resting
        page.set_viewport_size(PHONE)
        page.locator(".menu-button").click()
        expect(page.locator("#site-nav")).to_be_visible()
        assert_accessible(page, f"[{lang}] the menu opened on a phone")
        page.set_viewport_size(DESKTOP)

        # Signed in again on the remembered browser: no second step, so changing 2FA
        # first asks for one (本人確認).
        walk.sign_out()
        walk.sign_in(member)
        expect(page).to_have_url(walk.url("/"))
        walk.goto("/settings/2fa")
        walk.open_dialog("#section-app a[hx-get$='/2fa/app/replace']", "[name=code]")
        expect(walk.in_dialog("form[data-passkey]")).to_be_visible()
        walk.check("本人確認")
        walk.in_dialog("form:has([name=code]) [name=code]").fill(wrong_code(app))
        walk.submit("#dialog-content form:has([name=code])")
        expect(walk.in_dialog("#code-error")).to_be_visible()
        walk.check("本人確認: a wrong code")
        walk.in_dialog("form:has([name=method][value=email]) button").click()
        # Sent, or (the code page mailed one under a minute ago) the wait before another.
        expect(walk.in_dialog(".notice, .countdown").first).to_be_visible()
        walk.check("本人確認: a code asked for by mail")
        codes = server.recovery[member.login_id]
        walk.in_dialog("form:has([name=code]) [name=code]").fill(codes[0])
        walk.submit("#dialog-content form:has([name=code])")

        # Replacing the app: the QR code, whose text alternative carries the key.
        expect(walk.in_dialog("svg.qr")).to_be_visible()
        secret = read_secret(walk.dialog)
        qr_name = walk.in_dialog("svg.qr").evaluate(
            "svg => svg.getAttribute('aria-label') || svg.querySelector('title').textContent"
        )
        assert secret in qr_name.replace(" ", ""), qr_name
        expect(walk.dialog.get_by_role("img", name=re.compile(re.escape(qr_name)))).to_be_visible()
        walk.check("app set-up (replace)")
        walk.in_dialog("[name=code]").fill(wrong_code(app))
        walk.submit("#dialog-content form")
        expect(walk.in_dialog("#code-error")).to_be_visible()
        walk.check("app set-up: a wrong code")
        walk.escape("/settings/2fa")

        # Turning email off: the confirm dialog and its refusal without the box.
        walk.open_dialog("#section-email a[hx-get$='/email/disable']", "[name=confirm]")
        walk.check("disable email: confirm")
        walk.force_unconfirmed()
        walk.check("disable email: not confirmed")
        walk.escape("/settings/2fa")

        # Turning SMS off, through to 完了.
        walk.open_dialog("#section-sms a[hx-get$='/sms/disable']", "[name=confirm]")
        walk.in_dialog("[name=confirm]").check()
        walk.in_dialog("button.danger").click()
        expect(walk.in_dialog(".done")).to_be_visible()
        walk.check("disable SMS: done")
        walk.done("/settings/2fa")

        # The passkey: rename (empty, then a name), remove, add (name, then the prompt).
        walk.open_dialog("#section-passkey a[hx-get*='/rename']", "[name=name]")
        walk.check("passkey rename")
        walk.in_dialog("[name=name]").fill("")
        walk.submit("#dialog-content form")
        expect(walk.in_dialog("#name-error")).to_be_visible()
        walk.check("passkey rename: no name")
        walk.in_dialog("[name=name]").fill("自宅のパソコン")
        walk.submit("#dialog-content form")
        expect(walk.in_dialog(".done")).to_be_visible()
        walk.check("passkey rename: done")
        walk.done("/settings/2fa")
        walk.open_dialog("#section-passkey a[hx-get*='/remove']", "[name=confirm]")
        walk.check("passkey remove: confirm")
        walk.escape("/settings/2fa")
        walk.open_dialog("#section-passkey a[hx-get$='/passkey/setup']", "[name=name]")
        walk.check("passkey add: its name")
        walk.in_dialog("[name=name]").fill("")  # it suggests the browser's name
        walk.submit("#dialog-content form")
        expect(walk.in_dialog("#name-error")).to_be_visible()
        walk.check("passkey add: no name")
        walk.in_dialog("[name=name]").fill("予備のセキュリティキー")
        walk.submit("#dialog-content form")
        expect(walk.in_dialog("form[data-passkey=register]")).to_be_visible()
        walk.check("passkey add: the prompt")
        walk.escape("/settings/2fa")

        # New recovery codes.
        walk.open_dialog("#section-recovery a[hx-get$='/recovery/regenerate']", "form")
        walk.check("recovery codes: regenerate")
        walk.submit("#dialog-content form")
        expect(walk.in_dialog("#recovery-codes li")).to_have_count(10)
        walk.check("recovery codes: the new codes")
        expect(walk.in_dialog("#recovery-sheet .print-only")).to_contain_text(member.login_id)
        walk.check_print("recovery codes: the new codes")
        walk.done("/settings/2fa")
        walk.check("settings after the changes")

        # A dialog's form sent after its page expired (the CSRF token no longer the
        # session's): the error box comes into the dialog.
        walk.open_dialog("#section-recovery a[hx-get$='/recovery/regenerate']", "form")
        page.evaluate(
            """() => {
              document.querySelector('meta[name="csrf-token"]').content = "expired";
              document.querySelectorAll('#dialog-content [name=csrf_token]')
                .forEach(input => { input.value = "expired"; });
            }"""
        )
        walk.submit("#dialog-content form")
        expect(walk.in_dialog(".error-box[role=alert]")).to_be_visible()
        walk.forget_expected_console_errors(400)
        walk.check("a dialog's form after its page expired")
        walk.escape(None)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_newcomer_sets_up(browser, server, tmp_path, lang, module_smtp, module_sms):
    """A member without a second step: the banner, settings with nothing set up, and the
    set-up dialogs of SMS (no number yet, then before and after sending), email and the app."""
    cast = Cast(lang)
    newcomer = cast.newcomer
    walk = Walk(browser, server, lang)
    page = walk.page
    with evidence_on_failure(walk.watched, server, tmp_path, f"newcomer-{lang}"):
        walk.sign_in(newcomer)
        expect(page).to_have_url(walk.url("/"))
        expect(page.locator("#tfa-banner")).to_be_visible()
        walk.check("マイページ without a second step")
        walk.goto("/settings/2fa")
        expect(page.locator("#section-app .badge-off")).to_be_visible()
        walk.check("settings with no method")

        # Without a second step, changing one asks for the password (本人確認, its own page).
        walk.goto("/settings/reauth")
        walk.submit("main form:has([name=password])")
        expect(page.locator("#password-error")).to_be_visible()
        walk.check("本人確認 with the password: nothing entered")
        walk.goto("/settings/2fa")

        walk.open_dialog("#section-sms a[hx-get$='/sms/setup']", "#dialog-title")
        expect(walk.in_dialog("a[href$='/settings/profile']")).to_be_visible()
        walk.check("SMS set-up: no phone number yet")
        walk.escape("/settings/2fa")
        with server.app_context():
            from portal import members
            from portal.extensions import db

            members.find(newcomer.login_id).phone = PHONE_NUMBER
            db.session.commit()

        walk.open_dialog("#section-sms a[hx-get$='/sms/setup']", "form[hx-post$='/sms/send']")
        walk.check("SMS set-up: before sending")
        texts = len(module_sms.requests)
        walk.submit("#dialog-content form[hx-post$='/sms/send']")
        expect(walk.in_dialog("[name=code]")).to_be_visible()
        walk.check("SMS set-up: sent")
        code = texted_code(module_sms, texts)
        walk.in_dialog("[name=code]").fill(next(c for c in ("000000", "111111") if c != code))
        walk.submit("#dialog-content form:has([name=code])")
        expect(walk.in_dialog("#code-error")).to_be_visible()
        walk.check("SMS set-up: a wrong code")
        walk.in_dialog("[name=code]").fill(code)
        walk.submit("#dialog-content form:has([name=code])")
        expect(walk.in_dialog("#recovery-codes li")).to_have_count(10)
        walk.check("SMS set-up: done, with the recovery codes")
        walk.done("/settings/2fa")

        walk.open_dialog("#section-email a[hx-get$='/email/setup']", "form[hx-post$='/email/send']")
        walk.check("email set-up: before sending")
        mails = len(module_smtp.messages)
        walk.submit("#dialog-content form[hx-post$='/email/send']")
        expect(walk.in_dialog("[name=code]")).to_be_visible()
        walk.check("email set-up: sent")
        walk.in_dialog("[name=code]").fill(
            mailed_code(module_smtp, newcomer.email_address(), mails)
        )
        walk.submit("#dialog-content form:has([name=code])")
        expect(walk.in_dialog(".done")).to_be_visible()
        walk.check("email set-up: done")
        walk.done("/settings/2fa")

        walk.open_dialog("#section-app a[hx-get$='/2fa/app/setup']", "svg.qr")
        walk.check("app set-up")
        walk.escape("/settings/2fa")
        walk.check("settings with SMS and email")

        # A new email address waits for the code sent to it (a wrong one first).
        walk.goto("/settings/profile")
        profile = "main form:has([name=email])"
        page.locator(f"{profile} [name=email]").fill(f"new-{newcomer.email_address()}")
        page.locator(f"{profile} [name=current_password]").fill(newcomer.password)
        walk.submit(profile)
        expect(page.locator("#confirm-email")).to_be_visible()
        walk.check("member info: the new address to confirm")
        page.locator("#code-email").fill("000000")
        walk.submit("#confirm-email form:has(#code-email)")
        expect(page.locator("#code-email-error")).to_be_visible()
        walk.check("member info: a wrong confirmation code")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_admin_pages_and_dialogs(browser, server, tmp_path, lang):
    cast = Cast(lang)
    subject_page = f"/admin/members/{cast.subject.login_id}"

    # An operator without a second step is sent to set one up first.
    walk = Walk(browser, server, lang)
    with evidence_on_failure(walk.watched, server, tmp_path, f"forced-{lang}"):
        walk.sign_in(cast.unenrolled)
        expect(walk.page).to_have_url(re.compile(r"/settings/2fa/setup"))
        walk.check("set-up forced")

    walk = Walk(browser, server, lang)
    page = walk.page
    with evidence_on_failure(walk.watched, server, tmp_path, f"operator-{lang}"):
        walk.sign_in(cast.operator)
        walk.enter_code(app_of(server, cast.operator).fresh_code())
        expect(page).to_have_url(walk.url("/"))
        walk.walk_routes(urls_of(server, lang, "operator"))

        # The member list filtered in place (htmx), and a search that finds nobody.
        walk.goto("/admin/members")
        with page.expect_response(lambda r: "tfa=off" in r.url):
            page.locator("select#tfa").select_option("off")
        walk.check("members: without a second step")
        with page.expect_response(lambda r: "q=zzzz" in r.url):
            page.locator("#q").fill("zzzz")
        expect(page.locator("#member-table table")).to_have_count(0)
        walk.check("members: nobody found")

        # The subject's page: lock, reset with its refusal, unlock, a password link.
        walk.goto(subject_page)
        expect(page.locator("#lock")).to_be_visible()
        walk.open_dialog("#methods a[hx-get$='/reset']", "[name=confirm]")
        walk.check("reset: confirm")
        walk.force_unconfirmed()
        walk.check("reset: not confirmed")
        walk.escape(subject_page)
        walk.open_dialog("#lock a[hx-get$='/unlock']", "form")
        walk.check("unlock")
        walk.submit("#dialog-content form")
        expect(walk.in_dialog(".done")).to_be_visible()
        walk.check("unlock: done")
        walk.done(subject_page)
        walk.open_dialog("#password-reset a[hx-get$='/password-reset']", "form")
        walk.check("password link")
        walk.submit("#dialog-content form")
        expect(walk.in_dialog(".done")).to_be_visible()
        walk.check("password link: sent")
        walk.done(subject_page)

        walk.goto("/admin/audit?from=2026-02-30&member=" + "x" * 70)
        expect(page.locator("#from-error")).to_be_visible()
        walk.check("audit log: a wrong date")

        walk.goto("/admin/policy")
        page.locator("[name=grace_days]").fill("many")
        walk.submit("form.policy-form")
        expect(page.locator("#grace_days-error")).to_be_visible()
        walk.forget_expected_console_errors(400)  # the page comes back as a 400
        walk.check("policy: a wrong number of days")
        walk.open_dialog("#terminals a[hx-get$='/remove']", "form")
        walk.check("shared terminal: remove")
        walk.escape(None)

        walk.goto("/admin/pages/new")
        walk.submit("main form")
        expect(page.locator("#title-error")).to_be_visible()
        walk.check("member page form: nothing entered")
        walk.goto("/admin/pages")
        walk.open_dialog("#page-table a[hx-get$='/delete']", "form")
        walk.check("member page: delete")
        walk.escape(None)

        # The member import: no file chosen, then a file with problems, checked only.
        walk.goto("/admin/import")
        page.locator("button[value=import]").click()
        expect(page.locator("#import-error")).to_be_visible()
        walk.check("import: no file")
        page.set_input_files(
            "#file",
            files=[
                {
                    "name": "members.csv",
                    "mimeType": "text/csv",
                    "buffer": b"login_id,email\nnewbie,newbie@example\nx,x@example.com\n",
                }
            ],
        )
        page.locator("button[value=check]").click()
        expect(page.locator("#import-problems")).to_be_visible()
        walk.check("import: problems found")

        # API tokens: a name left out, a token shown once, a revocation asked for.
        walk.goto("/admin/api-tokens")
        walk.open_dialog("main a[hx-get$='/api-tokens/new']", "form")
        walk.check("api token: new")
        walk.submit("#dialog-content form")
        expect(walk.in_dialog("#name-error")).to_be_visible()
        walk.check("api token: no name")
        walk.in_dialog("[name=name]").fill(f"ヘルプデスク（{lang}）")
        walk.submit("#dialog-content form")
        expect(walk.in_dialog("#api-token-value")).to_be_visible()
        walk.check("api token: shown once")
        walk.done("/admin/api-tokens")
        walk.open_dialog("#api-tokens a[hx-get$='/revoke']", "form")
        walk.check("api token: revoke")
        walk.escape(None)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_locked_second_step(browser, server, tmp_path, lang):
    """The code and recovery pages of a member locked out for now (429, with the time it
    ends) and of one whom only an operator can let back in (423)."""
    cast = Cast(lang)
    walk = Walk(browser, server, lang)
    page = walk.page
    with evidence_on_failure(walk.watched, server, tmp_path, f"locked-{lang}"):
        walk.sign_in(cast.locked)
        expect(page).to_have_url(walk.url("/login/verify"))
        expect(page.locator("#code-error")).to_be_visible()
        with page.expect_response(lambda r: r.url.endswith("/login/verify")) as answer:
            walk.enter_code("000000")
        assert answer.value.status == 429
        walk.check("code page: locked for now")
        walk.goto("/login/recovery")
        page.locator("#recovery-form [name=recovery_code]").fill("aaaaa-aaaaa")
        walk.submit("#recovery-form")
        expect(page.locator("#recovery_code-error")).to_be_visible()
        walk.check("recovery page: locked for now")
        walk.forget_expected_console_errors(429)

    walk = Walk(browser, server, lang)
    page = walk.page
    with evidence_on_failure(walk.watched, server, tmp_path, f"blocked-{lang}"):
        walk.sign_in(cast.blocked)
        expect(page).to_have_url(walk.url("/login/verify"))
        with page.expect_response(lambda r: r.url.endswith("/login/verify")) as answer:
            walk.enter_code("000000")
        assert answer.value.status == 423
        expect(page.locator("#code-error")).to_be_visible()
        walk.check("code page: locked until an operator lifts it")
        walk.forget_expected_console_errors(423)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_without_javascript(browser, server, tmp_path, lang):
    """Every form works as a plain POST; the pages it leads to, the dialogs as pages of
    their own and their error states, with the notices shown only without JavaScript."""
    cast = Cast(lang)
    member = cast.plain
    walk = NoScriptWalk(browser, server, lang)
    page = walk.page
    with evidence_on_failure(walk.watched, server, tmp_path, f"no-js-{lang}"):
        walk.goto("/login")
        walk.check("login")
        walk.sign_in(member)
        expect(page).to_have_url(walk.url("/login/verify"))
        walk.check("code page: app")
        walk.enter_code(wrong_code(app_of(server, member)))
        expect(page.locator("#code-error")).to_be_visible()
        walk.check("code page: a wrong code")
        walk.choose_method("passkey")
        expect(page.locator("#verify-box noscript")).to_have_count(1)
        walk.check("code page: passkey")
        walk.goto("/login/recovery")
        codes = server.recovery[member.login_id]
        page.locator("#recovery-form [name=recovery_code]").fill(codes[0])
        walk.submit("#recovery-form")
        expect(page).to_have_url(walk.url("/"))
        walk.check("マイページ after a recovery code")

        walk.goto("/settings/2fa")
        walk.check("settings")
        walk.follow("#section-app a[href$='/2fa/app/replace']")
        expect(page.locator("main svg.qr")).to_be_visible()
        walk.check("app set-up (replace)")
        page.locator("main [name=code]").fill(wrong_code(app_of(server, member)))
        walk.submit("main form:has([name=code])")
        expect(page.locator("#code-error")).to_be_visible()
        walk.check("app set-up: a wrong code")

        walk.goto("/settings/2fa")
        walk.follow("#section-email a[href$='/email/disable']")
        # Without portal.js the button is not held back: the server refuses and says why.
        walk.submit("main form:has([name=confirm])")
        expect(page.locator("#confirm-error")).to_be_visible()
        walk.check("disable email: not confirmed")

        walk.goto("/settings/2fa")
        walk.follow("#section-passkey a[href$='/passkey/setup']")
        page.locator("main [name=name]").fill("予備のセキュリティキー")
        walk.submit("main form:has([name=name])")
        expect(page.locator("main noscript")).to_have_count(1)
        walk.check("passkey add: the prompt")

        walk.goto("/settings/2fa")
        walk.follow("#section-recovery a[href$='/recovery/regenerate']")
        walk.submit("main form")
        expect(page.locator("main #recovery-codes li")).to_have_count(10)
        walk.check("recovery codes: the new codes")
        walk.check_print("recovery codes: the new codes")


# Limits of one attempt: the second is refused. One worker, so that it counts every
# request (without REDIS_URL each worker counts its own).
TIGHT_LIMITS = {
    "PORTAL_LIMIT_LOGIN_ACCOUNT_ADDRESS": "1 per hour",
    "PORTAL_LIMIT_RESET_ADDRESS": "1 per hour",
    "PORTAL_LIMIT_RESET_TOKEN": "1 per hour",
    "PORTAL_LIMIT_VERIFY": "1 per hour",
    "PORTAL_LIMIT_RECOVERY": "1 per hour",
}


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory, module_smtp, module_sms):
    environment = wired_environment(module_smtp, module_sms) | TIGHT_LIMITS
    environment["PORTAL_RATELIMIT"] = "yes"
    with run_server(tmp_path_factory.mktemp("limits"), workers=1, environment=environment) as live:
        from portal import members

        with live.app_context():
            for cast in map(Cast, LANGUAGES):
                for spec in (cast.member, cast.newcomer):
                    members.create(spec.login_id, email=spec.email_address(), password=PASSWORD)
        for cast in map(Cast, LANGUAGES):
            enrol(live, cast.member.login_id)
        yield live


@pytest.mark.parametrize("lang", LANGUAGES)
def test_too_many_attempts(browser, limited_server, tmp_path, lang):
    """Each form over its rate limit: the page again with the refusal (429) announced."""
    server = limited_server
    cast = Cast(lang)
    walk = Walk(browser, server, lang)
    page = walk.page

    def twice(send: Callable[[], None], answered: str) -> None:
        """Send a form twice; the second answer is the refusal."""
        for _ in range(2):
            with page.expect_response(
                lambda r: r.request.method == "POST" and r.url.endswith(answered)
            ) as answer:
                send()
            htmx_idle(page)
        assert answer.value.status == 429, answer.value.url

    with evidence_on_failure(walk.watched, server, tmp_path, f"limits-{lang}"):
        walk.goto("/login")

        def wrong_password() -> None:
            form = page.locator("#login-form")
            form.locator("[name=login_id]").fill(cast.newcomer.login_id)
            form.locator("[name=password]").fill("not the password")
            walk.submit("#login-form")

        twice(wrong_password, "/login")
        expect(page.locator("#login-error")).to_be_visible()
        walk.check("login: too many attempts")

        def forgot() -> None:
            walk.goto("/login/forgot")  # once sent, the page has no form
            page.locator("[name=login_id]").fill(cast.newcomer.login_id)
            walk.submit("main form")

        twice(forgot, "/login/forgot")
        expect(page.locator("main .error[role=alert]").first).to_be_visible()
        walk.check("forgot: too many requests")
        walk.goto("/login/reset/not-a-token")
        with page.expect_response(lambda r: "/login/reset" in r.url) as answer:
            page.reload()
        assert answer.value.status == 429
        expect(page.locator("#reset-error")).to_be_visible()
        walk.check("reset: too many broken links")

        walk.sign_in(cast.member)
        expect(page).to_have_url(walk.url("/login/verify"))
        twice(lambda: walk.enter_code("000000"), "/login/verify")
        expect(page.locator("#code-error")).to_be_visible()
        walk.check("code page: too many attempts")
        walk.goto("/login/recovery")

        def wrong_recovery_code() -> None:
            page.locator("#recovery-form [name=recovery_code]").fill("aaaaa-aaaaa")
            walk.submit("#recovery-form")

        twice(wrong_recovery_code, "/login/recovery")
        expect(page.locator("#recovery_code-error")).to_be_visible()
        walk.check("recovery page: too many attempts")
        walk.forget_expected_console_errors(429)
