"""A real gunicorn server for the browser and concurrency tests (not a test module).

``run_server`` prepares a database the way a deployer would (``flask db upgrade``,
``flask members create``): a SQLite file, or on the PostgreSQL pass a schema of its own
on the session's server (tests/databases.py); several servers may share one
(``database_uri=``, as hosts behind a load balancer do). It starts ``gunicorn wsgi:app`` in
production mode on a socket bound here (port 0, handed over as ``fd://``, so there is
no race for a "free" port), waits until ``/login`` answers, and stops the server at the
end. The server's output goes to a file that is printed when the block fails.

Import it from a test module with ``from live_server import run_server``: with pytest's
default "prepend" import mode, the folder of ``tests/conftest.py`` is on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyotp
from databases import fresh_database

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "live-server-test-secret-key-not-for-production"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
CLI_TIMEOUT = 60.0
# Variables of the developer's shell that would change what the server runs with.
_DROPPED = ("PORTAL_", "FLASK_", "SECRET_KEY", "DATABASE_URL")


@dataclass(frozen=True)
class MemberSpec:
    login_id: str
    password: str
    email: str = ""
    name: str = ""

    def email_address(self) -> str:
        return self.email or f"{self.login_id}@example.com"


@dataclass
class LiveServer:
    url: str
    port: int
    secret_key: str
    database_uri: str
    instance_path: Path
    log_path: Path
    members: dict[str, MemberSpec] = field(default_factory=dict)
    # Each enrolled member's authenticator secret (app_secrets) and the time step enrol()
    # used: the browser tests' phones (browser_helpers.app_of).
    secrets: dict[str, str] = field(default_factory=dict)
    step: int | None = None

    def log(self) -> str:
        """Everything gunicorn and the app wrote so far (access log and errors)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @contextlib.contextmanager
    def app_context(self) -> Iterator:
        """An app on the server's database with the server's keys, for arranging data
        (e.g. enrolling a member) and for checking what the server stored."""
        from portal import create_app
        from portal.extensions import db

        app = create_app(
            {
                "TESTING": True,
                "SECRET_KEY": self.secret_key,
                "SQLALCHEMY_DATABASE_URI": self.database_uri,
            }
        )
        with app.app_context():
            try:
                yield app
            finally:
                db.session.remove()
                db.engine.dispose()


def server_environment(database_uri: str, instance_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED)}
    env.update(
        {
            "SECRET_KEY": SECRET_KEY,
            "DATABASE_URL": database_uri,
            "PORTAL_ENV": "production",
            "PORTAL_INSTANCE_PATH": str(instance_path),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _flask(env: dict[str, str], *args: str, stdin: str | None = None) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=PROJECT_ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"flask {' '.join(args)} failed with status {result.returncode}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )


def _answers(port: int) -> bool:
    """True once a worker serves the sign-in page."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/login")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()  # SIGTERM: gunicorn's graceful shutdown
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)


def _prepare(env: dict[str, str], members: Sequence[MemberSpec]) -> None:
    """The database as a deployer makes it: migrations, then each member by the CLI."""
    _flask(env, "db", "upgrade")
    for spec in members:
        _flask(
            env,
            "members",
            "create",
            spec.login_id,
            "--email",
            spec.email_address(),
            "--name",
            spec.name,
            "--password-stdin",
            stdin=spec.password + "\n",
        )


@contextlib.contextmanager
def run_server(
    tmp_path: Path,
    members: Sequence[MemberSpec] = (),
    *,
    workers: int = 2,
    threads: int = 2,
    environment: dict[str, str] | None = None,
    database_uri: str | None = None,
) -> Iterator[LiveServer]:
    """Prepare the database, start gunicorn, yield a :class:`LiveServer`, stop it.

    Without ``database_uri`` the server gets a new database of its own, removed at the
    end; with one (another server's), it joins that database (migrations are then a
    no-op; ``members`` are created again, so pass them to one server only)."""
    with contextlib.ExitStack() as stack:
        if database_uri is None:
            database_uri = stack.enter_context(fresh_database(tmp_path))
        yield stack.enter_context(
            _serve(tmp_path, members, workers, threads, environment, database_uri)
        )


@contextlib.contextmanager
def _serve(
    tmp_path: Path,
    members: Sequence[MemberSpec],
    workers: int,
    threads: int,
    environment: dict[str, str] | None,
    database_uri: str,
) -> Iterator[LiveServer]:
    tmp_path = Path(tmp_path)
    instance_path = tmp_path / "instance"
    instance_path.mkdir(parents=True, exist_ok=True)
    env = server_environment(database_uri, instance_path) | (environment or {})

    # The socket first: its port is the base URL the CLI steps see too (production mode
    # refuses MAIL_SERVER without one).
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    # Opened as localhost, the way `make run` prints it: a passkey's RP ID must be a
    # name, never an IP address. Mail links and passkeys follow PORTAL_BASE_URL.
    url = f"http://localhost:{port}"
    env.setdefault("PORTAL_BASE_URL", url)
    try:
        _prepare(env, members)
    except BaseException:
        listener.close()
        raise

    log_path = tmp_path / "gunicorn.log"
    server = LiveServer(
        url=url,
        port=port,
        secret_key=SECRET_KEY,
        database_uri=database_uri,
        instance_path=instance_path,
        log_path=log_path,
        members={spec.login_id: spec for spec in members},
    )
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"fd://{listener.fileno()}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--graceful-timeout",
        "5",
        "--access-logfile",
        "-",
        "wsgi:app",
    ]
    with log_path.open("wb") as log_file:
        try:
            proc = subprocess.Popen(
                command,
                cwd=PROJECT_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                pass_fds=(listener.fileno(),),
            )
        finally:
            listener.close()  # gunicorn holds its own copy
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not _answers(port):
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"gunicorn exited with status {proc.returncode} during start-up\n"
                        f"{server.log()}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"gunicorn did not answer within {START_TIMEOUT:.0f} s\n{server.log()}"
                    )
                time.sleep(0.1)
            yield server
        except BaseException:
            print(f"--- gunicorn output ({log_path})\n{server.log()}", file=sys.stderr)
            raise
        finally:
            _stop(proc)


def enrol(server, login_id: str) -> list[str]:
    """Give the member an authenticator app directly in the server's database; returns
    the 10 recovery codes the server would have shown."""
    from portal import members, twofactor
    from portal.twofactor import totp

    with server.app_context():
        member = members.find(login_id)
        now = datetime.now(UTC)
        nonce = "test"  # the id of the session shown the secret
        secret = totp.begin_enrolment(member, now, nonce)
        status, codes = twofactor.enable_app(
            member, pyotp.TOTP(secret).at(now), now, nonce, replace=False
        )
        assert status is twofactor.Enrolment.OK and len(codes) == 10, "enrolment failed"
        return codes


def enrol_contact(server, login_id: str, kind: str) -> list[str]:
    """Give the member an email or SMS method (``kind``) and a set of recovery codes
    directly in the server's database; returns the codes."""
    from portal import members
    from portal.extensions import db
    from portal.models import ContactMethod
    from portal.twofactor import recovery

    with server.app_context():
        member = members.find(login_id)
        now = datetime.now(UTC)
        db.session.add(ContactMethod(member_id=member.id, kind=kind, created_at=now))
        db.session.commit()
        return recovery.issue(member, now)


def enrol_operator(server, login_id: str) -> str:
    """Make the member an operator with an authenticator app enrolled at the current
    time step; returns the app's secret (the browser then computes its codes)."""
    from portal import members
    from portal.extensions import db
    from portal.models import TotpCredential
    from portal.twofactor.crypto import secret_box

    with server.app_context():
        members.find(login_id).is_operator = True
        db.session.commit()
    enrol(server, login_id)
    with server.app_context():
        member_id = members.find(login_id).id
        cred = db.session.scalar(
            db.select(TotpCredential).where(TotpCredential.member_id == member_id)
        )
        return secret_box().decrypt(cred.secret_encrypted)


def app_secrets(server) -> dict[str, str]:
    """Each enrolled member's authenticator secret, by login ID (the browser tests compute
    the codes a phone would show)."""
    from portal.extensions import db
    from portal.models import TotpCredential
    from portal.twofactor.crypto import secret_box

    with server.app_context():
        return {
            c.member.login_id: secret_box().decrypt(c.secret_encrypted)
            for c in db.session.scalars(db.select(TotpCredential))
        }
