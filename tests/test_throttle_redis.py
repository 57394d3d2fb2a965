"""Rate limits kept in Redis, with buckets of several rules (as the defaults have): each
rule counts and refuses on its own, and the counting survives Redis losing its scripts.

The portal reads and counts all the rules of a check in one round trip to Redis
(portal/throttle.py); these tests hold it to what limits does rule by rule."""

from __future__ import annotations

import pytest
from conftest import PASSWORD, built_app
from redis_server import redis_server  # noqa: F401  (fixture)

from portal import members

TOO_MANY = "ログインの試行回数が多すぎます。"
WRONG = "ログインIDまたはパスワードが正しくありません。"


@pytest.fixture
def app(database_url, redis_server, request):  # noqa: F811
    redis_server.flushall()
    config = {
        "REDIS_URL": redis_server.url,
        # Two rules per bucket; the account and device buckets stay out of the way
        # unless a test narrows them.
        "PORTAL_LIMIT_LOGIN_ADDRESS": "6 per minute;9 per hour",
        "PORTAL_LIMIT_LOGIN_ACCOUNT_ADDRESS": "100 per minute;1000 per hour",
        "PORTAL_LIMIT_LOGIN_ACCOUNT": "100 per minute;1000 per hour",
    }
    with built_app(database_url, **config | getattr(request, "param", {})) as app:
        with app.app_context():
            members.create("alice", email="alice@example.com", password=PASSWORD, name="Alice")
        yield app


def attempt(app, address: str, password: str = "wrong password"):  # noqa: S107
    return app.test_client().post(
        "/login",
        data={"login_id": "alice", "password": password},
        environ_base={"REMOTE_ADDR": address},
    )


def assert_refused(response, at_least: int, at_most: int) -> None:
    assert response.status_code == 429
    assert at_least <= int(response.headers["Retry-After"]) <= at_most
    assert TOO_MANY in response.text


def test_the_minute_rule_of_an_address_refuses_the_seventh_check(app):
    for _ in range(6):
        assert WRONG in attempt(app, "192.0.2.1").text
    # Even the right password: the check itself is what is limited.
    assert_refused(attempt(app, "192.0.2.1", PASSWORD), 1, 60)
    # Another address is not held by it.
    assert attempt(app, "192.0.2.2", PASSWORD).status_code == 302


def test_the_hour_rule_counts_beside_the_minute_rule(app, redis_server):  # noqa: F811
    for _ in range(6):
        attempt(app, "192.0.2.1")
    # A new minute for the address (its minute window cleared), not a new hour.
    client = redis_server.client()
    for key in client.keys("*192.0.2.1*"):
        if client.ttl(key) <= 60:
            client.delete(key)
    for _ in range(3):
        assert WRONG in attempt(app, "192.0.2.1").text
    # The tenth check in the hour is refused until the hour is over.
    assert_refused(attempt(app, "192.0.2.1", PASSWORD), 61, 3600)


@pytest.mark.parametrize(
    "app", [{"PORTAL_LIMIT_LOGIN_ACCOUNT_ADDRESS": "3 per minute;10 per hour"}], indirect=True
)
def test_failures_of_one_account_are_read_from_every_rule(app):
    for _ in range(3):
        assert WRONG in attempt(app, "192.0.2.1").text
    assert_refused(attempt(app, "192.0.2.1", PASSWORD), 1, 60)
    # The account's failures from this address held it; the owner elsewhere is let in.
    assert attempt(app, "192.0.2.9", PASSWORD).status_code == 302


def test_counting_goes_on_after_redis_loses_its_scripts(app, redis_server):  # noqa: F811
    for _ in range(3):
        attempt(app, "192.0.2.1")
    redis_server.client().script_flush()  # as after a restart of Redis
    for _ in range(3):
        assert WRONG in attempt(app, "192.0.2.1").text
    assert_refused(attempt(app, "192.0.2.1", PASSWORD), 1, 60)
