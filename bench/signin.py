"""Sign-in throughput and latency: N virtual users doing the whole flow against the
portal under gunicorn, next to what bounds it (argon2id, a bare Flask page).

    .venv/bin/python bench/signin.py                          # SQLite in /tmp, 8 users, 30 s
    .venv/bin/python bench/signin.py --database-url postgresql://bench@127.0.0.1:5433/signin
    .venv/bin/python bench/signin.py --with-redis --json /tmp/signin.json
    .venv/bin/python bench/signin.py --flows 10000            # memory after 10,000 sign-ins

One run, in this order:

1. Seed ``--members`` members with an authenticator app (direct inserts: one argon2id
   hash made with the portal's production parameters, each TOTP secret encrypted by the
   portal's own SecretBox), 10 recovery codes each, and the policy row.
2. Count one sign-in in-process (Flask test client, same configuration): database
   statements, writes and transaction ends (SQLAlchemy events), and with Redis its
   round trips and commands.
3. argon2id verifications/s with those parameters, in 2 processes (like 2 workers).
4. The portal under gunicorn (2 sync workers, PORTAL_ENV=production, rate limits on):
   warm-up, worker RSS, GET /login req/s; then the bare Flask page (``bare_app.py``,
   serving the portal's own /login HTML) with the same gunicorn settings.
5. The flows: ``--users`` threads, each flow from its own 127.x.y.z address and for a
   member not used before: GET /login, POST the password (CSRF token from the page),
   GET + POST the app code, GET / (the TOP page). Latency per step and per flow,
   flows/s, CPU per flow of the workers and of this client, worker RSS after.

Load on the machine is measured in every phase (``/proc/stat``): the cores used by the
portal, by this script and by everything else (the database server, other jobs), so a
noisy run says so. Exit status: 0 = both ratio goals met, 1 = a goal missed or a flow
failed, 2 = error.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import http.client
import json
import math
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

from benchlib import REPO, Progress, database_url, machine, redacted

GOAL_LOGIN_RATIO = 0.70  # GET /login req/s, portal / bare Flask page
GOAL_HASH_RATIO = 0.97  # sign-in flows/s / argon2id verifications/s
GOAL_DB_STATEMENTS = 8  # per flow
GOAL_DB_WRITES = 3
GOAL_REDIS_OPS = 4

DEFAULT_SQLITE = "sqlite:////tmp/portal-signin-bench.sqlite3"
PREFIX = "sb"  # login IDs sb0000001…: the script's own members
PASSWORD = "bench sign-in password, long enough"  # noqa: S105  (throwaway bench members)
# Fixed throwaway keys: the seeding process and the servers must agree on them.
SECRET_KEY = "bench-signin-secret-key-not-for-production-0123456789"  # noqa: S105
HMAC_KEY = "bench-signin-hmac-key-not-for-production-0123456789"
ENCRYPTION_KEY = base64.urlsafe_b64encode(hashlib.sha256(b"bench signin fernet").digest()).decode()
USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
STEPS = ("GET /login", "POST /login", "GET /login/verify", "POST /login/verify", "GET /")
CSRF_RE = re.compile(rb'<input[^>]*name="csrf_token"[^>]*>')
VALUE_RE = re.compile(rb'value="([^"]+)"')
SIGNED_IN_MARK = b'action="/logout"'
WRITE_VERBS = {"INSERT", "UPDATE", "DELETE", "REPLACE", "UPSERT"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help=f"default: $DATABASE_URL, else {DEFAULT_SQLITE}")
    parser.add_argument("--users", type=int, default=8, help="concurrent virtual users (8)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of flows (30)")
    parser.add_argument("--flows", type=int, help="run this many flows instead of --duration")
    parser.add_argument("--members", type=int, help="members to seed (20,000 or flows + 2,000)")
    parser.add_argument("--recovery-codes", type=int, default=10, help="per member (10)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed flows first (20)")
    parser.add_argument("--login-seconds", type=float, default=10.0, help="per GET /login run")
    parser.add_argument("--connections", type=int, default=16, help="for the GET /login runs")
    parser.add_argument("--argon2-seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (2)")
    parser.add_argument("--redis-url", help="share rate limits through this Redis")
    parser.add_argument(
        "--with-redis", action="store_true", help="start a throwaway redis-server for the run"
    )
    parser.add_argument(
        "--loader",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="GET /login load generator: wrk when installed (auto), or the Python one",
    )
    parser.add_argument(
        "--reset", action="store_true", help="wipe a database that holds other members"
    )
    parser.add_argument("--skip", default="", help="comma list of: login, argon2, flows, count")
    parser.add_argument(
        "--inprocess-flows", type=int, default=30, help="flows timed in-process (30)"
    )
    parser.add_argument("--profile", help="also profile --profile-flows flows in-process here")
    parser.add_argument("--profile-flows", type=int, default=100)
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--load-child", nargs=3, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# --- the members --------------------------------------------------------------------------


def login_id(n: int) -> str:
    return f"{PREFIX}{n:07d}"


def totp_secret(n: int) -> str:
    """Member n's authenticator secret (160 bits), derived so the client knows it too."""
    digest = hmac.new(b"bench signin totp", str(n).encode(), hashlib.sha1).digest()
    return base64.b32encode(digest).decode()


def totp_code(secret: str, step: int) -> str:
    import pyotp

    return pyotp.TOTP(secret).generate_otp(step)


def server_environment(url: str, port: int, instance: str, redis_url: str | None) -> dict:
    """What a deployment sets (see portal/config.py); everything else keeps its default:
    rate limits on, argon2-cffi's default parameters, HTTPS off (no TLS here)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PORTAL_", "MAIL_", "RATELIMIT"))
        and key not in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "PORT", "MAX_CONTENT_LENGTH")
    }
    env.update(
        PORTAL_ENV="production",
        SECRET_KEY=SECRET_KEY,
        PORTAL_ENCRYPTION_KEYS=ENCRYPTION_KEY,
        PORTAL_HMAC_KEY=HMAC_KEY,
        PORTAL_BASE_URL=f"http://localhost:{port}",
        PORTAL_INSTANCE_PATH=instance,
        DATABASE_URL=url,
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


@contextlib.contextmanager
def environment(env: dict) -> Iterator[None]:
    """``os.environ`` as the servers get it, while the portal builds its app in here."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def portal_app(env: dict):
    from portal import create_app

    with environment(env):
        return create_app()


def seed(app, count: int, codes: int, reset: bool) -> dict:
    """Members 1…count with an app (and recovery codes), through direct inserts."""
    from seed import prepare_schema
    from sqlalchemy import func, insert, inspect, select, text

    from portal import members
    from portal.extensions import db
    from portal.models import Member, RecoveryCode, TotpCredential
    from portal.twofactor import crypto
    from portal.twofactor import policy as policy_rules

    started = time.perf_counter()
    with app.app_context():
        if inspect(db.engine).has_table("member"):
            others = db.session.scalar(
                select(func.count()).select_from(Member).where(~Member.login_key.like(f"{PREFIX}%"))
            )
            db.session.rollback()
            if others and not reset:
                raise RuntimeError(
                    f"the database holds {others:,} members this script did not seed; "
                    "pass --reset to wipe it"
                )
        prepare_schema(argparse.Namespace(reset=True, create_all=False))
        password_hash = members.hash_password(PASSWORD)  # the production parameters
        box = crypto.secret_box()
        now = datetime.now(UTC)
        joined = datetime(2025, 4, 1, tzinfo=UTC)
        rng = random.Random(13)
        batch = 5000
        with db.engine.connect() as conn:
            for first in range(1, count + 1, batch):
                ids = range(first, min(first + batch, count + 1))
                member_rows = [
                    {
                        "id": n,
                        "login_id": login_id(n),
                        "login_key": login_id(n),
                        "name": f"会員 {n}",
                        "email": f"{login_id(n)}@example.jp",
                        "phone": "",
                        "password_hash": password_hash,
                        "is_operator": False,
                        "session_generation": 0,
                        "tfa_failures": 0,
                        "tfa_locked_until": None,
                        "last_second_step_at": joined,
                        "preferred_method": "app",
                        "created_at": joined,
                        "updated_at": joined,
                    }
                    for n in ids
                ]
                totp_rows = [
                    {
                        "member_id": n,
                        "secret_encrypted": box.encrypt(totp_secret(n)),
                        "last_step": 0,
                        "created_at": joined,
                        "last_used_at": None,
                    }
                    for n in ids
                ]
                code_rows = [
                    {
                        "member_id": n,
                        "code_hash": f"{rng.getrandbits(256):064x}",
                        "created_at": joined,
                        "used_at": None,
                    }
                    for n in ids
                    for _ in range(codes)
                ]
                with conn.begin():
                    conn.execute(insert(Member.__table__), member_rows)
                    conn.execute(insert(TotpCredential.__table__), totp_rows)
                    if code_rows:
                        conn.execute(insert(RecoveryCode.__table__), code_rows)
            if conn.dialect.name == "postgresql":
                with conn.begin():
                    conn.execute(
                        text("SELECT setval(pg_get_serial_sequence('member', 'id'), :n)"),
                        {"n": count},
                    )
        policy_rules.current(now)  # the policy row, as the first request would make it
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
        hasher = members.hasher()
        params = {
            "time_cost": hasher.time_cost,
            "memory_cost": hasher.memory_cost,
            "parallelism": hasher.parallelism,
            "hash_len": hasher.hash_len,
            "salt_len": hasher.salt_len,
        }
        db.session.remove()
    return {
        "members": count,
        "recovery_codes": count * codes,
        "seconds": round(time.perf_counter() - started, 1),
        "password_hash": password_hash,
        "argon2": params,
    }


class MemberPool:
    """Members handed out once each; when all were used, again from the first, each
    only in a time step after its last sign-in (a code is never replayed)."""

    def __init__(self, first: int, last: int):
        self.first, self.last, self.next = first, last, first
        self.lock = threading.Lock()
        self.used_step: dict[int, int] = {}
        self.reused = 0

    def take(self) -> int:
        with self.lock:
            n = self.next
            self.next = n + 1 if n < self.last else self.first
            if n in self.used_step:
                self.reused += 1
            return n

    def code_for(self, n: int) -> str:
        """A code of a time step this member has not used yet (waits for one if needed)."""
        while True:
            step = int(time.time()) // 30
            with self.lock:
                if self.used_step.get(n, -1) < step:
                    self.used_step[n] = step
                    return totp_code(totp_secret(n), step)
            time.sleep(0.5)


def address(k: int) -> str:
    """Flow k's own client address: 127.c.b.a, never 127.0.0.x."""
    a = k % 254 + 1
    b = (k // 254) % 256
    c = (k // (254 * 256)) % 250 + 2
    return f"127.{c}.{b}.{a}"


# --- counting one flow in-process ---------------------------------------------------------


class Counter:
    """Database statements and transaction ends (SQLAlchemy events) and Redis round trips
    and commands (redis-py's connection), per step."""

    def __init__(self, engine):
        self.engine = engine
        self.step = "-"
        self.counts: dict[str, dict[str, int]] = {}
        self.statements: dict[str, list[str]] = {}

    def _add(self, key: str, n: int = 1) -> None:
        bucket = self.counts.setdefault(self.step, {})
        bucket[key] = bucket.get(key, 0) + n

    def _statement(self, conn, cursor, statement, parameters, context, executemany):
        verb = statement.lstrip().split(None, 1)[0].upper()
        self._add("statements")
        if verb in WRITE_VERBS:
            self._add("writes")
        self.statements.setdefault(self.step, []).append(" ".join(statement.split())[:160])

    def _commit(self, conn):
        self._add("commits")

    def _rollback(self, conn):
        self._add("rollbacks")

    def _reset(self, dbapi_connection, record, state=None):
        # A connection going back to the pool in a transaction is rolled back there.
        import sqlite3

        if isinstance(dbapi_connection, sqlite3.Connection):
            open_transaction = dbapi_connection.in_transaction
        else:
            open_transaction = getattr(dbapi_connection.info, "transaction_status", 0) != 0
        if open_transaction:
            self._add("rollbacks")

    @contextlib.contextmanager
    def listening(self) -> Iterator[Counter]:
        from sqlalchemy import event

        hooks = [
            (self.engine, "before_cursor_execute", self._statement),
            (self.engine, "commit", self._commit),
            (self.engine, "rollback", self._rollback),
            (self.engine.pool, "reset", self._reset),
        ]
        for target, name, fn in hooks:
            event.listen(target, name, fn)
        restore = self._patch_redis()
        try:
            yield self
        finally:
            restore()
            for target, name, fn in hooks:
                event.remove(target, name, fn)

    def _patch_redis(self):
        """Round trips: each packed command or pipeline redis-py sends."""
        try:
            from redis.connection import AbstractConnection
        except ImportError:
            return lambda: None
        send = AbstractConnection.send_packed_command
        counter = self

        def send_packed_command(conn, command, check_health=True):
            counter._add("redis_round_trips")
            return send(conn, command, check_health)

        AbstractConnection.send_packed_command = send_packed_command

        def restore():
            AbstractConnection.send_packed_command = send

        return restore

    def totals(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for step in STEPS:
            for key, n in self.counts.get(step, {}).items():
                total[key] = total.get(key, 0) + n
        return total


class TestBrowser:
    """One flow through the Flask test client, from its own address."""

    def __init__(self, app, source: str):
        self.client = app.test_client()
        self.client.environ_base.update(REMOTE_ADDR=source, HTTP_USER_AGENT=USER_AGENT)

    def request(self, method: str, path: str, data: dict | None = None):
        response = self.client.open(path, method=method, data=data)
        return response.status_code, response.headers.get("Location", ""), response.get_data()


def flow_in_process(app, pool: MemberPool, k: int, counter: Counter | None = None) -> None:
    browser = TestBrowser(app, address(k))
    run_flow(browser, pool, pool.take(), counter=counter)


def count_flows(app, pool: MemberPool, redis_url: str | None) -> dict:
    """Statements per step of one flow after a warm-up flow (and a second to confirm)."""
    from portal.extensions import db

    with app.app_context():
        engine = db.engine
    flow_in_process(app, pool, 10_000_000)  # warm-up: first requests of a process
    results, commands = [], None
    for k in (10_000_001, 10_000_002):
        before = redis_commandstats(redis_url) if redis_url else {}
        counter = Counter(engine)
        with counter.listening():
            flow_in_process(app, pool, k, counter)
        results.append(counter)
        if redis_url and commands is None:
            after = redis_commandstats(redis_url)
            commands = {
                name: calls - before.get(name, 0)
                for name, calls in sorted(after.items())
                if calls > before.get(name, 0) and name != "info"
            }
    counter = results[0]
    totals = counter.totals()
    return {
        "per_step": {step: counter.counts.get(step, {}) for step in STEPS},
        "statements": totals.get("statements", 0),
        "writes": totals.get("writes", 0),
        "commits": totals.get("commits", 0),
        "rollbacks": totals.get("rollbacks", 0),
        "redis_round_trips": totals.get("redis_round_trips", 0) if redis_url else None,
        # Server side (INFO commandstats): commands run inside a script count as well.
        "redis_commands": commands,
        "statement_text": counter.statements,
        "stable": results[0].totals() == results[1].totals(),
    }


class TimedBrowser(TestBrowser):
    """The test client, noting the CPU time (of this process) each request takes."""

    def __init__(self, app, source: str, times: dict[str, list[float]]):
        super().__init__(app, source)
        self.times = times

    def request(self, method: str, path: str, data: dict | None = None):
        started = time.process_time()
        try:
            return super().request(method, path, data)
        finally:
            self.times.setdefault(f"{method} {path}", []).append(time.process_time() - started)


def time_in_process(app, pool: MemberPool, flows: int) -> dict:
    """CPU per step of ``flows`` in-process flows (median), and what one sign-in costs
    besides its argon2id verification (timed inside the requests): the server's work
    that is not the hash, without HTTP, gunicorn or the client."""
    from argon2 import PasswordHasher

    times: dict[str, list[float]] = {}
    hashing: list[float] = []
    verify = PasswordHasher.verify

    def timed_verify(self, hash, password):  # noqa: A002  (argon2-cffi's own names)
        started = time.process_time()
        try:
            return verify(self, hash, password)
        finally:
            hashing.append(time.process_time() - started)

    PasswordHasher.verify = timed_verify
    try:
        for k in range(flows):
            run_flow(TimedBrowser(app, address(30_000_000 + k), times), pool, pool.take())
    finally:
        PasswordHasher.verify = verify
    steps = {step: statistics.median(times[step]) * 1000 for step in STEPS}
    total = sum(sum(v) for v in times.values()) / flows * 1000
    hash_ms = sum(hashing) / flows * 1000
    return {
        "flows": flows,
        "steps_cpu_ms": {step: round(ms, 2) for step, ms in steps.items()},
        "argon2_cpu_ms": round(hash_ms, 1),
        "besides_hash_ms": round(total - hash_ms, 2),
    }


# --- the flow over HTTP -------------------------------------------------------------------


class HttpBrowser:
    """A minimal browser: its own source address, cookies, no redirects followed.

    gunicorn's sync workers close every connection after the answer, so each request
    opens a new one, as each of a browser's would against this server."""

    def __init__(self, host: str, port: int, source: str):
        self.host, self.port, self.source = host, port, source
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, data: dict | None = None):
        conn = http.client.HTTPConnection(
            self.host, self.port, timeout=120, source_address=(self.source, 0)
        )
        headers = {
            "User-Agent": USER_AGENT,
            "Accept": "text/html,application/xhtml+xml",
            "Accept-Language": "ja,en;q=0.8",
        }
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if data is not None:
            body = urlencode(data)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            content = response.read()
            for raw in response.headers.get_all("Set-Cookie") or ():
                name, _, rest = raw.partition("=")
                value = rest.split(";", 1)[0]
                if (
                    not value
                    or "max-age=0" in rest.lower()
                    or "expires=thu, 01 jan 1970" in (rest.lower())
                ):
                    self.cookies.pop(name.strip(), None)
                else:
                    self.cookies[name.strip()] = value
            return response.status, response.headers.get("Location", ""), content
        finally:
            conn.close()


class FlowError(Exception):
    def __init__(self, step: str, detail: str):
        super().__init__(f"{step}: {detail}")
        self.step = step


def _csrf(step: str, body: bytes) -> str:
    tag = CSRF_RE.search(body)
    value = VALUE_RE.search(tag[0]) if tag else None
    if value is None:
        raise FlowError(step, "no CSRF token in the page")
    return value[1].decode()


def run_flow(browser, pool: MemberPool, n: int, counter: Counter | None = None) -> list[float]:
    """The five steps for member n; the seconds each took. Raises FlowError."""
    times: list[float] = []

    def step(name: str, method: str, path: str, data=None, expect=200, location=None):
        if counter is not None:
            counter.step = name
        started = time.perf_counter()
        status, where, body = browser.request(method, path, data)
        times.append(time.perf_counter() - started)
        if status != expect:
            raise FlowError(name, f"status {status}, expected {expect}")
        if location is not None and not where.endswith(location):
            raise FlowError(name, f"redirected to {where!r}, expected {location!r}")
        return body

    page = step("GET /login", "GET", "/login")
    form = {"login_id": login_id(n), "password": PASSWORD, "csrf_token": _csrf(STEPS[0], page)}
    step("POST /login", "POST", "/login", form, 302, "/login/verify")
    page = step("GET /login/verify", "GET", "/login/verify")
    form = {"code": pool.code_for(n), "csrf_token": _csrf(STEPS[2], page)}
    step("POST /login/verify", "POST", "/login/verify", form, 302, "/")
    top = step("GET /", "GET", "/")
    if SIGNED_IN_MARK not in top:
        raise FlowError("GET /", "not the signed-in TOP page")
    return times


@dataclass
class FlowRun:
    samples: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STEPS})
    flows: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    error_examples: list[str] = field(default_factory=list)
    seconds: float = 0.0


def drive_flows(
    host: str,
    port: int,
    pool: MemberPool,
    users: int,
    *,
    duration: float | None = None,
    flows: int | None = None,
    first_address: int = 0,
    progress: bool = False,
    sample: Callable[[int], None] | None = None,
) -> FlowRun:
    """``users`` threads doing flows until ``duration`` ends or ``flows`` were started;
    ``sample(completed)`` is called every 30 s meanwhile (and once at the end)."""
    run = FlowRun()
    lock = threading.Lock()
    started = time.perf_counter()
    deadline = started + duration if duration is not None else math.inf
    taken = [0]
    last_sample = [started]
    bar = Progress(flows, "flows") if progress and flows else None

    def user() -> None:
        while True:
            with lock:
                if time.perf_counter() >= deadline or (flows is not None and taken[0] >= flows):
                    return
                k = first_address + taken[0]
                taken[0] += 1
            browser = HttpBrowser(host, port, address(k))
            n = pool.take()
            flow_started = time.perf_counter()
            try:
                times = run_flow(browser, pool, n)
            except (FlowError, OSError, http.client.HTTPException) as exc:
                step = exc.step if isinstance(exc, FlowError) else "connection"
                with lock:
                    run.errors[step] = run.errors.get(step, 0) + 1
                    if len(run.error_examples) < 5:
                        run.error_examples.append(f"{login_id(n)} {exc}")
                continue
            with lock:
                run.flows.append(time.perf_counter() - flow_started)
                for name, seconds in zip(STEPS, times, strict=True):
                    run.samples[name].append(seconds)
            if bar is not None:
                bar.update(1)

    threads = [threading.Thread(target=user, daemon=True) for _ in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(timeout=1.0)
            if sample is not None and time.perf_counter() - last_sample[0] >= 30:
                last_sample[0] = time.perf_counter()
                sample(len(run.flows))
    run.seconds = time.perf_counter() - started
    if sample is not None:
        sample(len(run.flows))
    if bar is not None:
        bar.close()
    return run


def percentiles(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    if not s:
        return {"n": 0}

    def rank(p: float) -> float:  # nearest rank
        return s[max(math.ceil(p * len(s)) - 1, 0)] * 1000

    return {
        "n": len(s),
        "p50_ms": rank(0.50),
        "p95_ms": rank(0.95),
        "p99_ms": rank(0.99),
        "max_ms": s[-1] * 1000,
    }


# --- servers ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    """gunicorn with explicit settings (no gunicorn.conf.py is read: the portal and the
    bare page get exactly the same ones)."""

    def __init__(self, app: str, port: int, env: dict, workers: int, pythonpath: str, log: Path):
        self.port, self.log = port, log
        self.command = [
            str(Path(sys.executable).with_name("gunicorn")),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            "sync",
            "--log-level",
            "warning",
            "--pythonpath",
            pythonpath,
            app,
        ]
        self.env, self.workers = env, workers
        self.process: subprocess.Popen | None = None

    def start(self, cwd: str) -> Gunicorn:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log.read_text()[-2000:]}")
            try:
                status, _, _ = HttpBrowser("127.0.0.1", self.port, "127.0.0.1").request(
                    "GET", "/login"
                )
                if status == 200 and len(self.worker_pids()) == self.workers:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer: {self.log.read_text()[-2000:]}")

    def worker_pids(self) -> list[int]:
        try:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            return sorted(int(p) for p in children.read_text().split())
        except (OSError, AttributeError):
            return []

    def rss_mib(self) -> dict[int, float]:
        return {pid: status_kib(pid, "VmRSS") / 1024 for pid in self.worker_pids()}

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def status_kib(pid: int, name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """user + system CPU of a process (all its threads) so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already inside user
    tick = os.sysconf("SC_CLK_TCK")
    return (total - idle) / tick, total / tick


class LoadMeter:
    """Cores used during a phase: the whole machine, the servers, the database and Redis
    servers (when local and known), this script, and the rest (other jobs)."""

    def __init__(self, server_pids: list[int], service_pids: list[int] = ()):
        self.server_pids, self.service_pids = server_pids, list(service_pids)

    def __enter__(self) -> LoadMeter:
        self.t0 = time.perf_counter()
        self.busy0, _ = machine_busy()
        self.server0 = sum(cpu_seconds(p) for p in self.server_pids)
        self.service0 = {p: cpu_seconds(p) for p in self.service_pids}
        self.client0 = cpu_seconds(os.getpid())
        self.loadavg0 = os.getloadavg()
        self.extra = 0.0  # CPU of a load generator child, added by the caller
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.t0
        busy, _ = machine_busy()
        self.busy = busy - self.busy0
        self.server = sum(cpu_seconds(p) for p in self.server_pids) - self.server0
        # A process that ended meanwhile counts nothing (rather than minus its past).
        self.service = sum(max(cpu_seconds(p) - t, 0) for p, t in self.service0.items())
        self.client = cpu_seconds(os.getpid()) - self.client0

    def report(self) -> dict:
        wall = max(self.wall, 1e-9)
        client = self.client + self.extra
        rest = self.busy - self.server - self.service - client
        return {
            "seconds": round(self.wall, 2),
            "loadavg_before": [round(v, 2) for v in self.loadavg0],
            "machine_cores": round(self.busy / wall, 2),
            "server_cores": round(self.server / wall, 2),
            "services_cores": round(self.service / wall, 2),
            "client_cores": round(client / wall, 2),
            "other_cores": round(max(rest, 0) / wall, 2),
            "server_cpu_s": round(self.server, 3),
            "services_cpu_s": round(self.service, 3),
            "client_cpu_s": round(client, 3),
        }


def service_pids(app, redis_process: subprocess.Popen | None) -> list[int]:
    """The local PostgreSQL backends of this database (the workers' connections) and the
    redis-server this script started: their CPU is part of the sign-in's cost."""
    from portal.extensions import db

    pids = [redis_process.pid] if redis_process is not None else []
    with app.app_context():
        if db.engine.dialect.name == "postgresql" and db.engine.url.host in (
            "127.0.0.1",
            "localhost",
            "::1",
            None,
        ):
            pids += db.session.scalars(
                db.text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()"
                )
            ).all()
            db.session.rollback()
        db.session.remove()
    return [p for p in pids if Path(f"/proc/{p}").exists()]


def start_redis(folder: Path) -> tuple[subprocess.Popen, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("--with-redis: redis-server is not installed (scripts/ensure-redis.sh)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return process, url
        time.sleep(0.05)
    process.terminate()
    raise RuntimeError("redis-server did not start")


def redis_commandstats(url: str) -> dict[str, int]:
    import redis

    with redis.Redis.from_url(url) as client:
        stats = client.info("commandstats")
    return {key.removeprefix("cmdstat_"): value["calls"] for key, value in stats.items()}


def redis_version(url: str) -> str:
    import redis

    with redis.Redis.from_url(url) as client:
        return client.info("server")["redis_version"]


# --- GET /login load ----------------------------------------------------------------------


def load_child(url: str, seconds: float, connections: int) -> int:
    """The Python load generator (run as a child process): ``connections`` threads, each
    opening a connection per request from its own 127.x address, as wrk would."""
    host_port = url.split("//", 1)[1].split("/", 1)
    host, port = host_port[0].split(":")
    path = "/" + (host_port[1] if len(host_port) > 1 else "")
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: {USER_AGENT}\r\n"
        "Accept: text/html\r\nAccept-Language: ja\r\nConnection: close\r\n\r\n"
    ).encode()
    counts = {"ok": 0, "errors": 0}
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker(i: int) -> None:
        source = f"127.250.{i // 250}.{i % 250 + 1}"
        ok = errors = 0
        while time.perf_counter() < deadline:
            try:
                with socket.socket() as s:
                    s.bind((source, 0))
                    s.connect((host, int(port)))
                    s.sendall(request)
                    first = s.recv(65536)
                    while s.recv(65536):
                        pass
                if first.startswith(b"HTTP/1.1 200"):
                    ok += 1
                else:
                    errors += 1
            except OSError:
                errors += 1
        with lock:
            counts["ok"] += ok
            counts["errors"] += errors

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    cpu = sum(os.times()[:2])
    print(json.dumps(counts | {"seconds": wall, "cpu_s": cpu}))
    return 0


def get_rate(url: str, seconds: float, connections: int, loader: str, meter: LoadMeter) -> dict:
    """Requests/s of GET ``url``: wrk, or the Python generator above."""
    if loader == "wrk":
        command = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds:g}s", url]
        started = cpu_seconds_children()
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        meter.extra += cpu_seconds_children() - started
        rate = float(re.search(r"Requests/sec:\s*([\d.]+)", output)[1])
        total = int(re.search(r"(\d+) requests in", output)[1])
        bad = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
        sock = re.search(r"Socket errors: (.*)", output)
        return {
            "req_s": rate,
            "requests": total,
            "errors": int(bad[1]) if bad else 0,
            "socket_errors": sock[1] if sock else "",
            "loader": "wrk",
        }
    command = [
        sys.executable,
        __file__,
        "--load-child",
        url,
        str(seconds),
        str(connections),
    ]
    result = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    meter.extra += result["cpu_s"]
    return {
        "req_s": result["ok"] / result["seconds"],
        "requests": result["ok"],
        "errors": result["errors"],
        "loader": "python",
    }


def cpu_seconds_children() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- argon2id -----------------------------------------------------------------------------


def _argon2_worker(encoded: str, params: dict, seconds: float) -> tuple[int, float, float]:
    from argon2 import PasswordHasher

    hasher = PasswordHasher(**params)
    count = 0
    started, cpu0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        hasher.verify(encoded, PASSWORD)
        count += 1
    return count, time.perf_counter() - started, time.process_time() - cpu0


def argon2_rate(encoded: str, params: dict, seconds: float, processes: int) -> dict:
    with ProcessPoolExecutor(processes) as pool:
        list(pool.map(_argon2_worker, [encoded] * processes, [params] * processes, [0.3] * 2))
        results = list(
            pool.map(_argon2_worker, [encoded] * processes, [params] * processes, [seconds] * 2)
        )
    count = sum(r[0] for r in results)
    wall = max(r[1] for r in results)
    cpu = sum(r[2] for r in results)
    return {
        "verifications_s": count / wall,
        "verifications": count,
        "processes": processes,
        "cpu_ms_each": cpu / count * 1000,
        "cpu_s": cpu,
        "params": params,
    }


# --- profile ------------------------------------------------------------------------------


def profile_flows(app, pool: MemberPool, flows: int, path: str) -> list[str]:
    """cProfile of ``flows`` in-process flows: the top functions by own time, and the
    argon2 share of all of it."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for k in range(flows):
        flow_in_process(app, pool, 20_000_000 + k)
    profiler.disable()
    profiler.dump_stats(path)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(40)
    return out.getvalue().splitlines()


# --- report -------------------------------------------------------------------------------


def versions(url: str, app, redis_url: str | None, loader: str) -> dict:
    from importlib.metadata import version

    from portal.extensions import db

    with app.app_context():
        dialect = db.engine.dialect
        if dialect.name == "sqlite":
            import sqlite3

            database = f"SQLite {sqlite3.sqlite_version}"
        else:
            raw = db.session.scalar(db.text("SHOW server_version"))
            database = f"PostgreSQL {raw}"
            db.session.rollback()
        db.session.remove()
    out = {
        "database": database,
        "database_url": redacted(url),
        "flask": version("flask"),
        "sqlalchemy": version("sqlalchemy"),
        "gunicorn": version("gunicorn"),
        "argon2_cffi": version("argon2-cffi"),
        "loader": loader,
    }
    if redis_url:
        out["redis"] = redis_version(redis_url)
    if loader == "wrk":
        run = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
        out["wrk"] = (run.stdout or run.stderr).split("\n", 1)[0].strip()
    return out


def git_head() -> str:
    run = subprocess.run(
        ["git", "-C", str(REPO), "log", "-1", "--format=%h %s"], capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "portal"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return run.stdout.strip()[:80] + (" (portal/ modified)" if dirty else "")


def print_load(name: str, load: dict, server: str = "server") -> None:
    services = load.get("services_cores")
    print(
        f"  load during {name}: machine {load['machine_cores']:.2f} cores busy = {server} "
        f"{load['server_cores']:.2f}"
        + (f" + database/Redis servers {services:.2f}" if services else "")
        + f" + bench client {load['client_cores']:.2f} + other "
        f"{load['other_cores']:.2f}; loadavg before "
        + " ".join(f"{v:.2f}" for v in load["loadavg_before"])
    )


def print_report(result: dict) -> None:
    env, count = result["environment"], result.get("count")
    print(f"\n== Sign-in benchmark, {result['date']}  ({result['portal_commit']})")
    print(f"Machine:  {env['machine']}")
    print(
        f"Software: {env['database']}, Flask {env['flask']}, SQLAlchemy {env['sqlalchemy']}, "
        f"gunicorn {env['gunicorn']} ({result['workers']} sync workers), argon2-cffi "
        f"{env['argon2_cffi']}" + (f", Redis {env['redis']}" if env.get("redis") else "")
    )
    print(f"Database: {env['database_url']}; rate limits in {result['limits_storage']}")
    seeded = result["seed"]
    print(
        f"Seeded:   {seeded['members']:,} members with an app, {seeded['recovery_codes']:,} "
        f"recovery codes ({seeded['seconds']} s)"
    )
    a2 = result.get("argon2")
    if a2:
        p = a2["params"]
        print(
            f"\nargon2id t={p['time_cost']} m={p['memory_cost']} KiB p={p['parallelism']}, "
            f"{a2['processes']} processes: {a2['verifications_s']:.2f} verifications/s "
            f"({a2['cpu_ms_each']:.0f} ms CPU each)"
        )
        print_load("argon2", a2["load"], "argon2 processes")
    login = result.get("login")
    if login:
        portal, bare = login["portal"], login["bare"]
        print(
            f"\nGET /login ({portal['loader']}, {login['connections']} connections, "
            f"{login['seconds']:g} s each; {login['portal_bytes']:,} / {login['bare_bytes']:,} "
            "bytes)"
        )
        for name, run in (("portal", portal), ("bare Flask", bare)):
            print(
                f"  {name:<10} {run['req_s']:>8,.0f} req/s  ({run['requests']:,} requests, "
                f"{run['errors']} errors; server {run['load']['server_cores']:.2f} cores, "
                f"{run['server_cpu_ms']:.2f} ms CPU per request)"
            )
            print_load(name, run["load"])
        cost = bare["server_cpu_ms"] / max(portal["server_cpu_ms"], 1e-9)
        print(f"  server CPU per request, bare / portal: {cost:.1%} (what the ratio would be "
              "with the servers alone on the cores)")  # fmt: skip
    flows = result.get("flows")
    if flows:
        print(
            f"\nFlows: {flows['users']} users, {flows['completed']:,} completed in "
            f"{flows['seconds']:.1f} s = {flows['flows_s']:.2f} flows/s; errors "
            f"{flows['errors'] or 0}; members reused {flows['members_reused']}"
        )
        for example in flows["error_examples"]:
            print(f"  error: {example}")
        print(f"  {'step':<20} {'n':>6} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}  ms")
        for name, st in [*flows["steps"].items(), ("whole flow", flows["flow"])]:
            if st["n"]:
                print(
                    f"  {name:<20} {st['n']:>6} {st['p50_ms']:>8.1f} {st['p95_ms']:>8.1f} "
                    f"{st['p99_ms']:>8.1f} {st['max_ms']:>8.1f}"
                )
        per = flows["cpu_ms_per_flow"]
        split = (
            f" (argon2 about {per['argon2']:.0f} ms, the rest {per['server_rest']:.1f} ms)"
            if per["argon2"]
            else ""
        )
        print(
            f"  CPU per flow: portal workers {per['server']:.1f} ms{split}, database/Redis "
            f"servers {per['services']:.1f} ms, bench client {per['client']:.1f} ms"
            + (f": the hash is {per['hash_share']:.1%} of it" if per["argon2"] else "")
        )
        print_load("flows", flows["load"])
        if flows.get("redis_per_flow") is not None:
            print(
                "  Redis commands per flow (server commandstats): "
                + ", ".join(f"{k} {v:.2f}" for k, v in flows["redis_per_flow"].items())
            )
    memory = result.get("memory")
    if memory:
        print("\nWorker RSS (MiB):")
        for label in ("after_warmup", "before_flows", "after_flows"):
            shown = ", ".join(f"{v:.1f}" for v in memory[label])
            print(f"  {label.replace('_', ' '):<14} {shown}")
        print(
            f"  growth over {memory['flows']:,} flows: "
            + ", ".join(f"{g:+.1f}" for g in memory["growth"])
        )
        series = memory.get("series", [])
        if len(series) > 2:
            step = max(len(series) // 10, 1)
            shown = series[::step] + ([series[-1]] if (len(series) - 1) % step else [])
            points = [f"{row[0]:,}: " + "/".join(f"{v:.1f}" for v in row[1:]) for row in shown]
            print("  along the way (flows: MiB each): " + "; ".join(points))
    if count:
        print("\nPer flow, counted in-process (one flow after a warm-up):")
        print(f"  {'step':<20} {'stmts':>6} {'writes':>7} {'commits':>8} {'rollbacks':>10}")
        for step, c in count["per_step"].items():
            print(
                f"  {step:<20} {c.get('statements', 0):>6} {c.get('writes', 0):>7} "
                f"{c.get('commits', 0):>8} {c.get('rollbacks', 0):>10}"
                + (
                    f"   redis {c.get('redis_round_trips', 0)} round trips"
                    if count["redis_round_trips"] is not None
                    else ""
                )
            )
        print(
            f"  {'whole flow':<20} {count['statements']:>6} {count['writes']:>7} "
            f"{count['commits']:>8} {count['rollbacks']:>10}"
        )
        if count["redis_round_trips"] is not None:
            shown = ", ".join(f"{k} {v}" for k, v in count["redis_commands"].items())
            print(
                f"  Redis: {count['redis_round_trips']} round trips; commands run (commandstats, "
                f"script internals included): {shown}"
            )
    timed = result.get("in_process")
    if timed:
        shown = ", ".join(f"{step} {ms:.2f}" for step, ms in timed["steps_cpu_ms"].items())
        print(
            f"\nCPU per step in-process (median of {timed['flows']} flows, ms): {shown}\n"
            f"  one sign-in (mean) besides its argon2id verification "
            f"({timed['argon2_cpu_ms']:.0f} ms): "
            f"{timed['besides_hash_ms']:.1f} ms, so at best "
            f"{timed['argon2_cpu_ms'] / (timed['argon2_cpu_ms'] + timed['besides_hash_ms']):.1%}"
            " of the hash rate without HTTP, gunicorn and the client"
        )
    print("\nGoals:")
    for goal in result["goals"]:
        print(
            f"  {goal['name']:<44} {goal['value']:>10} (goal {goal['goal']})  "
            f"{'ok' if goal['met'] else 'MISSED'}"
        )


def goals(result: dict) -> list[dict]:
    out = []

    def add(name: str, value, shown: str, goal: str, met: bool) -> None:
        out.append({"name": name, "value": shown, "raw": value, "goal": goal, "met": met})

    login, flows, a2, count = (result.get(k) for k in ("login", "flows", "argon2", "count"))
    if login:
        ratio = login["portal"]["req_s"] / login["bare"]["req_s"]
        add("GET /login, portal / bare Flask", ratio, f"{ratio:.1%}", ">= 70 %", ratio >= 0.7)
    if flows and a2:
        ratio = flows["flows_s"] / a2["verifications_s"]
        name = "sign-in flows/s / argon2id verifications/s"
        add(name, ratio, f"{ratio:.1%}", ">= 97 %", ratio >= 0.97)
    if count:
        add("database statements per flow", count["statements"], str(count["statements"]),
            f"<= {GOAL_DB_STATEMENTS}", count["statements"] <= GOAL_DB_STATEMENTS)  # fmt: skip
        add("database writes per flow", count["writes"], str(count["writes"]),
            f"<= {GOAL_DB_WRITES}", count["writes"] <= GOAL_DB_WRITES)  # fmt: skip
        if count["redis_round_trips"] is not None:
            trips = count["redis_round_trips"]
            add("Redis round trips per flow", trips, str(trips), f"<= {GOAL_REDIS_OPS}",
                trips <= GOAL_REDIS_OPS)  # fmt: skip
    return out


# --- main ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.load_child:
        url, seconds, connections = args.load_child
        return load_child(url, float(seconds), int(connections))
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    raw_url = args.database_url or os.environ.get("DATABASE_URL") or DEFAULT_SQLITE
    url = database_url(raw_url)
    loader = args.loader
    if loader == "auto":
        loader = "wrk" if shutil.which("wrk") else "python"
    members = args.members or max(20_000, (args.flows or 0) + 2_000)
    workdir = Path(tempfile.mkdtemp(prefix="signin-bench-"))
    redis_process = None
    servers: list[Gunicorn] = []
    result: dict = {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "portal_commit": git_head(),
        "users": args.users,
        "workers": args.workers,
    }
    try:
        redis_url = args.redis_url
        if args.with_redis:
            redis_process, redis_url = start_redis(workdir)
        port = free_port()
        env = server_environment(url, port, str(workdir / "instance"), redis_url)
        app = portal_app(env)
        storage = app.config["RATELIMIT_STORAGE_URI"]
        result["limits_storage"] = "memory (per worker)" if storage == "memory://" else storage
        result["environment"] = {"machine": machine()} | versions(url, app, redis_url, loader)
        print(f"Seeding {members:,} members into {redacted(url)} …", file=sys.stderr)
        result["seed"] = seed(app, members, args.recovery_codes, args.reset)
        encoded = result["seed"].pop("password_hash")
        # The last members are for the in-process count and profile; the rest for HTTP.
        reserve = 3 + args.inprocess_flows + (args.profile_flows if args.profile else 0)
        pool = MemberPool(1, members - reserve)
        side_pool = MemberPool(members - reserve + 1, members)
        if "count" not in skip:
            print("Counting one flow in-process …", file=sys.stderr)
            result["count"] = count_flows(app, side_pool, redis_url)
            if args.inprocess_flows:
                result["in_process"] = time_in_process(app, side_pool, args.inprocess_flows)
        if args.profile:
            print(f"Profiling {args.profile_flows} flows in-process …", file=sys.stderr)
            result["profile"] = profile_flows(app, side_pool, args.profile_flows, args.profile)
        if "argon2" not in skip:
            print(f"argon2id for {args.argon2_seconds:g} s …", file=sys.stderr)
            with LoadMeter([]) as meter:
                a2 = argon2_rate(encoded, result["seed"]["argon2"], args.argon2_seconds, 2)
            meter.server = a2["cpu_s"]  # the pool's processes are the server here
            a2["load"] = meter.report()
            result["argon2"] = a2

        portal = Gunicorn("wsgi:app", port, env, args.workers, str(REPO), workdir / "portal.log")
        servers.append(portal.start(str(workdir)))
        print("Portal up; warming up …", file=sys.stderr)
        warm = drive_flows("127.0.0.1", port, pool, args.users, flows=args.warmup)
        if warm.errors:
            raise RuntimeError(f"warm-up flows failed: {warm.error_examples}")
        memory = {"after_warmup": list(portal.rss_mib().values())}
        first_address = args.warmup

        if "login" not in skip:
            page = HttpBrowser("127.0.0.1", port, "127.0.0.1").request("GET", "/login")[2]
            (workdir / "login.html").write_bytes(page)
            login: dict = {
                "seconds": args.login_seconds,
                "connections": args.connections,
                "portal_bytes": len(page),
            }
            with LoadMeter(portal.worker_pids(), service_pids(app, redis_process)) as meter:
                rate = get_rate(
                    f"http://127.0.0.1:{port}/login",
                    args.login_seconds,
                    args.connections,
                    loader,
                    meter,
                )
            login["portal"] = rate | {"load": meter.report()}
            bare_port = free_port()
            bare_env = dict(env) | {"BENCH_BARE_PAGE": str(workdir / "login.html")}
            bare = Gunicorn(
                "bare_app:app",
                bare_port,
                bare_env,
                args.workers,
                str(REPO / "bench"),
                workdir / "bare.log",
            )
            servers.append(bare.start(str(workdir)))
            login["bare_bytes"] = len(
                HttpBrowser("127.0.0.1", bare_port, "127.0.0.1").request("GET", "/login")[2]
            )
            with LoadMeter(bare.worker_pids()) as meter:
                rate = get_rate(
                    f"http://127.0.0.1:{bare_port}/login",
                    args.login_seconds,
                    args.connections,
                    loader,
                    meter,
                )
            login["bare"] = rate | {"load": meter.report()}
            bare.stop()
            for run in (login["portal"], login["bare"]):
                run["server_cpu_ms"] = run["load"]["server_cpu_s"] / max(run["requests"], 1) * 1000
            result["login"] = login

        if "flows" not in skip:
            memory["before_flows"] = list(portal.rss_mib().values())
            redis_before = redis_commandstats(redis_url) if redis_url else None
            how = f"{args.flows:,} flows" if args.flows else f"{args.duration:g} s"
            print(f"Flows: {args.users} users, {how} …", file=sys.stderr)
            rss_series: list[list[float]] = []

            def sample_rss(completed: int) -> None:
                # A worker in the middle of a hash holds 64 MiB more: the least of a
                # second's readings is the worker between requests.
                readings = []
                for _ in range(20):
                    readings.append(list(portal.rss_mib().values()))
                    time.sleep(0.05)
                rss_series.append([completed, *(min(col) for col in zip(*readings, strict=False))])

            with LoadMeter(portal.worker_pids(), service_pids(app, redis_process)) as meter:
                run = drive_flows(
                    "127.0.0.1",
                    port,
                    pool,
                    args.users,
                    duration=None if args.flows else args.duration,
                    flows=args.flows,
                    first_address=first_address,
                    progress=bool(args.flows),
                    sample=sample_rss,
                )
            memory["after_flows"] = list(portal.rss_mib().values())
            completed = len(run.flows)
            load = meter.report()
            per_flow = {
                "server": load["server_cpu_s"] / max(completed, 1) * 1000,
                "client": load["client_cpu_s"] / max(completed, 1) * 1000,
                "services": load["services_cpu_s"] / max(completed, 1) * 1000,
            }
            # The hash's CPU from the argon2 run, else as timed inside the in-process flows.
            per_flow["argon2"] = result.get("argon2", {}).get("cpu_ms_each") or result.get(
                "in_process", {}
            ).get("argon2_cpu_ms", 0.0)
            per_flow["server_rest"] = per_flow["server"] - per_flow["argon2"]
            # Noise-proof estimate of the ratio: the hash's CPU over all CPU one flow costs
            # (workers, database and Redis servers, this client), as if alone on the cores.
            spent = per_flow["server"] + per_flow["services"] + per_flow["client"]
            per_flow["hash_share"] = per_flow["argon2"] / spent if spent else 0.0
            flows = {
                "users": args.users,
                "completed": completed,
                "seconds": run.seconds,
                "flows_s": completed / run.seconds,
                "errors": sum(run.errors.values()),
                "errors_by_step": run.errors,
                "error_examples": run.error_examples,
                "members_reused": pool.reused,
                "steps": {name: percentiles(s) for name, s in run.samples.items()},
                "flow": percentiles(run.flows),
                "cpu_ms_per_flow": {k: round(v, 2) for k, v in per_flow.items()},
                "load": load,
                "worker_pids_changed": sorted(portal.worker_pids()) != sorted(meter.server_pids),
            }
            if redis_url:
                after = redis_commandstats(redis_url)
                flows["redis_per_flow"] = {
                    name: round((calls - redis_before.get(name, 0)) / max(completed, 1), 2)
                    for name, calls in sorted(after.items())
                    if calls - redis_before.get(name, 0) > 0 and name != "info"
                }
            result["flows"] = flows
            memory["flows"] = completed
            memory["series"] = rss_series  # [flows completed, RSS of each worker…]
            memory["growth"] = [
                a - b for a, b in zip(memory["after_flows"], memory["before_flows"], strict=False)
            ]
        result["memory"] = memory if "after_flows" in memory else None
    finally:
        for server in servers:
            server.stop()
        if redis_process is not None:
            redis_process.terminate()
            redis_process.wait()
        shutil.rmtree(workdir, ignore_errors=True)

    result["goals"] = goals(result)
    print_report(result)
    if args.profile:
        print(f"\nProfile ({args.profile_flows} in-process flows; full stats in {args.profile}):")
        print("\n".join(result["profile"][:60]))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2, ensure_ascii=False)
    flows_failed = bool(result.get("flows", {}).get("errors"))
    return 1 if flows_failed or not all(g["met"] for g in result["goals"][:2]) else 0


if __name__ == "__main__":
    from sqlalchemy.exc import SQLAlchemyError

    try:
        sys.exit(main())
    except (RuntimeError, SQLAlchemyError, subprocess.CalledProcessError) as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else exc!r}", file=sys.stderr)
        sys.exit(2)
