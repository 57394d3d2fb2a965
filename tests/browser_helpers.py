"""Shared pieces of the browser tests: Debian's Chromium through Playwright, a watched
page that records console errors and 5xx answers, and what a member does on the pages."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator

import pyotp
import pytest
from live_server import MemberSpec, enrol_operator
from mail_server import SMTPServer, body_text
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from sms_gateway import SMSGateway

TIMEOUT_MS = 10_000
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct horse battery staple"
WRONG_CODE = "認証コードが正しくありません。"
RECOVERY_CODE_RE = re.compile(r"[a-km-np-z2-9]{5}-[a-km-np-z2-9]{5}")
STEP_SECONDS = 30


# --- the member's phone ---------------------------------------------------------------


def current_step() -> int:
    return int(time.time()) // STEP_SECONDS


class Authenticator:
    """An authenticator app holding one secret. The server accepts each 30-second step
    once (replay protection) and steps within ±1 of its clock, so a fresh code is the
    current step's, or the next step's when the current one was already used; only if
    that is used too does it wait (under 30 s) for the clock to move on."""

    def __init__(self, secret: str):
        self.totp = pyotp.TOTP(secret)
        self.last_step: int | None = None

    def code_at(self, step: int) -> str:
        return self.totp.generate_otp(step)

    def window(self) -> set[str]:
        now = current_step()
        return {self.code_at(step) for step in range(now - 2, now + 3)}

    def fresh_code(self) -> str:
        step = current_step()
        if self.last_step is not None and self.last_step >= step:
            step = self.last_step + 1
            wait = (step - 1) * STEP_SECONDS - time.time()
            assert wait < STEP_SECONDS, "fresh_code would wait more than one time step"
            if wait > 0:
                time.sleep(wait + 0.1)
        self.last_step = step
        return self.code_at(step)


def app_of(server, spec: MemberSpec) -> Authenticator:
    """The member's phone, from ``server.secrets`` (live_server.app_secrets) and
    ``server.step`` (the step enrol() used); it remembers across tests which steps were
    used."""
    apps = server.__dict__.setdefault("apps", {})
    if spec.login_id not in apps:
        apps[spec.login_id] = Authenticator(server.secrets[spec.login_id])
        apps[spec.login_id].last_step = server.step
    return apps[spec.login_id]


def make_operator(server, spec: MemberSpec) -> None:
    """Make the member an operator with an authenticator app enrolled now; app_of(server,
    spec) is then its phone."""
    server.secrets[spec.login_id] = enrol_operator(server, spec.login_id)
    server.step = current_step()  # enrol() used the current step


def wrong_code(*apps: Authenticator) -> str:
    """A well-formed code that none of the apps shows now (normally ``000000``)."""
    taken = set().union(*(app.window() for app in apps))
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in taken)


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


class Watched:
    """A page plus what went wrong behind the member's back: script errors, console
    errors (a CSP violation shows there) and server errors."""

    def __init__(self, page: Page):
        self.page = page
        self.problems: list[str] = []
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("console", self._console)
        page.on(
            "response",
            lambda r: (
                self.problems.append(f"HTTP {r.status} for {r.request.method} {r.url}")
                if r.status >= 500
                else None
            ),
        )

    def _console(self, msg) -> None:
        where = msg.location.get("url", "")
        # The portal has no favicon; the browser's own request for one is not the page's.
        if msg.type == "error" and not where.endswith("/favicon.ico"):
            self.problems.append(f"console {msg.type} at {where}: {msg.text}")


# Each language of the UI as a browser asks for it (its locale, hence Accept-Language).
LOCALES = {"ja": "ja-JP", "en": "en-US"}


def language_context(browser: Browser, lang: str = "ja", **options) -> BrowserContext:
    """A browser context of a member who reads ``lang`` (the portal follows the browser's
    languages unless the language switch or the member's own setting says otherwise);
    ``options`` go to new_context."""
    context = browser.new_context(locale=LOCALES[lang], **options)
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    return context


def open_page(browser: Browser, *, javascript: bool) -> Watched:
    context = browser.new_context(java_script_enabled=javascript, locale="ja-JP")
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    return Watched(context.new_page())


@contextlib.contextmanager
def evidence_on_failure(watched: Watched, server, tmp_path, name: str) -> Iterator[None]:
    """On failure: a screenshot, the URL and the server's log tail in the message."""
    page = watched.page
    try:
        yield
        assert not watched.problems, watched.problems
        assert "Traceback" not in server.log(), "the server logged an exception"
    except Exception as exc:
        shot = tmp_path / f"{name}-failure.png"
        try:
            page.screenshot(path=str(shot), full_page=True)
            where = f"screenshot: {shot}"
        except Exception as shot_exc:  # the page may be gone
            where = f"no screenshot ({shot_exc})"
        log_tail = "\n".join(server.log().splitlines()[-25:])
        raise AssertionError(
            f"{exc}\n{where}\nURL: {page.url}\n--- server log (tail)\n{log_tail}"
        ) from exc
    finally:
        page.context.close()


# --- mail and SMS really delivered, for a whole module ----------------------------------------

SIX_DIGITS = re.compile(r"(?<!\d)(\d{6})(?!\d)")


@pytest.fixture(scope="module")
def module_smtp() -> Iterator[SMTPServer]:
    with SMTPServer() as server:
        yield server


@pytest.fixture(scope="module")
def module_sms() -> Iterator[SMSGateway]:
    with SMSGateway() as gateway:
        yield gateway


def wired_environment(smtp: SMTPServer, gateway: SMSGateway) -> dict[str, str]:
    """run_server's environment for mail to ``smtp`` and SMS to ``gateway``; no rate
    limits (a test signs in and asks for codes more often than a person would)."""
    return {
        "MAIL_SERVER": smtp.host,
        "MAIL_PORT": str(smtp.port),
        "PORTAL_SMS_BACKEND": "http",
        "PORTAL_SMS_GATEWAY_URL": gateway.url,
        "PORTAL_SMS_GATEWAY_TOKEN": "t0ken",
        "PORTAL_RATELIMIT": "no",
    }


def mailed_code(smtp: SMTPServer, address: str, start: int, timeout: float = 10) -> str:
    """The code in the newest mail to ``address`` from message ``start`` on (waits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for msg in reversed(list(smtp.messages)[start:]):
            if msg["To"] == address and (found := SIX_DIGITS.search(body_text(msg))):
                return found.group(1)
        time.sleep(0.1)
    pytest.fail(f"no code mailed to {address}")


def texted_code(gateway: SMSGateway, start: int, timeout: float = 10) -> str:
    """The code in the newest SMS from request ``start`` on (waits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for request in reversed(list(gateway.requests)[start:]):
            if found := SIX_DIGITS.search(request.json["text"]):
                return found.group(1)
        time.sleep(0.1)
    pytest.fail("no code texted")


# --- what a member does -------------------------------------------------------------------


def sign_in(page: Page, server, member: MemberSpec) -> None:
    page.goto(f"{server.url}/login")
    page.get_by_label("ログインID").fill(member.login_id)
    page.get_by_label("パスワード").fill(member.password)
    page.get_by_role("button", name="ログイン", exact=True).click()


def sign_out(page: Page, server) -> None:
    page.locator("header").get_by_role("button", name="ログアウト").click()
    expect(page).to_have_url(f"{server.url}/login")
    expect(page.locator(".flashes")).to_contain_text("ログアウトしました。")


def htmx_idle(page: Page) -> None:
    """Wait until no htmx request, swap or settle is under way: new content's forms are
    htmx's only once settled (sent sooner, a form goes as a plain page request)."""
    busy = page.locator(".htmx-request, .htmx-swapping, .htmx-settling, .htmx-added")
    expect(busy).to_have_count(0)


def read_secret(container) -> str:
    secret = container.locator("#totp-secret").inner_text()
    assert re.fullmatch(r"([A-Z2-7]{4} )*[A-Z2-7]{4}", secret), secret
    return secret.replace(" ", "")


def open_dialog(page: Page, link: str, title: str, app: Authenticator | None, member) -> None:
    """Click the app section's button and wait for its dialog. Changing 2FA needs a second step
    within the last 10 minutes; should the server ask for one, give it."""
    page.locator("#section-app").get_by_role("link", name=link).click()
    dialog = page.locator("dialog#dialog")
    heading = dialog.locator("#dialog-title")
    expect(heading).to_have_text(re.compile(f"^(本人確認|{re.escape(title)})$"))
    if heading.inner_text() == "本人確認":
        if app is not None:
            dialog.get_by_label("認証コードまたはリカバリーコード").fill(app.fresh_code())
        else:
            dialog.get_by_label("パスワード").fill(member.password)
        dialog.get_by_role("button", name="確認する").click()
        expect(heading).to_have_text(title)
    expect(dialog).to_be_visible()
    assert dialog.evaluate("d => d.open && d.matches(':modal')"), "dialog is not modal"


def close_dialog(page: Page) -> None:
    dialog = page.locator("dialog#dialog")
    dialog.get_by_role("link", name="完了").click()
    expect(dialog).to_be_hidden()
    assert dialog.evaluate("d => !d.open")
    # Whatever it showed (a secret, recovery codes) is gone from the page.
    expect(page.locator("#dialog-content > *")).to_have_count(0)


def assert_above(page: Page, upper: str, lower: str) -> None:
    a = page.locator(upper).bounding_box()
    b = page.locator(lower).bounding_box()
    assert a and b and a["y"] + a["height"] <= b["y"], (upper, a, lower, b)


def verify_without_navigation(watched: Watched, server, code: str) -> None:
    """Submit a code on /login/verify and expect the in-place refusal (htmx swap)."""
    page = watched.page
    navigations: list[str] = []

    def navigated(frame) -> None:
        if frame == page.main_frame:
            navigations.append(frame.url)

    page.evaluate("window.__marker = 1")
    page.on("framenavigated", navigated)
    try:
        page.get_by_label("認証コード", exact=True).fill(code)
        page.get_by_role("button", name="認証する").click()
        expect(page.locator("#code-error")).to_have_text(WRONG_CODE)
    finally:
        page.remove_listener("framenavigated", navigated)
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"
    assert navigations == [], navigations
    expect(page).to_have_url(f"{server.url}/login/verify")
    code_input = page.get_by_label("認証コード", exact=True)
    expect(code_input).to_have_attribute("aria-describedby", "code-error")
    expect(code_input).to_have_attribute("aria-invalid", "true")
    expect(code_input).to_have_value("")
    assert_above(page, "#code-error", "#code")


def submit_code(page: Page, server, code: str) -> None:
    """Submit a code on /login/verify and expect the TOP page."""
    page.get_by_label("認証コード", exact=True).fill(code)
    page.get_by_role("button", name="認証する").click()
    expect(page).to_have_url(f"{server.url}/")


def verify(page: Page, server, code: str) -> None:
    submit_code(page, server, code)
    expect(page.get_by_text("二段階認証：設定済み")).to_be_visible()


def sign_in_with_app(page: Page, server, member: MemberSpec) -> None:
    """The password, then a fresh code of the member's app (app_of): the TOP page."""
    sign_in(page, server, member)
    submit_code(page, server, app_of(server, member).fresh_code())


# --- a form to walk ---------------------------------------------------------------------------


def form_answered(member, by: str, slug: str, form=None, note: str = "") -> tuple:
    """In the server's app context: the example form (docs/examples/apply-form.json)
    under ``slug`` (made unless ``form`` is given), with a draft of the member's (its
    confirm page) and a sent submission (its thank-you page and the operator's list).
    Returns the form, the draft's id and the submission's id."""
    import json
    from datetime import UTC, datetime
    from pathlib import Path

    from portal import member_forms

    if form is None:
        example = Path(__file__).resolve().parents[1] / "docs" / "examples" / "apply-form.json"
        data = json.loads(example.read_text(encoding="utf-8")) | {"slug": slug}
        form = member_forms.save(None, member_forms.parse(data), by=by)
    now = datetime.now(UTC)
    answers = {"course": "応用コース", "date": "2026-12-24", "people": "2", "agree": "1"}
    if note:
        answers |= {"phone": "090-1234-5678", "note": note}
    draft = member_forms.start_draft(form, member, answers, now)
    sent = member_forms.start_draft(form, member, answers, now)
    member_forms.submit(sent, now, second_step_at=now, stepped_up=True)
    return form, draft.id, sent.id


# --- the walk over every page ---------------------------------------------------------------

# GET routes a person never looks at (files, the load balancers' JSON probe, and the
# link that only redirects).
NOT_PAGES = {"static", "admin.audit_csv", "admin.members_csv", "health.healthz"}
NOT_PAGES |= {"admin.form_submissions_csv", "admin.form_export"}  # downloads
# The admin API answers JSON to programs holding a token (tests/test_api*.py).
NOT_PAGES |= {"api.members_list", "api.member_detail", "api.audit_log", "api.openapi"}
# Between the password and the code; every other auth.* page is for the signed-out.
SECOND_STEP = {"auth.verify", "auth.recovery_login"}


def route_urls(server, samples: dict[str, list]) -> dict[str, list[str]]:
    """One URL per GET route of the URL map (each value of an any() converter, each
    sample of the other arguments), by endpoint: a walk over them covers a new page or
    fails on a missing sample."""
    from portal import create_app

    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": server.secret_key,
            "SQLALCHEMY_DATABASE_URI": server.database_uri,
        }
    )
    adapter = app.url_map.bind("localhost")
    urls: dict[str, list[str]] = {}
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint in NOT_PAGES:
            continue
        variants: list[dict] = [{}]
        for arg in rule.arguments:
            converter = rule._converters[arg]
            values = getattr(converter, "items", None) or samples[arg]
            variants = [v | {arg: value} for v in variants for value in sorted(values)]
        urls[rule.endpoint] = [adapter.build(rule.endpoint, v) for v in variants]
    return urls


# --- passkeys ------------------------------------------------------------------------------


# Runs before every page's scripts: a browser without passkey autofill when the tab's
# sessionStorage says so (passkeys.js then offers the button only), so no autofill offer
# on /login answers before the member does what the test says.
NO_AUTOFILL = """
if (sessionStorage.getItem("no-autofill") && window.PublicKeyCredential) {
  PublicKeyCredential.isConditionalMediationAvailable = async () => false;
}
"""


def without_autofill(page: Page, on: bool) -> None:
    """Switch the tab's passkey autofill off (on=True) or back on; needs NO_AUTOFILL."""
    page.evaluate(
        "on => on ? sessionStorage.setItem('no-autofill', '1')"
        " : sessionStorage.removeItem('no-autofill')",
        on,
    )


class VirtualAuthenticator:
    """Chromium's virtual authenticator (Chrome DevTools Protocol) in one page: a platform
    authenticator that keeps passkeys and verifies the user, as Touch ID or Windows Hello
    would. ``presence`` on: it answers every prompt at once (the member touching it);
    off: prompts wait, so the autofill offer on /login is left alone."""

    def __init__(self, page: Page, *, presence: bool = True):
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("WebAuthn.enable")
        self.id = self.cdp.send(
            "WebAuthn.addVirtualAuthenticator",
            {
                "options": {
                    "protocol": "ctap2",
                    "transport": "internal",
                    "hasResidentKey": True,
                    "hasUserVerification": True,
                    "isUserVerified": True,
                    "automaticPresenceSimulation": presence,
                }
            },
        )["authenticatorId"]

    def presence(self, on: bool) -> None:
        self.cdp.send(
            "WebAuthn.setAutomaticPresenceSimulation", {"authenticatorId": self.id, "enabled": on}
        )

    def credentials(self) -> list[dict]:
        return self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.id})["credentials"]
