"""GET /healthz, as a load balancer sees it: 200 while the database (and Redis, when
configured) answer, 503 naming the part that does not, and nothing else: no cookie, no
secret, no host name, no error text, no cache, no limit."""

from __future__ import annotations

import json
import logging
import socket

import pytest
from conftest import PASSWORD
from redis_server import redis_server  # noqa: F401  (fixture)

from portal import create_app

SECRET_KEY = "health-test-secret-key-not-for-production"


def probe(client) -> tuple[int, dict]:
    response = client.get("/healthz")
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in response.headers
    return response.status_code, json.loads(response.text)


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_healthy_without_redis(client):
    assert probe(client) == (200, {"status": "ok", "database": "ok", "redis": "not configured"})


def test_healthy_with_redis(app, redis_server):  # noqa: F811
    app.config["REDIS_URL"] = redis_server.url
    assert probe(app.test_client()) == (200, {"status": "ok", "database": "ok", "redis": "ok"})


def test_no_cookie_for_a_signed_in_member_either(client, member):
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    assert client.get("/").status_code == 200
    assert probe(client)[0] == 200


def test_an_unreachable_database_is_named_and_nothing_else(tmp_path, caplog):
    missing = tmp_path / "no-such-folder" / "portal.db"
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": SECRET_KEY,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{missing}",
        }
    )
    with caplog.at_level(logging.WARNING, logger="portal"):
        status, body = probe(app.test_client())
    assert (status, body) == (
        503,
        {"status": "unavailable", "database": "unavailable", "redis": "not configured"},
    )
    # The operator's log says what failed; the answer does not.
    assert "healthz: the database is unavailable (OperationalError)" in caplog.text
    assert str(missing) not in caplog.text


def test_an_unreachable_redis_is_named_and_nothing_else(app, caplog):
    app.config["REDIS_URL"] = f"redis://:hunter2-password@127.0.0.1:{closed_port()}/0"
    with caplog.at_level(logging.WARNING, logger="portal"):
        response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json == {"status": "unavailable", "database": "ok", "redis": "unavailable"}
    for secret in ("hunter2", "127.0.0.1", "redis://", "Error", "refused"):
        assert secret not in response.text
    assert "healthz: Redis is unavailable (ConnectionError)" in caplog.text
    assert "hunter2" not in caplog.text


@pytest.mark.settings(
    RATELIMIT_ENABLED=True,
    PORTAL_LIMIT_LOGIN_ADDRESS="1 per minute",
    PORTAL_LIMIT_VERIFY="1 per minute",
    PORTAL_LIMIT_ADMIN="1 per minute",
)
def test_a_balancer_may_ask_as_often_as_it_likes(client):
    for _ in range(20):
        assert probe(client)[0] == 200


def test_it_answers_get_only(client):
    assert client.post("/healthz").status_code == 405
    assert client.head("/healthz").status_code == 200
