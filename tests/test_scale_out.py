"""Two gunicorn processes behind one PostgreSQL database and one Redis are one site, as
hosts behind a load balancer are: a sign-in begun on one continues on the other, a policy
change made on either is what the other applies on its next request, an operator's reset
on one ends the member's session on the other, and rate limits count on both together.

Two servers (tests/live_server.py) on their own ports share the run's PostgreSQL schema
(``database_uri=``), the session's redis-server (``REDIS_URL``), the keys and the SMTP
server. A member is a ``requests`` session: cookies ignore ports, so one cookie jar
serves both, as one browser's would behind one address. PostgreSQL only: SQLite is one
file on one host, not something several hosts share.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
import requests
from browser_helpers import PASSWORD, app_of, current_step, make_operator
from databases import requires_postgresql
from live_server import MemberSpec, app_secrets, enrol, run_server
from redis_server import redis_server  # noqa: F401  (fixture)

pytestmark = [pytest.mark.server, requires_postgresql]

TIMEOUT = 20  # seconds, for every HTTP request
ALICE = MemberSpec("alice", PASSWORD, name="Alice")  # signs in across the two
BOB = MemberSpec("bob", PASSWORD, name="Bob")  # no second step: the policy decides his pages
DAVE = MemberSpec("dave", PASSWORD, name="Dave")  # reset by the operator
CAROL = MemberSpec("carol", PASSWORD, name="Carol")  # someone guesses her password
BOSS = MemberSpec("boss", PASSWORD, name="Boss")  # the operator
WRONG_PASSWORD = "not the password at all"
TOO_MANY = "ログインの試行回数が多すぎます。"
WRONG = "ログインIDまたはパスワードが正しくありません。"
NO_SECOND_STEP = "二段階認証が設定されていません。"


@dataclass
class Site:
    a: object  # live_server.LiveServer
    b: object


@pytest.fixture(scope="module")
def site(tmp_path_factory, redis_server, module_smtp) -> Iterator[Site]:  # noqa: F811
    redis_server.flushall()
    environment = {
        "REDIS_URL": redis_server.url,
        "MAIL_SERVER": module_smtp.host,
        "MAIL_PORT": str(module_smtp.port),
    }
    members = [ALICE, BOB, CAROL, DAVE, BOSS]
    with run_server(tmp_path_factory.mktemp("host-a"), members, environment=environment) as a:
        for spec in (ALICE, DAVE):
            enrol(a, spec.login_id)
        a.secrets = app_secrets(a)
        a.step = current_step()  # enrol() used the current step
        make_operator(a, BOSS)
        with run_server(
            tmp_path_factory.mktemp("host-b"),
            environment=environment,
            database_uri=a.database_uri,
        ) as b:
            yield Site(a, b)


class Visitor:
    """One browser without JavaScript: one cookie jar for both hosts."""

    def __init__(self) -> None:
        self.http = requests.Session()

    def get(self, server, path: str) -> requests.Response:
        return self.http.get(f"{server.url}{path}", allow_redirects=False, timeout=TIMEOUT)

    def post(self, server, path: str, data: dict, *, form_page: str | None = None):
        """Post to ``path`` with the CSRF token of ``form_page`` (``path`` unless given)
        as the same host serves it."""
        page = self.get(server, form_page or path)
        assert page.status_code == 200, (page.status_code, page.text[:300])
        token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text)
        assert token, "page has no CSRF meta tag"
        return self.http.post(
            f"{server.url}{path}",
            data=data | {"csrf_token": token[1]},
            allow_redirects=False,
            timeout=TIMEOUT,
        )

    def password(self, server, spec: MemberSpec, password: str | None = None):
        return self.post(
            server, "/login", {"login_id": spec.login_id, "password": password or spec.password}
        )

    def code(self, site: Site, server, spec: MemberSpec) -> requests.Response:
        """A fresh code of the member's app (its phone: app_of, kept with host A)."""
        code = app_of(site.a, spec).fresh_code()
        return self.post(server, "/login/verify", {"code": code})


def location(response: requests.Response) -> str:
    return urlsplit(response.headers.get("Location", "")).path


def signed_in(visitor: Visitor, server, spec: MemberSpec) -> bool:
    page = visitor.get(server, "/")
    return page.status_code == 200 and f"{spec.name}さん、ようこそ" in page.text


def test_a_sign_in_begun_on_one_host_is_completed_on_the_other(site):
    alice = Visitor()
    assert location(alice.password(site.a, ALICE)) == "/login/verify"
    page = alice.get(site.b, "/login/verify")  # B knows the pending sign-in A started
    assert page.status_code == 200 and 'name="code"' in page.text, page.text[:300]
    answer = alice.code(site, site.b, ALICE)
    assert answer.status_code == 302 and location(answer) == "/", answer.text[:300]
    assert signed_in(alice, site.b, ALICE)
    assert signed_in(alice, site.a, ALICE)  # and signed in on both


def test_a_policy_change_made_on_one_host_applies_on_the_other_at_once(site):
    bob = Visitor()
    assert location(bob.password(site.b, BOB)) == "/"
    page = bob.get(site.b, "/")
    assert page.status_code == 200 and NO_SECOND_STEP in page.text  # recommended: a banner

    boss = Visitor()
    assert location(boss.password(site.a, BOSS)) == "/login/verify"
    assert location(boss.code(site, site.a, BOSS)) == "/"
    policy = policy_form(enforcement="required", grace_days="0")
    saved = boss.post(site.a, "/admin/policy", policy)
    assert saved.status_code == 302 and location(saved) == "/admin/policy", saved.text[:500]

    blocked = bob.get(site.b, "/")  # B's next request: set up a second step first
    assert blocked.status_code == 302 and location(blocked) == "/settings/2fa/setup"

    # And back, on the other host: A follows B.
    assert location(boss.post(site.b, "/admin/policy", policy_form())) == "/admin/policy"
    page = bob.get(site.a, "/")
    assert page.status_code == 200 and NO_SECOND_STEP in page.text


def test_an_operator_reset_on_one_host_ends_the_member_session_on_the_other(site):
    dave = Visitor()
    assert location(dave.password(site.b, DAVE)) == "/login/verify"
    assert location(dave.code(site, site.b, DAVE)) == "/"
    assert signed_in(dave, site.b, DAVE)

    boss = Visitor()
    assert location(boss.password(site.a, BOSS)) == "/login/verify"
    assert location(boss.code(site, site.a, BOSS)) == "/"
    done = boss.post(site.a, "/admin/members/dave/reset", {"confirm": "y"})
    assert done.status_code == 200 and "二段階認証を無効化しました。" in done.text, done.text[:500]

    ended = dave.get(site.b, "/")
    assert ended.status_code == 302 and location(ended) == "/login"
    assert not signed_in(dave, site.a, DAVE)


def test_failed_passwords_count_on_both_hosts_together(site):
    """Five failures a minute for one account from one address (the default): three on
    A and two on B fill it, so the sixth is refused, here on B, which saw only two."""
    guesser = Visitor()
    for server in (site.a, site.b, site.a, site.b, site.a):
        answer = guesser.password(server, CAROL, WRONG_PASSWORD)
        assert answer.status_code == 200 and WRONG in answer.text, answer.status_code
    refused = guesser.password(site.b, CAROL, WRONG_PASSWORD)
    assert refused.status_code == 429 and TOO_MANY in refused.text, refused.status_code
    refused = guesser.password(site.b, CAROL)  # the right one too, for now
    assert refused.status_code == 429 and TOO_MANY in refused.text, refused.status_code


def policy_form(**changes: str) -> dict:
    """The policy page's fields as the portal ships them, with ``changes``."""
    fields = {
        "enforcement": "recommend",
        "operator_enforcement": "required",
        "grace_days": "7",
        "allow_remember_device": "y",
        "remember_days": "30",
        "trusted_networks": "",
        "methods": ["app", "email", "sms", "passkey"],
        "passwordless": "y",
        "issuer": "",
        "landing_path": "/",
    }
    return fields | changes
