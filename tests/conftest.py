"""Fixtures: a fresh app per test on a fresh database (a temporary SQLite file, or a schema
of its own on the session's PostgreSQL server: tests/databases.py), members with known
passwords, and a member with a real authenticator secret so tests compute real codes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import databases
import pyotp
import pytest
from browser_helpers import browser, module_sms, module_smtp  # noqa: F401  (fixtures)
from mail_server import smtp_server  # noqa: F401  (fixture)
from postgres_server import postgres_server  # noqa: F401  (fixture)
from sms_gateway import sms_gateway  # noqa: F401  (fixture)

from portal import create_app, members, twofactor
from portal.extensions import db
from portal.twofactor import totp
from portal.web import background

PASSWORD = "correct horse battery"
NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)

# argon2id with tiny parameters: the rules under test are the same, the suite is fast.
CHEAP_ARGON2 = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}


def pytest_report_header() -> str:
    return f"database: {databases.BACKEND} (PORTAL_TEST_DATABASE)"


@pytest.fixture(scope="session", autouse=True)
def database_backend(request) -> str:
    """On a PostgreSQL run, the session's server, started before the first test."""
    if databases.on_postgresql():
        databases.use(request.getfixturevalue("postgres_server"))
    return databases.BACKEND


@pytest.fixture
def database_url(tmp_path) -> Iterator[str]:
    """A new empty database for this test (SQLite file or PostgreSQL schema)."""
    with databases.fresh_database(tmp_path) as url:
        yield url


@pytest.fixture
def app_database_url(tmp_path) -> Iterator[str]:
    """The app fixture's database: empty, though on PostgreSQL it may hold the portal's
    tables already (an earlier test's schema, emptied; databases.fresh_database)."""
    with databases.fresh_database(tmp_path, reuse=True) as url:
        yield url


# What every test app shares: no CSRF tokens to copy, cheap hashes.
TEST_CONFIG = {
    "TESTING": True,
    "SECRET_KEY": "test-secret-key-not-for-production",
    "WTF_CSRF_ENABLED": False,
    "PORTAL_ARGON2_PARAMS": CHEAP_ARGON2,
}


@contextmanager
def built_app(database_url: str, **settings) -> Iterator:
    """An app on ``database_url`` with its tables, ``settings`` on top of TEST_CONFIG;
    its connections are closed afterwards."""
    app = create_app(TEST_CONFIG | {"SQLALCHEMY_DATABASE_URI": database_url} | settings)
    with app.app_context():
        db.create_all()
    try:
        yield app
    finally:
        # Jobs a request left running (パスワードをお忘れの方 mails after the answer) end
        # first: one finishing after the dispose below would check a connection out of
        # a fresh pool that nobody closes (a ResourceWarning at a random later test).
        background.wait_idle()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(app_database_url, request):
    # Tests sign in many times a minute; the limit tests turn this back on.
    config = {"RATELIMIT_ENABLED": False}
    if request.node.get_closest_marker("wired"):
        # Mail goes to a real SMTP server, SMS to a real stand-in gateway.
        smtp = request.getfixturevalue("smtp_server")
        gateway = request.getfixturevalue("sms_gateway")
        config.update(
            MAIL_SERVER=smtp.host,
            MAIL_PORT=smtp.port,
            MAIL_DEFAULT_SENDER="portal@example.com",
            PORTAL_BASE_URL="https://portal.example.com",
            PORTAL_SMS_BACKEND="http",
            PORTAL_SMS_GATEWAY_URL=gateway.url,
            PORTAL_SMS_GATEWAY_TOKEN="t0ken",
            PORTAL_SMS_TIMEOUT=1,
        )
    marker = request.node.get_closest_marker("settings")
    if marker:
        config.update(marker.kwargs)
    with built_app(app_database_url, **config) as app:
        yield app


@pytest.fixture
def hash_checks(monkeypatch) -> list[str]:
    """The stored hashes the password hasher verifies against, one entry a verification
    (timing: every password step must cost the same one argon2 check)."""
    checked: list[str] = []
    real_hasher = members.hasher

    class CountingHasher:
        def __init__(self):
            self.real = real_hasher()

        def verify(self, stored, typed):
            checked.append(stored)
            return self.real.verify(stored, typed)

        def __getattr__(self, name):
            return getattr(self.real, name)

    monkeypatch.setattr(members, "hasher", CountingHasher)
    return checked


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app, monkeypatch):
    """The CLI as an operator whose shell names no language (``C``): the portal's default."""
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name, raising=False)
    return app.test_cli_runner()


PHONE = "+819012345678"


@pytest.fixture
def member(app):
    with app.app_context():
        m = members.create(
            "alice", email="alice@example.com", password=PASSWORD, name="Alice", phone=PHONE
        )
        return m.id


OPERATOR_PASSWORD = "operator password 1"


@pytest.fixture
def operator(app):
    """An operator without 2FA: the admin area sends them to set one up first."""
    with app.app_context():
        return members.create(
            "boss", email="boss@example.com", password=OPERATOR_PASSWORD, is_operator=True
        ).id


@pytest.fixture
def operator_totp(app, operator):
    """The operator with an authenticator app (enrolled long ago); its pyotp.TOTP."""
    with app.app_context():
        return enrol_app(get_member(operator))


@pytest.fixture
def admin_client(client, operator_totp):
    """A client signed in as the operator with password and app code (so fresh for
    admin changes for the next 10 minutes)."""
    response = client.post("/login", data={"login_id": "boss", "password": OPERATOR_PASSWORD})
    assert response.location == "/login/verify"
    response = client.post("/login/verify", data={"code": operator_totp.now()})
    assert response.location == "/", response.text
    return client


def enrol_app(m) -> pyotp.TOTP:
    """Enrol an authenticator app for ``m`` at an old time step, so every code from now
    on is fresh; returns its pyotp.TOTP."""
    earlier = datetime(2020, 1, 1, tzinfo=UTC)
    nonce = "fixture"  # the id of the session shown the secret
    secret = totp.begin_enrolment(m, earlier, nonce)
    totp_obj = pyotp.TOTP(secret)
    status, _ = twofactor.enable_app(m, totp_obj.at(earlier), earlier, nonce, replace=False)
    assert status is twofactor.Enrolment.OK
    return totp_obj


def get_member(member_id: int):
    from portal.models import Member

    return db.session.get(Member, member_id)


@pytest.fixture
def member_with_totp(app, member):
    """(member id, pyotp.TOTP of its secret, its recovery codes); enrolled a while ago so
    the current time step is free for the test."""
    with app.app_context():
        m = get_member(member)
        # Enrolled with an old time step, so every code from now on is fresh.
        earlier = datetime(2020, 1, 1, tzinfo=UTC)
        nonce = "fixture"  # the id of the session shown the secret
        secret = totp.begin_enrolment(m, earlier, nonce)
        totp_obj = pyotp.TOTP(secret)
        status, codes = twofactor.enable_app(m, totp_obj.at(earlier), earlier, nonce, replace=False)
        assert status is twofactor.Enrolment.OK and codes, "enrolment failed in the fixture"
        return member, totp_obj, codes


def extract_csrf(html: str) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert match, "page has no CSRF meta tag"
    return match.group(1)


class AuthActions:
    def __init__(self, client):
        self.client = client

    def login(self, login_id="alice", password=PASSWORD, **kw):
        return self.client.post("/login", data={"login_id": login_id, "password": password}, **kw)

    def verify(self, code, **kw):
        return self.client.post("/login/verify", data={"code": code}, **kw)

    def full_login(self, totp_obj, login_id="alice"):
        response = self.login(login_id)
        assert response.location == "/login/verify"
        response = self.verify(totp_obj.now())
        assert response.status_code == 302, response.text
        return response


@pytest.fixture
def auth(client):
    return AuthActions(client)
