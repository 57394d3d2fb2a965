"""OWASP ASVS 4.0.3, V4 Access control: every URL of the URL map, attacked.

Each test name carries the ASVS item it proves (``v4_1_1`` is 4.1.1). The URLs come
from ``app.url_map`` (converters filled with sample values), never from a hand-made
list, so a new route is attacked as soon as it exists."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from attack_helpers import (
    API_PREFIX,
    HARMFUL_FORM,
    HEALTH_URLS,
    LANGUAGE_URLS,
    PASSWORD_RESET_URLS,
    SECOND_STEP_URLS,
    SIGN_IN_URLS,
    add_member,
    allowed,
    assert_api_answer,
    assert_health_answer,
    audit_count,
    every_route,
    member_state,
    pages_state,
    post_routes,
    redirect_target,
    sign_in,
    sign_in_with_csrf,
)
from conftest import PASSWORD, extract_csrf

from portal import members, pages
from portal.extensions import db
from portal.models import ContactMethod, OneTimeCode

HX = {"HX-Request": "true"}
CSRF_REFUSED = "ページの有効期限が切れたか、不正な送信です。"
FORBIDDEN = "このページを表示する権限がありません。"


@pytest.fixture
def alice(app):
    return add_member(app, "alice", name="Alice Member", phone="+819012345678")


@pytest.fixture
def boss(app):
    return add_member(app, "boss", name="Boss Operator", operator=True)


@pytest.fixture
def page(app):
    """Member page 1 (the sample page id), slug "x" (the sample slug)."""
    with app.app_context():
        return pages.save(
            None,
            title="Guide",
            slug="x",
            body="<p>%member:name% (%member:login_id%)</p>",
            by="boss",
        ).id


def admin_events(app) -> int:
    return sum(
        audit_count(app, event)
        for event in ("admin.reset_2fa", "admin.page_saved", "admin.page_deleted")
    )


# --- 4.1.1 a pending sign-in and a visitor -------------------------------------------------


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
@pytest.mark.parametrize("who", ["member", "operator"])
def test_v4_1_1_a_pending_sign_in_reaches_only_the_second_step(
    app, client, alice, boss, page, who, htmx
):
    """Password only: every URL but the second-step pages answers "go to the code
    page" (or 405), shows nothing of the member and changes nothing."""
    account = alice if who == "member" else boss
    states = {"alice": member_state(app, "alice"), "boss": member_state(app, "boss")}
    pages_before = pages_state(app)
    response = client.post("/login", data={"login_id": account.login_id, "password": PASSWORD})
    assert response.location == "/login/verify"
    headers = HX if htmx else {}
    walked = 0
    for method, url in every_route(app):
        if url in SECOND_STEP_URLS or url in LANGUAGE_URLS:
            continue
        response = client.open(url, method=method, data=HARMFUL_FORM, headers=headers)
        for text in ("Alice Member", "Boss Operator", "alice@example.com", "ようこそ"):
            assert text not in response.text, (method, url, text)
        if not allowed(app, method, url):
            assert response.status_code == 405, (method, url, response.status_code)
            continue
        walked += 1
        if url in PASSWORD_RESET_URLS:
            # Open to anyone; the password changes only for the holder of a mailed link.
            assert response.status_code == 200, (method, url, response.status_code)
            continue
        if url in HEALTH_URLS:
            assert_health_answer(method, url, response)
            continue
        if url.startswith(API_PREFIX):
            assert_api_answer(app, method, url, response)
            continue
        if htmx:
            assert response.status_code == 200 and response.text == "", (method, url)
            assert response.headers["HX-Redirect"] == "/login/verify", (method, url)
        else:
            assert response.status_code == 302, (method, url, response.status_code)
            assert response.location == "/login/verify", (method, url)
    assert walked >= 30
    assert member_state(app, "alice") == states["alice"]
    assert member_state(app, "boss") == states["boss"]
    assert pages_state(app) == pages_before and admin_events(app) == 0
    # Still pending: the code page is there, and the code completes the sign-in.
    assert 'name="code"' in client.get("/login/verify").text
    assert client.post("/login/verify", data={"code": account.code()}).location == "/"
    assert client.get("/").status_code == 200


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_v4_1_1_a_visitor_is_sent_to_sign_in_from_every_url(app, client, alice, page, htmx):
    before = member_state(app, "alice")
    headers = HX if htmx else {}
    for method, url in every_route(app):
        if url == "/login" or url in LANGUAGE_URLS:
            continue
        response = client.open(url, method=method, data=HARMFUL_FORM, headers=headers)
        if not allowed(app, method, url):
            assert response.status_code == 405, (method, url)
            continue
        if url in SIGN_IN_URLS:
            # パスキーでログイン: a prompt's options (no account named), or a refusal in
            # place when the form holds no passkey answer.
            expected = 200 if url.endswith("/options") else 400
            assert response.status_code == expected, (method, url)
            assert "Alice" not in response.text and "alice" not in response.text, (method, url)
            continue
        if url in PASSWORD_RESET_URLS:
            assert response.status_code == 200, (method, url)
            assert "Alice" not in response.text, (method, url)
            continue
        if url in HEALTH_URLS:
            assert_health_answer(method, url, response)
            continue
        if url.startswith(API_PREFIX):
            assert_api_answer(app, method, url, response)
            continue
        target = redirect_target(response) or ""
        assert response.status_code == (200 if htmx else 302), (method, url)
        assert target == "/login" or target.startswith("/login?"), (method, url, target)
        assert "Alice" not in response.text and "Guide" not in response.text, (method, url)
        if method == "GET" and not htmx and url not in SECOND_STEP_URLS:
            # The page asked for is remembered for after sign-in, and only that.
            assert parse_qs(urlsplit(target).query) == {"next": [url]}, (url, target)
    assert member_state(app, "alice") == before
    assert client.get("/login").status_code == 200


# --- 4.1.3 least privilege: the admin area ----------------------------------------------------


def test_v4_1_3_a_member_gets_403_on_every_admin_url(app, client, alice, page):
    """A member with a fresh second step (the strongest a non-operator gets) tries every
    admin URL, aimed at an operator: 403 everywhere, nothing read, nothing changed."""
    add_member(app, "boss", email="boss.secret@example.org", operator=True)
    sign_in(client, alice)
    boss_before, pages_before = member_state(app, "boss"), pages_state(app)
    admin_urls = [(m, u) for m, u in every_route(app) if u.startswith("/admin")]
    assert len(admin_urls) >= 20
    for method, url in admin_urls:
        for login_id in ("alice", "boss"):
            target = url.replace("/members/alice", f"/members/{login_id}")
            response = client.open(target, method=method, data=HARMFUL_FORM)
            expected = 403 if allowed(app, method, target) else 405
            assert response.status_code == expected, (method, target, response.status_code)
            assert "boss.secret" not in response.text and "Guide" not in response.text
            if expected == 403:
                assert FORBIDDEN in response.text
    assert member_state(app, "boss") == boss_before and pages_state(app) == pages_before
    assert admin_events(app) == 0


# --- 4.2.1 another member's things ------------------------------------------------------------

BOB_SEES = ("Robert Hidden", "robert.hidden", "r***@example.org", "******4321")


def test_v4_2_1_every_member_url_acts_on_the_signed_in_member_only(app, client, alice, page):
    """Alice, signed in with a fresh second step, names bob in every way a view might
    read (query string and form: login ID, member id, id…) on every member URL. Bob's
    account, sessions and data stay untouched and out of sight."""
    bob = add_member(
        app,
        "bob",
        name="Robert Hidden",
        email="robert.hidden@example.org",
        phone="+819087654321",
    )
    with app.app_context():
        m = members.find("bob")
        db.session.add(ContactMethod(member_id=m.id, kind="email", created_at=datetime.now(UTC)))
        db.session.commit()
    bob_client = app.test_client()
    sign_in(bob_client, bob)
    bob_before = member_state(app, "bob")
    sign_in(client, alice, steps=1)
    naming_bob = {
        "login_id": "bob",
        "member": "bob",
        "member_id": str(bob.id),
        "id": str(bob.id),
        "mid": str(bob.id),
        "user_id": f"{bob.id}:0",
        "_user_id": f"{bob.id}:0",
        "uid": str(bob.id),
        "account": "bob",
    }
    query = "&".join(f"{k}={v}" for k, v in naming_bob.items())
    member_urls = [
        (m, u)
        for m, u in every_route(app)
        if not u.startswith(("/admin", "/login", "/logout")) and allowed(app, m, u)
    ]
    assert len(member_urls) >= 20
    for method, url in member_urls:
        for headers in ({}, HX):
            response = client.open(
                f"{url}?{query}", method=method, data=HARMFUL_FORM | naming_bob, headers=headers
            )
            assert response.status_code < 500, (method, url)
            for text in BOB_SEES:
                assert text not in response.text, (method, url, text)
    assert member_state(app, "bob") == bob_before
    assert bob_client.get("/").status_code == 200  # bob's session was not ended
    with app.app_context():  # nothing was sent to bob's address
        assert not db.session.scalar(db.select(OneTimeCode).where(OneTimeCode.member_id == bob.id))
    # The member page's keywords name the viewer, whatever the query string says.
    shown = client.get(f"/pages/x?{query}").text
    assert "hacked (alice)" in shown or "Alice Member (alice)" in shown
    assert "Robert" not in shown and "(bob)" not in shown


# --- 4.2.2 CSRF on every POST route -------------------------------------------------------------


@pytest.mark.settings(WTF_CSRF_ENABLED=True)
@pytest.mark.parametrize("token", ["missing", "empty", "other-visitor", "other-member", "header"])
def test_v4_2_2_every_post_route_refuses_a_missing_or_forged_csrf_token(
    app, client, alice, boss, page, token
):
    """As a signed-in operator with a fresh second step, every POST route found in the
    URL map is sent a cross-site form: 400, and nothing changes (not even sign-out)."""
    # Login CSRF: a forged sign-in form does not sign the browser in either.
    visitor = app.test_client()
    refused = visitor.post("/login", data={"login_id": "alice", "password": PASSWORD})
    assert refused.status_code == 400 and visitor.get("/").status_code == 302

    sign_in_with_csrf(client, boss)
    member = app.test_client()
    bob = add_member(app, "bob")
    forged = {
        "missing": {},
        "empty": {"csrf_token": ""},
        "other-visitor": {"csrf_token": extract_csrf(app.test_client().get("/login").text)},
        "other-member": {"csrf_token": sign_in_with_csrf(member, bob)},
        "header": {},
    }[token]
    headers = {"X-CSRFToken": "forged", **HX} if token == "header" else {}
    before = {name: member_state(app, name) for name in ("alice", "boss", "bob")}
    pages_before, events_before = pages_state(app), audit_count(app)
    urls = post_routes(app)
    assert len(urls) >= 25
    for url in urls:
        response = client.post(url, data=HARMFUL_FORM | forged, headers=headers)
        if url.startswith(API_PREFIX):
            # No CSRF token there, and no cookie either: no credential at all.
            assert_api_answer(app, "POST", url, response)
            continue
        assert response.status_code == 400, (url, response.status_code)
        assert CSRF_REFUSED in response.text, url
    assert {name: member_state(app, name) for name in before} == before
    assert pages_state(app) == pages_before
    # Only the API's refusals were written down (api.refused: a record, not a change).
    assert audit_count(app) - audit_count(app, "api.refused") == events_before
    assert client.get("/admin/").status_code == 200  # still signed in
    assert member.get("/").status_code == 200
    # With the page's own token the same form goes through (the test can fail).
    own = extract_csrf(client.get("/").text)
    client.post("/admin/pages/1/delete", data={"csrf_token": own})
    assert pages_state(app) == []


# --- 4.2.2 (and 13.1.x) a GET changes nothing ---------------------------------------------------


@pytest.mark.wired
def test_v4_2_2_no_get_request_changes_anything(app, admin_client, alice, page, smtp_server):
    """Links and images on other sites can make the browser GET any URL: no GET may
    change a member, a page, a session, or send a code."""
    with app.app_context():
        boss = members.find("boss")
        db.session.add(ContactMethod(member_id=boss.id, kind="email", created_at=datetime.now(UTC)))
        db.session.commit()
    before = {name: member_state(app, name) for name in ("alice", "boss")}
    pages_before, mails_before = pages_state(app), len(smtp_server.messages)
    for _, url in every_route(app, methods=("GET",)):
        for headers in ({}, HX):
            response = admin_client.get(url, headers=headers)
            response.get_data()  # CSV exports stream: read them to the end
            response.close()
            assert response.status_code < 500, url
    assert {name: member_state(app, name) for name in before} == before
    assert pages_state(app) == pages_before and admin_events(app) == 0
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(OneTimeCode.id))) == 0
    assert len(smtp_server.messages) == mails_before
    assert admin_client.get("/admin/").status_code == 200


# --- 4.3.2 no listings, no files outside static -----------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/static/",
        "/static",
        "/static/../portal/config.py",
        "/static/%2e%2e/config.py",
        "/static/..%2fconfig.py",
        "/static/%2e%2e%2f%2e%2e%2fwsgi.py",
        "/static/....//config.py",
        "/static/..\\config.py",
        "/.git/config",
        "/.env",
        "/wsgi.py",
        "/instance/secret_key",
        "/instance/portal.db",
        "/portal/config.py",
        "/migrations/",
    ],
)
def test_v4_3_2_no_listing_and_no_file_outside_static(client, url):
    response = client.get(url)
    response.close()
    assert response.status_code in (301, 302, 308, 404), (url, response.status_code)
    if response.status_code != 404:
        assert response.location.startswith("/login") or response.location.endswith("/static/")
    for secret in ("SECRET_KEY", "import ", "[core]", "SQLite format"):
        assert secret not in response.get_data(as_text=True), url
