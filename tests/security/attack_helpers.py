"""Shared by the ASVS attack tests: every URL of the app with sample values, accounts
with real authenticator secrets, snapshots of what an attack must not change, and
readers for cookies and redirects as a browser sees them."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pyotp
from conftest import PASSWORD, extract_csrf

from portal import members, twofactor
from portal.extensions import db
from portal.models import AuditEvent, MemberPage, RecoveryCode, TotpCredential
from portal.twofactor import totp

# Sample values for the URL converters. A route with a converter or argument not
# listed here makes the walks fail loudly instead of silently skipping the route.
SAMPLES = {
    "login_id": "alice",
    "page_id": "1",
    "form_id": "1",
    "slug": "x",
    "device_id": "1",
    "terminal_id": "1",
    "token_id": "1",
    "key_id": "1",
    "draft_id": "1",
    "submission_id": "1",
    "token": "not-a-reset-token",
}
CONVERTER = re.compile(r"<(?:(?P<conv>\w+)(?:\((?P<args>[^)]*)\))?:)?(?P<name>\w+)>")

# The pages a pending (password-only) sign-in may use, and what a visitor may use.
SECOND_STEP_URLS = {
    "/login",
    "/login/verify",
    "/login/recovery",
    "/login/resend",
    "/login/method",
    "/login/verify/passkey",
    "/login/passkey/options",
    "/login/passkey",
    "/logout",
}
# Sign-in itself: the password form, and a passkey alone (パスキーでログイン). A visitor
# is answered there, not sent to /login.
SIGN_IN_URLS = {"/login", "/login/passkey/options", "/login/passkey"}
# The language switch: open to visitors and pending sign-ins alike. It sets a cookie (and
# only a signed-in member's own language) and sends back to a local page; see
# tests/test_languages.py.
LANGUAGE_URLS = {"/language"}
# パスワードをお忘れの方: open to visitors and pending sign-ins alike (they change only the
# password of whoever holds a mailed link, and never sign anyone in).
PASSWORD_RESET_URLS = {
    "/login/forgot",
    "/login/reset",
    "/login/reset/" + SAMPLES["token"],
    "/login/password-strength",
}
# The load balancers' probe: open to anyone, with GET only; it says whether the database
# and Redis answer and nothing about anyone (tests/test_health.py).
HEALTH_URLS = {"/healthz"}


# The admin API: a token in the Authorization header is its only credential, so a
# browser's cookie (signed in, pending or none) gets a JSON 401 there, never a page or a
# redirect to sign in; its description (openapi.json) is public. tests/test_api*.py.
API_PREFIX = "/api/"


def assert_api_answer(app, method: str, url: str, response) -> None:
    assert response.mimetype == "application/json", (method, url)
    assert "Set-Cookie" not in response.headers, (method, url)
    if not allowed(app, method, url):
        expected = 405
    elif url.endswith("/openapi.json"):
        expected = 200
    else:
        expected = 401
    assert response.status_code == expected, (method, url, response.status_code)


def assert_health_answer(method: str, url: str, response) -> None:
    assert method == "GET" and response.status_code == 200, (method, url, response.status_code)
    assert response.json == {"status": "ok", "database": "ok", "redis": "not configured"}
    assert "Set-Cookie" not in response.headers, (method, url)


def _fillings(rule: str) -> list[str]:
    options: list[list[tuple[str, str]]] = []
    for match in CONVERTER.finditer(rule):
        conv, args, name = match.group("conv"), match.group("args"), match.group("name")
        if conv == "any":
            values = [a.strip().strip("'\"") for a in (args or "").split(",") if a.strip()]
        elif conv in (None, "default", "string", "int") and name in SAMPLES:
            values = [SAMPLES[name]]
        else:
            raise AssertionError(f"no sample value for {match.group(0)} in {rule}")
        options.append([(match.group(0), v) for v in values])
    urls = []
    for combo in itertools.product(*options):
        url = rule
        for placeholder, value in combo:
            url = url.replace(placeholder, value, 1)
        urls.append(url)
    return urls


def every_route(app, methods=("GET", "POST")) -> list[tuple[str, str]]:
    """(method, url) for every rule of the URL map but ``static``, converters filled in
    with sample values (one URL per option of an ``any`` converter). A method a rule
    does not allow is included too: the answer must then be 405 (or a redirect)."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for url in _fillings(rule.rule):
            for method in methods:
                found.append((method, url))
    return sorted(set(found))


def allowed(app, method: str, url: str) -> bool:
    adapter = app.url_map.bind("localhost")
    return adapter.test(url, method=method)


def post_routes(app) -> list[str]:
    """Every URL (sample values filled in) whose rule accepts POST."""
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint != "static" and "POST" in (rule.methods or set()):
            found.update(_fillings(rule.rule))
    return sorted(found)


# Form fields every state-changing form of the portal reads, set to harmful values.
HARMFUL_FORM = {
    "name": "hacked",
    "email": "attacker@evil.example",
    "phone": "09087654321",
    "current_password": PASSWORD,
    "new_password": "attacker chosen password",
    "new_password_confirm": "attacker chosen password",
    "password": PASSWORD,
    "confirm": "y",
    "code": "123456",
    "recovery_code": "aaaaa-aaaaa",
    "method": "email",
    "kind": "email",
    "title": "defaced",
    "slug": "defaced",
    "body": "<p>defaced</p>",
}


# --- accounts ---------------------------------------------------------------------------


@dataclass
class Account:
    id: int
    login_id: str
    password: str
    totp: pyotp.TOTP | None
    codes: list[str]

    def code(self, steps: int = 0) -> str:
        """An app code ``steps`` time steps from now (each step is accepted once)."""
        assert self.totp is not None
        return self.totp.at(datetime.now(UTC) + timedelta(seconds=30 * steps))


def add_member(
    app,
    login_id: str,
    *,
    name: str = "",
    email: str | None = None,
    phone: str = "",
    password: str = PASSWORD,
    operator: bool = False,
    app_2fa: bool = True,
) -> Account:
    """A member; with ``app_2fa`` an authenticator app enrolled at an old time step (so
    every code from now on is fresh) and its recovery codes."""
    with app.app_context():
        m = members.create(
            login_id,
            email=email or f"{login_id}@example.com",
            password=password,
            name=name,
            phone=phone,
            is_operator=operator,
        )
        totp_obj, codes = None, []
        if app_2fa:
            earlier = datetime(2020, 1, 1, tzinfo=UTC)
            secret = totp.begin_enrolment(m, earlier, "attack-fixture")
            totp_obj = pyotp.TOTP(secret)
            status, codes = twofactor.enable_app(
                m, totp_obj.at(earlier), earlier, "attack-fixture", replace=False
            )
            assert status is twofactor.Enrolment.OK
        return Account(m.id, login_id, password, totp_obj, list(codes))


def sign_in(client, account: Account, steps: int = 0, **kw):
    """Password, then (when the account has an app) the app code ``steps`` ahead."""
    data = {"login_id": account.login_id, "password": account.password}
    response = client.post("/login", data=data, **kw)
    if account.totp is None:
        # The first sign-in after an operator's reset lands on the set-up page.
        assert response.location in ("/", "/settings/2fa/setup"), response.text
        return response
    assert response.location == "/login/verify", response.text
    response = client.post("/login/verify", data={"code": account.code(steps)}, **kw)
    assert response.status_code in (200, 302) and "認証コード" not in response.text, response.text
    return response


def sign_in_with_csrf(client, account: Account, steps: int = 0) -> str:
    """The same with CSRF protection on; returns the signed-in session's token."""
    token = extract_csrf(client.get("/login").text)
    data = {"login_id": account.login_id, "password": account.password, "csrf_token": token}
    response = client.post("/login", data=data)
    if account.totp is not None:
        assert response.location == "/login/verify", response.text
        token = extract_csrf(client.get("/login/verify").text)
        response = client.post(
            "/login/verify", data={"code": account.code(steps), "csrf_token": token}
        )
    assert response.location == "/", response.text
    return extract_csrf(client.get("/").text)


# --- what an attack must not change -----------------------------------------------------


def member_state(app, login_id: str) -> dict:
    """Everything about a member an attacker would want to change."""
    with app.app_context():
        m = members.find(login_id)
        cred = db.session.scalar(db.select(TotpCredential).where(TotpCredential.member_id == m.id))
        unused = db.session.scalar(
            db.select(db.func.count(RecoveryCode.id)).where(
                RecoveryCode.member_id == m.id, RecoveryCode.used_at.is_(None)
            )
        )
        return {
            "name": m.name,
            "email": m.email,
            "phone": m.phone,
            "password_hash": m.password_hash,
            "session_generation": m.session_generation,
            "preferred_method": m.preferred_method,
            "is_operator": m.is_operator,
            "methods": twofactor.enabled_methods(m),
            "app_secret": cred.secret_encrypted if cred else None,
            "unused_recovery_codes": unused,
        }


def pages_state(app) -> list[tuple]:
    with app.app_context():
        return [
            (p.id, p.slug, p.title, p.body)
            for p in db.session.scalars(db.select(MemberPage).order_by(MemberPage.id))
        ]


def audit_count(app, event: str | None = None) -> int:
    with app.app_context():
        stmt = db.select(db.func.count(AuditEvent.id))
        if event is not None:
            stmt = stmt.where(AuditEvent.event == event)
        return db.session.scalar(stmt)


# --- what the browser sees --------------------------------------------------------------


def set_cookies(response) -> dict[str, tuple[str, dict[str, str]]]:
    """Each Set-Cookie header as name -> (value, {attribute (lower case): value})."""
    found = {}
    for header in response.headers.getlist("Set-Cookie"):
        first, *rest = [part.strip() for part in header.split(";")]
        name, _, value = first.partition("=")
        attrs = {}
        for part in rest:
            key, _, val = part.partition("=")
            attrs[key.strip().lower()] = val.strip()
        found[name] = (value, attrs)
    return found


def redirect_target(response) -> str | None:
    """Where the browser is sent: Location, or htmx's HX-Redirect."""
    return response.headers.get("HX-Redirect") or response.headers.get("Location")


def is_local_path(target: str) -> bool:
    """A path on this site as a browser reads it: one leading "/" and no second "/" or
    "\\" after it (browsers drop tabs and newlines first and read "\\" as "/"), no
    scheme or host, nothing but printable ASCII (a header value)."""
    if not target.isascii() or any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in target):
        return False
    if not target.startswith("/") or target[1:2] in ("/", "\\"):
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc
