"""Rate limits are shared by every gunicorn worker when REDIS_URL points at Redis.

A real gunicorn with two sync workers (``threads=1``) and a real ``redis-server`` on a
UNIX socket (tests/redis_server.py). Which worker accepts a connection is normally up to
the kernel, so these tests decide it: sign-in attempts go in pairs, and both requests of
a pair are sent without their final blank line. A sync worker serves one connection at a
time and waits for the rest of the request, so once the first connection has been
accepted the second can only be accepted by the other worker; the test waits (bounded)
until both are, checks in /proc that two different processes hold them, then completes
both. Every pair is therefore one password check on each worker.

With ``PORTAL_LIMIT_LOGIN_ADDRESS=6 per minute`` that makes the counts exact: with Redis,
three pairs (three checks per worker) fill the address's bucket and the fourth pair is
refused on both workers; without Redis each worker counts alone and lets six pairs (12
checks) through. The windows start at the first hit and last a minute; these tests take
a few seconds.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
import requests
from live_server import MemberSpec, run_server
from redis_server import redis_server  # noqa: F401  (fixture)
from worker_pairs import Attempt, request_pair

pytestmark = pytest.mark.server

PASSWORD = "correct horse battery staple"
WRONG_PASSWORD = "not the password at all"
LOGIN_ID = "alice"
LIMIT = 6
TIMEOUT = 20  # seconds, for every HTTP request and every wait below
TOO_MANY = "ログインの試行回数が多すぎます。"
WRONG = "ログインIDまたはパスワードが正しくありません。"
NO_REDIS_WARNING = "REDIS_URL is not set: rate limits are counted per worker process."

# Only the per-address bucket is under test: the account buckets (5 failures a minute by
# default) would otherwise refuse first.
LIMITS = {
    "PORTAL_LIMIT_LOGIN_ADDRESS": f"{LIMIT} per minute",
    "PORTAL_LIMIT_LOGIN_ACCOUNT_ADDRESS": "1000 per minute",
    "PORTAL_LIMIT_LOGIN_ACCOUNT": "1000 per minute",
}


def _sign_in_form(base: str) -> tuple[str, str]:
    """The Cookie header and the CSRF token of a fresh visit to /login."""
    with requests.Session() as http_session:
        page = http_session.get(f"{base}/login", timeout=TIMEOUT)
        assert page.status_code == 200, page.status_code
        match = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text)
        assert match, "page has no CSRF meta tag"
        cookie = "; ".join(f"{c.name}={c.value}" for c in http_session.cookies)
        assert cookie, "no session cookie"
        return cookie, match.group(1)


def attempt_pair(server, cookie: str, token: str, password: str) -> list[Attempt]:
    """One sign-in attempt on each of the two workers (see the module docstring)."""
    body = urlencode({"login_id": LOGIN_ID, "password": password, "csrf_token": token})
    head = (
        "POST /login HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\n"
        f"Cookie: {cookie}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body.encode())}\r\n"
        "Connection: close\r\n"
    ).encode()
    return request_pair(server, head, b"\r\n" + body.encode())


def assert_refused(attempt: Attempt) -> None:
    assert attempt.status == 429, (attempt.status, attempt.text[:500])
    assert 1 <= int(attempt.headers["Retry-After"]) <= 60, attempt.headers["Retry-After"]
    assert TOO_MANY in attempt.text
    assert 'name="password"' in attempt.text  # the form is still there


def assert_checked(attempt: Attempt) -> None:
    """The password was checked (and was wrong)."""
    assert attempt.status == 200, (attempt.status, attempt.text[:500])
    assert WRONG in attempt.text


def test_workers_share_the_limit_through_redis(tmp_path, redis_server):  # noqa: F811
    redis_server.flushall()
    environment = {"REDIS_URL": redis_server.url, **LIMITS}
    with run_server(
        tmp_path, [MemberSpec(LOGIN_ID, PASSWORD)], workers=2, threads=1, environment=environment
    ) as server:
        cookie, token = _sign_in_form(server.url)
        checked = [attempt_pair(server, cookie, token, WRONG_PASSWORD) for _ in range(LIMIT // 2)]
        # Even the right password is refused now, on both workers, although each has
        # counted only three checks itself.
        refused = attempt_pair(server, cookie, token, PASSWORD)
        log = server.log()

    pids = {attempt.pid for pair in checked for attempt in pair}
    assert len(pids) == 2, pids  # both workers checked passwords
    for pair in checked:
        for attempt in pair:
            assert_checked(attempt)
    assert {attempt.pid for attempt in refused} == pids
    for attempt in refused:
        assert_refused(attempt)

    # The counts live in Redis: the address's bucket holds every attempt of both workers,
    # refused ones included; the account's bucket the checked (failed) ones only.
    with redis_server.client() as client:
        address_key = f"LIMITS:LIMITER/login-address/127.0.0.1/{LIMIT}/1/minute"
        account_key = f"LIMITS:LIMITER/login-account/{LOGIN_ID}/1000/1/minute"
        assert client.get(address_key) == str(LIMIT + 2), client.keys()
        assert 0 < client.ttl(address_key) <= 60
        assert client.get(account_key) == str(LIMIT), client.keys()

    assert NO_REDIS_WARNING not in log
    assert "Traceback" not in log, log


def test_without_redis_each_worker_counts_alone(tmp_path):
    """Why REDIS_URL is needed: the same server lets twice the limit through."""
    with run_server(
        tmp_path, [MemberSpec(LOGIN_ID, PASSWORD)], workers=2, threads=1, environment=LIMITS
    ) as server:
        cookie, token = _sign_in_form(server.url)
        checked = [attempt_pair(server, cookie, token, WRONG_PASSWORD) for _ in range(LIMIT)]
        refused = attempt_pair(server, cookie, token, WRONG_PASSWORD)
        log = server.log()

    for pair in checked:
        for attempt in pair:
            assert_checked(attempt)  # 2 x LIMIT password checks from one address
    for attempt in refused:
        assert_refused(attempt)
    # The production start-up warning says so.
    assert NO_REDIS_WARNING in log, log
    assert "Traceback" not in log, log
