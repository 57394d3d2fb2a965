"""OWASP ASVS 4.0.3, V5 Validation, sanitisation and encoding: redirects, XSS and SQL
injection, performed over HTTP.

Each test name carries the ASVS item it proves (``v5_3_3`` is 5.3.3). Escaping is
checked where a browser would meet it: the HTML the portal sends, and the Location and
HX-Redirect headers a browser follows."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from attack_helpers import add_member, is_local_path, redirect_target, sign_in
from conftest import OPERATOR_PASSWORD, PASSWORD
from markupsafe import escape
from sqlalchemy import update

from portal import pages
from portal.extensions import db
from portal.models import ContactMethod, TotpCredential, utcnow

HX = {"HX-Request": "true"}

# --- 5.1.5 open redirects through ``next`` -----------------------------------------------------

# As typed into the address bar: already percent-encoded where a browser would encode.
REDIRECT_ATTACKS = [
    "//evil.example",
    "//evil.example/path?x=1",
    "///evil.example",
    "////evil.example",
    "/%2Fevil.example",
    "%2F%2Fevil.example",
    "%252F%252Fevil.example",
    "/%252F/evil.example",
    "/%5Cevil.example",
    "/%5C/evil.example",
    "%5C%5Cevil.example",
    "%5C/evil.example",
    "/%255Cevil.example",
    "https:evil.example",
    "https:/evil.example",
    "http://evil.example",
    "HTTP://evil.example",
    "https://portal.example@evil.example/",
    "javascript:alert(1)",
    "JavaScript:alert(1)//",
    "data:text/html,%3Cscript%3Ealert(1)%3C/script%3E",
    "%09//evil.example",
    "/%09/evil.example",
    "/%0A/evil.example",
    "/%0D%0ALocation:%20https://evil.example",
    "/%00//evil.example",
    "%00//evil.example",
    "%20//evil.example",
    "/%20/evil.example",
    "/%E3%80%80/evil.example",  # ideographic space
    "%EF%BC%8F%EF%BC%8Fevil.example",  # full-width ／／
    "/%EF%BC%8Fevil.example",  # /／
    "%EF%BC%BC%EF%BC%BCevil.example",  # full-width ＼＼
    "/%E2%88%95evil.example",  # division slash
    "/.//evil.example",
    "/./%2F/evil.example",
    "/..//evil.example",
    "/%2E%2E//evil.example",
    "//%65vil.example",
    "/\\evil.example",
]


def check_redirect(response, attack: str, failures: list[str], expect_status=(302, 200)) -> None:
    target = redirect_target(response)
    if response.status_code not in expect_status or target is None:
        failures.append(f"{attack!r}: status {response.status_code}, no redirect")
    elif not is_local_path(target):
        failures.append(f"{attack!r} -> {target!r}")


@pytest.mark.parametrize("htmx", [False, True], ids=["location", "hx-redirect"])
def test_v5_1_5_next_after_password_only_sign_in_stays_on_the_site(app, htmx):
    add_member(app, "carol", app_2fa=False)
    failures: list[str] = []
    for attack in REDIRECT_ATTACKS:
        client = app.test_client()
        response = client.post(
            f"/login?next={attack}",
            data={"login_id": "carol", "password": PASSWORD},
            headers=HX if htmx else {},
        )
        check_redirect(response, attack, failures)
    assert failures == []


def accept_code_again(app, account) -> None:
    """Let the member's current app code be accepted once more (a fresh time step for
    each attempt, without waiting 30 seconds)."""
    with app.app_context():
        db.session.execute(
            update(TotpCredential).where(TotpCredential.member_id == account.id).values(last_step=0)
        )
        db.session.commit()


@pytest.mark.parametrize("htmx", [False, True], ids=["location", "hx-redirect"])
def test_v5_1_5_next_after_the_second_step_stays_on_the_site(app, htmx):
    account = add_member(app, "alice")
    failures: list[str] = []
    for attack in REDIRECT_ATTACKS:
        accept_code_again(app, account)
        client = app.test_client()
        response = client.post(
            f"/login?next={attack}", data={"login_id": "alice", "password": PASSWORD}
        )
        assert response.location == "/login/verify", attack
        response = client.post(
            "/login/verify", data={"code": account.code()}, headers=HX if htmx else {}
        )
        check_redirect(response, attack, failures)
    assert failures == []


def test_v5_1_5_next_after_a_recovery_code_stays_on_the_site(app):
    accounts = [add_member(app, f"member{i}") for i in range(len(REDIRECT_ATTACKS) // 10 + 1)]
    failures: list[str] = []
    for i, attack in enumerate(REDIRECT_ATTACKS):
        account = accounts[i // 10]
        client = app.test_client()
        client.post(
            f"/login?next={attack}", data={"login_id": account.login_id, "password": PASSWORD}
        )
        response = client.post("/login/recovery", data={"recovery_code": account.codes[i % 10]})
        check_redirect(response, attack, failures)
    assert failures == []


def test_v5_1_5_next_after_reauthentication_stays_on_the_site(app):
    account = add_member(app, "carol", app_2fa=False)
    client = app.test_client()
    sign_in(client, account)
    failures: list[str] = []
    for attack in REDIRECT_ATTACKS:
        response = client.post(f"/settings/reauth?next={attack}", data={"password": PASSWORD})
        check_redirect(response, attack, failures, expect_status=(302,))
    assert failures == []


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/pages/x", "y=//evil.example"),
        ("/pages/x", "next=https://evil.example"),
        ("//settings/2fa", ""),
        ("//evil.example/settings/2fa", ""),
        ("/settings//2fa", ""),
    ],
)
def test_v5_1_5_the_page_remembered_for_a_visitor_is_on_the_site(client, path, query):
    """A visitor sent to sign in is sent back afterwards to where it was: that place
    is remembered as a local path (the raw request path, as a crafted link sends it)."""
    response = client.get("/", environ_overrides={"PATH_INFO": path, "QUERY_STRING": query})
    location = response.location or ""
    assert response.status_code in (302, 308, 404), (path, response.status_code)
    if response.status_code == 404:
        return
    parts = urlsplit(location)
    assert parts.netloc in ("", "localhost") and is_local_path(parts.path), location
    remembered = parse_qs(parts.query).get("next", ["/"])[0]
    assert is_local_path(remembered), (path, remembered)


def test_v5_1_5_the_good_next_still_works(app):
    """The refusals above are not a portal that ignores ``next`` altogether."""
    account = add_member(app, "carol")
    client = app.test_client()
    client.post(
        "/login?next=/settings/2fa?tab=app", data={"login_id": "carol", "password": PASSWORD}
    )
    response = client.post("/login/verify", data={"code": account.code()})
    assert response.location == "/settings/2fa?tab=app"


# --- 5.3.3 output encoding: names and other stored text --------------------------------------

XSS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "'><svg onload=alert(1)>",
    "</title><script>alert(1)</script>",
    "</textarea><script>alert(1)</script>",
]
LIVE_MARKUP = re.compile(r"<script>alert|<img src=x|<svg onload|onerror=alert\(1\)>", re.I)


def assert_escaped(html: str, payload: str, where: str, *, shown: bool = True) -> None:
    assert payload not in html, where
    assert not LIVE_MARKUP.search(html), (where, LIVE_MARKUP.search(html).group(0))
    if shown:
        assert str(escape(payload)) in html, where


def rename(client, name: str, email: str = "alice@example.com") -> None:
    response = client.post("/settings/profile", data={"name": name, "email": email, "phone": ""})
    assert response.status_code == 302, response.text


@pytest.mark.parametrize("payload", XSS)
def test_v5_3_3_a_name_is_escaped_on_every_page_that_shows_it(app, admin_client, payload):
    """The member sets the name on /settings/profile; operators then meet it in the
    list, search results, detail, reset dialog and its answer, and the audit log."""
    alice = add_member(app, "alice")  # with a second step: the reset dialog names her
    member = app.test_client()
    sign_in(member, alice)
    rename(member, payload)
    assert_escaped(member.get("/").text, payload, "member TOP")
    assert_escaped(member.get("/settings/profile").text, payload, "profile form")
    for url, headers in [
        ("/admin/members", {}),
        ("/admin/members?q=alice", {}),
        ("/admin/members?q=alice", HX),
        ("/admin/members/alice", {}),
        ("/admin/members/alice/reset", {}),
        ("/admin/members/alice/reset", HX),
    ]:
        assert_escaped(admin_client.get(url, headers=headers).text, payload, url)
    done = admin_client.post("/admin/members/alice/reset", data={"confirm": "y"}, headers=HX)
    assert "二段階認証を無効化しました" in done.text
    assert_escaped(done.text, payload, "reset answer")
    for url in ("/admin/audit", "/admin/audit?member=alice", "/admin/"):
        assert_escaped(admin_client.get(url).text, payload, url, shown=False)


@pytest.mark.parametrize("payload", XSS[:2])
def test_v5_3_3_attacker_text_in_the_audit_log_is_escaped(app, admin_client, payload):
    """The browser's User-Agent is stored with every event. Operators see only a browser
    name from an allow-list (issue 10): the text never reaches a page, escaped or not,
    and in the CSV it stays in its own column, a cell like any other."""
    add_member(app, "alice", app_2fa=False)
    attacker = app.test_client()
    attacker.environ_base["HTTP_USER_AGENT"] = payload
    attacker.post("/login", data={"login_id": "alice", "password": "wrong password"})
    attacker.post("/login", data={"login_id": payload, "password": "wrong password"})
    attacker.post("/login", data={"login_id": "alice", "password": PASSWORD})
    for url in ("/admin/audit", "/admin/audit?member=alice", "/admin/members/alice"):
        html = admin_client.get(url).text
        assert_escaped(html, payload, url, shown=False)
        assert str(escape(payload)) not in html, url
    csv = admin_client.get("/admin/audit.csv")
    assert csv.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert csv.headers["Content-Disposition"].startswith("attachment")
    assert csv.headers["X-Content-Type-Options"] == "nosniff"


REFLECTED = [
    ("/admin/members", "q"),
    ("/admin/audit", "member"),
    ("/admin/audit", "from"),
    ("/admin/audit", "to"),
    ("/admin/audit", "event"),
]


@pytest.mark.parametrize(
    "payload",
    [
        '"><script>alert(1)</script>',
        "' autofocus onfocus='alert(1)",
        '" autofocus onfocus="alert(1)',
        "</textarea><script>alert(1)</script>",
    ],
)
def test_v5_3_3_search_and_filter_values_are_escaped_when_reflected(admin_client, payload):
    for url, param in REFLECTED:
        for headers in ({}, HX):
            response = admin_client.get(url, query_string={param: payload}, headers=headers)
            assert response.status_code == 200
            html = response.text
            assert payload not in html, (url, param)
            assert not LIVE_MARKUP.search(html), (url, param)
            assert not re.search(r"""\sonfocus=["']alert""", html), (url, param)
    # The search box does show what was typed (escaped), so the check above is real.
    shown = admin_client.get("/admin/members", query_string={"q": payload}).text
    assert f'value="{escape(payload)}"' in shown


@pytest.mark.parametrize("payload", XSS[:2])
def test_v5_3_3_reflected_sign_in_values_are_escaped(app, client, payload):
    """The typed ID comes back in its field; ``next`` in the form's action."""
    response = client.post(
        "/login", query_string={"next": "/" + payload}, data={"login_id": payload, "password": "x"}
    )
    assert_escaped(response.text, payload, "login form", shown=False)
    assert f'value="{escape(payload)}"' in response.text
    account = add_member(app, "carol", app_2fa=False)
    sign_in(client, account)
    response = client.get("/settings/reauth", query_string={"next": "/" + payload})
    assert_escaped(response.text, payload, "reauth dialog", shown=False)


@pytest.mark.parametrize("payload", XSS[:3])
def test_v5_3_3_a_member_page_title_is_escaped(app, admin_client, payload):
    """Titles are plain text (bodies are sanitised, see tests/test_pages.py)."""
    response = admin_client.post(
        "/admin/pages/new", data={"title": payload, "slug": "guide", "body": "<p>ok</p>"}
    )
    assert response.status_code == 302
    assert_escaped(admin_client.get("/admin/pages").text, payload, "list with the saved flash")
    with admin_client.application.app_context():
        page_id = pages.find("guide").id
    for url, headers in [
        ("/pages/guide", {}),
        (f"/admin/pages/{page_id}/edit", {}),
        (f"/admin/pages/{page_id}/delete", {}),
        (f"/admin/pages/{page_id}/delete", HX),
    ]:
        assert_escaped(admin_client.get(url, headers=headers).text, payload, url)
    admin_client.post(f"/admin/pages/{page_id}/delete")
    assert_escaped(admin_client.get("/admin/pages").text, payload, "the deleted flash")


ATTRIBUTE_BREAKERS = [
    '" onmouseover="alert(1)',
    "' onmouseover='alert(1)",
    '"><script>alert(1)</script>',
    'x" style="position:fixed;inset:0',
    "javascript:alert(1)",
]


def test_v5_3_3_a_name_cannot_break_out_of_a_member_page_attribute(app, client):
    """tests/test_pages.py checks names in text and in an href; here the name tries to
    close the attribute it is put in and add one of its own."""
    with app.app_context():
        pages.save(
            None,
            title="t",
            slug="me",
            body='<p><a href="%member:name%" title="%member:name%">me</a>'
            '<img src="%member:name%" alt="%member:name%"></p>',
            by="boss",
        )
    sign_in(client, add_member(app, "alice", app_2fa=False))
    for name in ATTRIBUTE_BREAKERS:
        rename(client, name)
        html = client.get("/pages/me").text
        body = re.search(r'<div class="member-page-body">(.*?)</div>', html, re.S).group(1)
        assert "<a " in body and "<img " in body, name
        tags = re.findall(r"<[a-z]+\b[^>]*>", body)
        for tag in tags:
            attributes = re.findall(r'\s([a-z-]+)=(?:"[^"]*"|\'[^\']*\'|[^\s>]+)', tag)
            assert set(attributes) <= {"href", "title", "src", "alt", "rel"}, (name, tag)
        assert not re.search(r"(href|src)=[\"']?\s*javascript:", body, re.I), name
        assert "<script" not in body, name


# --- 5.2.5 template syntax is text -------------------------------------------------------------

TEMPLATE_SYNTAX = [
    "{{7*7}}",
    "{% if 1 %}yes{% endif %}",
    "%(login_id)s",
    "%member:login_id%",
    "${7*7}",
]


def test_v5_2_5_template_syntax_in_a_name_is_shown_as_typed(app, admin_client):
    with app.app_context():
        pages.save(None, title="t", slug="hello", body="<p>Hi %member:name%!</p>", by="boss")
    alice = add_member(app, "alice", app_2fa=False)
    for name in TEMPLATE_SYNTAX:
        member = app.test_client()
        sign_in(member, alice)  # again each time: the reset below ends the session
        rename(member, name)
        typed = str(escape(name))
        assert f"{typed}さん、ようこそ" in member.get("/").text, name
        assert f"Hi {typed}!" in member.get("/pages/hello").text, name
        assert f"<h1>{typed}（alice）</h1>" in admin_client.get("/admin/members/alice").text
        with app.app_context():  # something to reset: a member without 2FA is refused
            db.session.add(ContactMethod(member_id=alice.id, kind="email", created_at=utcnow()))
            db.session.commit()
        done = admin_client.post("/admin/members/alice/reset", data={"confirm": "y"}, headers=HX)
        assert f"{typed}（alice）の二段階認証を無効化しました" in done.text, name


# --- 5.3.4 SQL injection and LIKE wildcards ------------------------------------------------------


def listed(html: str) -> list[str]:
    return re.findall(r'<a href="/admin/members/([^"]+)">', html)


@pytest.fixture
def directory(app, admin_client):
    """alice, bob_smith (an underscore), pct (a % in the name), and the operator."""
    add_member(app, "alice", name="Alice", app_2fa=False)
    add_member(app, "bob_smith", name="Bob", app_2fa=False)
    add_member(app, "pct", name="100% sure", app_2fa=False)
    return admin_client


SEARCHES = [
    ("%", ["pct"]),
    ("_", ["bob_smith"]),
    ("a%e", []),  # unescaped, LIKE '%a%e%' would list alice
    ("a_i", []),  # unescaped, '_' would match the l of alice
    ("\\", []),
    ("\\%", []),
    ("%%%%", []),
    ("[a-z]", []),
    ("' OR '1'='1", []),
    ("alice' --", []),
    ('alice" --', []),
    ("'; DROP TABLE member; --", []),
    ("1) OR (1=1", []),
    ("alice", ["alice"]),
    ("ALICE", ["alice"]),
]


def test_v5_3_4_member_search_treats_input_as_text(directory):
    wrong = []
    for q, expected in SEARCHES:
        html = directory.get("/admin/members", query_string={"q": q}).text
        csv = directory.get("/admin/members.csv", query_string={"q": q})
        rows = csv.get_data(as_text=True).splitlines()[1:]
        found = (listed(html), sorted(row.split(",")[0] for row in rows))
        if found != (expected, expected):
            wrong.append((q, found))
    assert wrong == []
    # Nothing was dropped or changed: the full list is still there.
    everyone = listed(directory.get("/admin/members").text)
    assert sorted(everyone) == ["alice", "bob_smith", "boss", "pct"]


LOOKUPS = ["' OR 1=1 --", "alice' --", "%", "ali_e", "alice%", "alice\x00", "a" * 200]


def test_v5_3_4_login_id_lookups_treat_input_as_text(directory):
    client = directory
    for typed in LOOKUPS:
        audit = client.get("/admin/audit", query_string={"member": typed})
        assert audit.status_code == 200
        assert "そのログインIDのメンバーはいません。" in audit.text, typed
        assert "条件に合うイベントはありません。" in audit.text, typed
        assert client.get(f"/admin/members/{quote(typed)}").status_code == 404, typed
        assert client.get(f"/pages/{quote(typed)}").status_code == 404, typed
        stranger = client.application.test_client()
        response = stranger.post("/login", data={"login_id": typed, "password": PASSWORD})
        assert response.status_code == 200
        assert "ログインIDまたはパスワードが正しくありません。" in response.text, typed
        assert stranger.get("/").status_code == 302


def test_v5_3_4_an_operator_password_with_sql_is_just_a_password(app, client, operator_totp):
    """The operator signs in with quotes in the typed password: nothing matches."""
    for password in ("' OR '1'='1", OPERATOR_PASSWORD + "' --"):
        response = client.post("/login", data={"login_id": "boss", "password": password})
        assert "ログインIDまたはパスワードが正しくありません。" in response.text
    assert client.get("/").status_code == 302
