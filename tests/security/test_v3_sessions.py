"""OWASP ASVS 4.0.3, V3 Session management: session attacks, performed over HTTP.

Each test name carries the ASVS item it proves (``v3_3_1`` is 3.3.1). The session is
Flask's signed cookie ``portal_session`` (``__Host-portal_session`` behind TLS) holding
``_user_id`` = "<member id>:<session generation>"; signing out moves the generation on."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from types import SimpleNamespace

import pytest
from attack_helpers import (
    API_PREFIX,
    HARMFUL_FORM,
    HEALTH_URLS,
    LANGUAGE_URLS,
    PASSWORD_RESET_URLS,
    SECOND_STEP_URLS,
    add_member,
    assert_api_answer,
    assert_health_answer,
    every_route,
    member_state,
    pages_state,
    redirect_target,
    set_cookies,
    sign_in,
)
from conftest import PASSWORD, extract_csrf

from portal import pages

COOKIE = "portal_session"
HX = {"HX-Request": "true"}
NEW_PASSWORD = "a brand new passphrase"
# A name change: needs no password or fresh second step, so only the session guards it.
RENAME = {"name": "hacked", "email": "alice@example.com", "phone": ""}


@pytest.fixture
def alice(app):
    return add_member(app, "alice", name="Alice")


def session_of(client) -> dict:
    with client.session_transaction() as s:
        return dict(s)


def cookie(client, name: str = COOKIE) -> str:
    found = client.get_cookie(name)
    assert found is not None, f"no {name} cookie"
    return found.value


def browser_with(app, value: str, name: str = COOKIE):
    """Another browser carrying a copy of a session cookie."""
    other = app.test_client()
    other.set_cookie(name, value)
    return other


def shift(client, key: str, seconds: float) -> None:
    """Move a session timestamp back in time (as if the session were that much older)."""
    with client.session_transaction() as s:
        if key == "pending":
            pending = dict(s["pending"])
            pending["at"] -= seconds
            s["pending"] = pending
        else:
            s[key] -= seconds


def sent_to_sign_in(response) -> bool:
    target = redirect_target(response) or ""
    return response.status_code in (200, 302) and (
        target == "/login" or target.startswith("/login?")
    )


# --- 3.2.1 a new session at each step of sign-in --------------------------------------------

PLANTED = {
    "planted": "by the attacker",
    "sid": "fixed-by-the-attacker",
    "auth_at": 4102444800.0,  # 2100: would make a stolen session live for ever
    "tfa_at": 4102444800.0,
    "csrf_token": "attacker-known-token",
    "next": "//evil.example/",
}
SIGNED_IN_KEYS = {"_user_id", "_fresh", "_id", "_permanent", "sid", "auth_at", "seen_at", "tfa_at"}


def test_v3_2_1_a_session_fixed_before_sign_in_is_not_the_one_after(app, alice):
    """The attacker makes a session, plants values in it and puts its cookie in the
    victim's browser. The victim signs in: the password step and the second step each
    rebuild the session, and the attacker's copies never get further than they were."""
    attacker = app.test_client()
    attacker.get("/login")
    with attacker.session_transaction() as s:
        s.update(PLANTED)
    fixed = cookie(attacker)
    victim = browser_with(app, fixed)

    response = victim.post("/login", data={"login_id": "alice", "password": PASSWORD})
    assert response.location == "/login/verify"
    pending_cookie = set_cookies(response)[COOKIE][0]
    assert pending_cookie != fixed
    state = session_of(victim)
    assert set(state) <= {"pending", "_flashes"}, state
    assert state["pending"]["mid"] == alice.id and state["pending"]["next"] is None
    # Planted again while pending (a second fixation attempt on the code page).
    with victim.session_transaction() as s:
        s.update(PLANTED)
        s["planted-while-pending"] = "x"

    spent = alice.code()
    response = victim.post("/login/verify", data={"code": spent})
    assert response.location == "/"  # not the planted "next"
    signed_in_cookie = set_cookies(response)[COOKIE][0]
    assert signed_in_cookie not in (fixed, pending_cookie)
    state = session_of(victim)
    assert set(state) <= SIGNED_IN_KEYS | {"_flashes"}, state
    assert not (set(PLANTED) - SIGNED_IN_KEYS) & set(state)
    assert "planted-while-pending" not in state and "pending" not in state
    assert state["sid"] != PLANTED["sid"] and state["auth_at"] < PLANTED["auth_at"]
    assert state["_user_id"] == f"{alice.id}:{member_state(app, 'alice')['session_generation']}"
    assert victim.get("/").status_code == 200

    # The attacker's cookies: the fixed one is a visitor; the copy taken while pending
    # (with the victim's spent code) reaches no member page either.
    assert attacker.get("/").location == "/login?next=/"
    late_copy = browser_with(app, pending_cookie)
    for response in (
        late_copy.get("/"),
        late_copy.post("/login/verify", data={"code": spent}),
        late_copy.get("/settings/2fa"),
    ):
        assert response.status_code in (200, 302) and "Alice" not in response.text
        assert (response.location or "/login").startswith("/login"), response.location
    assert late_copy.get("/").status_code == 302


@pytest.mark.settings(WTF_CSRF_ENABLED=True)
def test_v3_2_1_csrf_tokens_from_before_sign_in_are_void_after_it(app, client, alice):
    """Tokens the attacker could have learnt before sign-in (the login page's, the code
    page's) do not authorise anything in the signed-in session."""
    before = extract_csrf(client.get("/login").text)
    client.post("/login", data={"login_id": "alice", "password": PASSWORD, "csrf_token": before})
    on_code_page = extract_csrf(client.get("/login/verify").text)
    client.post("/login/verify", data={"code": alice.code(), "csrf_token": on_code_page})
    assert client.get("/").status_code == 200
    for old in (before, on_code_page):
        response = client.post("/settings/profile", data={**RENAME, "csrf_token": old})
        assert response.status_code == 400
        assert client.post("/logout", data={"csrf_token": old}).status_code == 400
    assert member_state(app, "alice")["name"] == "Alice"
    # The signed-in page's own token works (the test can fail).
    token = extract_csrf(client.get("/").text)
    client.post("/settings/profile", data={**RENAME, "csrf_token": token})
    assert member_state(app, "alice")["name"] == "hacked"


# --- 3.3.1 sign-out ends the session for real -----------------------------------------------


def assert_no_member_reached(app, thief, member_text: str) -> None:
    """Every URL but the sign-in ones, with GET and POST, sends the thief to sign in."""
    for method, url in every_route(app):
        if url in SECOND_STEP_URLS or url in PASSWORD_RESET_URLS or url in LANGUAGE_URLS:
            continue
        response = thief.open(url, method=method, data=HARMFUL_FORM)
        if url in HEALTH_URLS and method == "GET":
            assert_health_answer(method, url, response)
            continue
        if url.startswith(API_PREFIX):
            assert_api_answer(app, method, url, response)
            assert member_text not in response.text, (method, url)
            continue
        assert response.status_code in (302, 405), (method, url, response.status_code)
        if response.status_code == 302:
            assert sent_to_sign_in(response), (method, url, response.location)
        assert member_text not in response.text, (method, url)
        htmx = thief.open(url, method=method, data=HARMFUL_FORM, headers=HX)
        assert htmx.status_code in (200, 405), (method, url)
        if htmx.status_code == 200:
            assert sent_to_sign_in(htmx) and htmx.text == "", (method, url)


def test_v3_3_1_a_cookie_copied_while_signed_in_is_dead_after_logout(app, client, alice):
    sign_in(client, alice)
    stolen = cookie(client)
    thief = browser_with(app, stolen)
    assert "Aliceさん" in thief.get("/").text  # the copy works while the member is in
    before = member_state(app, "alice")
    assert client.post("/logout").location == "/login"
    assert_no_member_reached(app, thief, "Alice")
    after = member_state(app, "alice")
    assert after | {"session_generation": 0} == before | {"session_generation": 0}
    # The same member, signing in again, gets a session the old copy still cannot use.
    sign_in(client, alice, steps=1)
    assert client.get("/").status_code == 200
    assert thief.get("/").location == "/login?next=/"


def test_v3_3_1_an_operators_cookie_is_dead_after_logout(app, admin_client, alice):
    with app.app_context():
        pages.save(None, title="Guide", slug="guide", body="<p>x</p>", by="boss")
    stolen = cookie(admin_client)
    thief = browser_with(app, stolen)
    assert thief.get("/admin/members").status_code == 200
    alice_before, pages_before = member_state(app, "alice"), pages_state(app)
    admin_client.post("/logout")
    assert_no_member_reached(app, thief, "管理画面")
    assert member_state(app, "alice") == alice_before and pages_state(app) == pages_before


def test_v3_3_1_signing_out_ends_the_members_other_sessions_too(app, alice):
    laptop, phone = app.test_client(), app.test_client()
    sign_in(laptop, alice, steps=0)
    sign_in(phone, alice, steps=1)
    assert phone.get("/").status_code == 200
    laptop.post("/logout")
    assert phone.get("/").location == "/login?next=/"


# --- 3.3.2 lifetimes ----------------------------------------------------------------------


def test_v3_3_2_a_session_ends_twelve_hours_after_sign_in_however_active(app, client, alice):
    response = sign_in(client, alice)
    expires = parsedate_to_datetime(set_cookies(response)[COOKIE][1]["expires"])
    assert expires <= datetime.now(UTC) + timedelta(hours=12, seconds=5)
    shift(client, "auth_at", 12 * 3600 - 60)
    assert client.get("/").status_code == 200  # 11 h 59 min: still in
    assert "Set-Cookie" not in client.get("/settings/2fa").headers  # activity extends nothing
    shift(client, "auth_at", 120)
    assert client.get("/").location == "/login?next=/"
    response = client.post("/settings/profile", data=RENAME)
    assert sent_to_sign_in(response)
    assert member_state(app, "alice")["name"] == "Alice"


@pytest.mark.settings(PORTAL_SESSION_HOURS=1)
def test_v3_3_2_the_lifetime_follows_portal_session_hours(app, client, alice):
    response = sign_in(client, alice)
    expires = parsedate_to_datetime(set_cookies(response)[COOKIE][1]["expires"])
    assert expires <= datetime.now(UTC) + timedelta(hours=1, seconds=5)
    shift(client, "auth_at", 59 * 60)
    assert client.get("/").status_code == 200
    shift(client, "auth_at", 2 * 60)
    assert client.get("/").location == "/login?next=/"


def test_v3_3_2_a_pending_sign_in_expires_after_five_minutes(app, client, alice):
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    shift(client, "pending", 5 * 60 + 1)
    assert client.get("/login/verify").location == "/login"
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    shift(client, "pending", 5 * 60 + 1)
    response = client.post("/login/verify", data={"code": alice.code()})
    assert response.location == "/login"
    assert "有効期限が切れました" in client.get("/login").text
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    shift(client, "pending", 5 * 60 + 1)
    response = client.post("/login/recovery", data={"recovery_code": alice.codes[0]})
    assert response.location == "/login"
    assert client.get("/").location == "/login?next=/"
    assert member_state(app, "alice")["unused_recovery_codes"] == 10  # nothing was spent
    # Just inside five minutes the same code still signs in (the test can fail).
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    shift(client, "pending", 5 * 60 - 10)
    assert client.post("/login/verify", data={"code": alice.code()}).location == "/"


# --- 3.1.1 the session token never travels in a URL -------------------------------------------

URL_ATTRIBUTE = re.compile(r'(?:href|action|src|hx-get|hx-post|content)="([^"]*)"')


def test_v3_1_1_the_session_token_never_appears_in_a_url_or_a_page(app, client, alice):
    seen: list[tuple[str, object]] = []

    def visit(method: str, url: str, **kw):
        response = client.open(url, method=method, **kw)
        seen.append((url, response))
        return response

    visit("GET", "/login?next=/settings/2fa")
    visit("POST", "/login?next=/settings/2fa", data={"login_id": "alice", "password": PASSWORD})
    visit("GET", "/login/verify")
    visit("POST", "/login/verify", data={"code": alice.code()}, headers=HX)
    for method, url in every_route(app, methods=("GET",)):
        if url != "/login":
            visit(method, url)
    tokens = set()
    for _, response in seen:
        for value, _ in set_cookies(response).values():
            if value:
                tokens.add(value)
                tokens.update(part for part in value.lstrip(".").split(".") if len(part) >= 8)
    assert tokens
    for url, response in seen:
        urls = [url, response.headers.get("Location", ""), response.headers.get("HX-Redirect", "")]
        urls += URL_ATTRIBUTE.findall(response.text)
        for token in tokens:
            assert not any(token in u for u in urls), (url, token)
            assert token not in response.text, (url, token)
        assert not any(re.search(r"[?&](session|sid|token)=", u, re.I) for u in urls), url


# --- 3.3.3 a password change ends the other sessions ------------------------------------------


def test_v3_3_3_a_password_change_ends_every_other_session(app, alice):
    mine, other = app.test_client(), app.test_client()
    sign_in(mine, alice, steps=0)
    sign_in(other, alice, steps=1)
    thief = app.test_client()  # knows the old password, has not passed the second step
    thief.post("/login", data={"login_id": "alice", "password": PASSWORD})
    response = mine.post(
        "/settings/password",
        data={
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD,
        },
    )
    assert response.location == "/settings/password"
    assert mine.get("/").status_code == 200  # this session carries on
    assert other.get("/").location == "/login?next=/"
    assert sent_to_sign_in(other.post("/settings/profile", data=RENAME))
    assert thief.post("/login/verify", data={"code": alice.code(-1)}).location == "/login"
    assert thief.get("/").location == "/login?next=/"
    assert member_state(app, "alice")["name"] == "Alice"
    refused = app.test_client().post("/login", data={"login_id": "alice", "password": PASSWORD})
    assert "ログインIDまたはパスワードが正しくありません。" in refused.text


def test_v3_3_3_a_password_set_by_an_operator_ends_every_session(app, runner, alice):
    browser = app.test_client()
    sign_in(browser, alice)
    result = runner.invoke(
        args=["members", "set-password", "alice", "--password-stdin"], input=NEW_PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    assert browser.get("/").location == "/login?next=/"


# --- 3.4 cookie attributes ------------------------------------------------------------------


def sign_in_cookies(app, alice, base_url="http://localhost") -> list[tuple[str, dict]]:
    """Every cookie the portal sets from the first visit to sign-out."""
    client = app.test_client()
    responses = [
        client.get("/login", base_url=base_url),
        client.post("/login", data={"login_id": "alice", "password": PASSWORD}, base_url=base_url),
        client.post("/login/verify", data={"code": alice.code()}, base_url=base_url),
        client.post("/logout", base_url=base_url),
    ]
    found = [(name, attrs) for r in responses for name, (_, attrs) in set_cookies(r).items()]
    names = {name for name, _ in found}
    assert {"portal_session", "portal_device"} <= {n.removeprefix("__Host-") for n in names}
    return found


def test_v3_4_2_every_cookie_is_httponly(app, alice):
    for name, attrs in sign_in_cookies(app, alice):
        assert "httponly" in attrs, name


def test_v3_4_3_every_cookie_is_samesite_lax(app, alice):
    for name, attrs in sign_in_cookies(app, alice):
        assert attrs.get("samesite", "").lower() == "lax", name


def test_v3_4_5_every_cookie_is_host_only_with_path_root(app, alice):
    for name, attrs in sign_in_cookies(app, alice):
        assert attrs.get("path") == "/" and "domain" not in attrs, (name, attrs)


@pytest.mark.settings(PORTAL_HTTPS=True)
def test_v3_4_1_behind_tls_every_cookie_is_secure(app, alice):
    for name, attrs in sign_in_cookies(app, alice, "https://localhost"):
        assert "secure" in attrs, name


@pytest.mark.settings(PORTAL_HTTPS=True)
def test_v3_4_4_behind_tls_every_cookie_has_the_host_prefix(app, alice):
    found = sign_in_cookies(app, alice, "https://localhost")
    for name, attrs in found:
        assert name.startswith("__Host-"), name
        assert "secure" in attrs and attrs.get("path") == "/" and "domain" not in attrs
    assert "__Host-portal_session" in {name for name, _ in found}


@pytest.mark.settings(PORTAL_HTTPS=True)
def test_v3_4_4_a_session_under_the_plain_name_is_ignored_behind_tls(app, alice):
    """A sibling site (or a network attacker over http) can set ``portal_session`` but
    not ``__Host-portal_session``; the portal reads only the latter."""
    client = app.test_client()
    sign_in(client, alice, base_url="https://localhost")
    value = cookie(client, "__Host-portal_session")
    planted = browser_with(app, value, "portal_session")
    assert planted.get("/", base_url="https://localhost").location == "/login?next=/"
    assert client.get("/", base_url="https://localhost").status_code == 200


# --- 3.5.3 the cookie cannot be forged or tampered with ---------------------------------------


def forged_session(app, alice, secret_key: str) -> str:
    """A signed-in session for alice, signed the way Flask signs it but with
    ``secret_key``."""
    signer = SimpleNamespace(secret_key=secret_key, config={"SECRET_KEY_FALLBACKS": None})
    now = time.time()
    data = {
        "_user_id": f"{alice.id}:{member_state(app, 'alice')['session_generation']}",
        "_fresh": True,
        "_permanent": True,
        "sid": "forged",
        "auth_at": now,
        "tfa_at": now,
    }
    return app.session_interface.get_signing_serializer(signer).dumps(data)


def test_v3_5_3_a_session_signed_with_another_key_is_refused(app, alice):
    forged = browser_with(app, forged_session(app, alice, "another-secret-key-an-attacker-chose"))
    assert forged.get("/").location == "/login?next=/"
    assert sent_to_sign_in(forged.post("/settings/2fa/app/disable", data={"confirm": "y"}))
    assert member_state(app, "alice")["methods"] == ["app"]
    # The very same session signed with the portal's key is accepted: only the key
    # stands between the attacker and the account, so the test can fail.
    genuine = browser_with(app, forged_session(app, alice, app.config["SECRET_KEY"]))
    assert genuine.get("/").status_code == 200


def test_v3_5_3_a_tampered_or_unsigned_cookie_is_refused(app, client, alice):
    sign_in(client, alice)
    value = cookie(client)
    payload, stamp, signature = value.rsplit(".", 2)
    flipped = payload[:-3] + ("A" if payload[-3] != "A" else "B") + payload[-2:]
    for bad in (
        f"{flipped}.{stamp}.{signature}",
        f"{payload}.{stamp}.{signature[:-1]}",
        f"{payload}.{stamp}",
        f"{payload}.{stamp}.",
        payload,
        "",
    ):
        assert browser_with(app, bad).get("/").location == "/login?next=/", bad
    assert browser_with(app, value).get("/").status_code == 200


# --- 3.7.1 sensitive changes need a fresh second step -----------------------------------------


def test_v3_7_1_a_stale_session_cannot_change_the_second_step_or_the_password(app, client, alice):
    sign_in(client, alice)
    shift(client, "tfa_at", 11 * 60)
    shift(client, "auth_at", 11 * 60)
    before = member_state(app, "alice")
    attempts = [
        ("/settings/2fa/app/disable", {"confirm": "y"}),
        ("/settings/2fa/app/replace", {"code": alice.code(1)}),
        ("/settings/2fa/recovery/regenerate", {}),
        ("/settings/2fa/email/setup", {"code": "123456"}),
        ("/settings/2fa/email/send", {}),
        ("/settings/2fa/sms/send", {}),
        ("/settings/password", HARMFUL_FORM),
        ("/settings/profile", HARMFUL_FORM),  # a new email address with the password
    ]
    for url, data in attempts:
        response = client.post(url, data=data)
        assert response.status_code == 200, url
        assert "本人確認" in response.text, url
    assert member_state(app, "alice") == before
    # Fresh again, the same request goes through (the test can fail).
    shift(client, "tfa_at", -11 * 60)
    client.post("/settings/2fa/recovery/regenerate", data={})
    assert member_state(app, "alice")["session_generation"] > before["session_generation"]
