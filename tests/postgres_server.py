"""A real PostgreSQL server for the suite's PostgreSQL pass (not a test module).

``make test`` runs the suite twice; the second pass sets ``PORTAL_TEST_DATABASE=postgresql``
and conftest then starts this server once for the session (tests/databases.py says which
backend a run targets). The server is Debian's ``postgresql`` (``scripts/ensure-postgres.sh``
installs it; ``make test`` runs that script): a cluster made by ``initdb`` in a temporary
folder, listening on a free TCP port on 127.0.0.1 only and on a unix socket in that
folder, with durability off (``fsync``, ``synchronous_commit``, ``full_page_writes``):
nothing in it has to survive a crash. It is stopped, and its folder removed, at the end.

PostgreSQL refuses to run as root: as root, ``initdb`` and ``postgres`` run as the
``postgres`` user the package creates (like bench/README.md's ``su postgres``), and the
folder is handed to that user. When the server is missing the fixture fails (it does not
skip): a run that targets PostgreSQL must run on it.

Each test gets a schema of its own (:meth:`PostgresServer.schema`): its URL's ``options``
put the schema first on the ``search_path``, so the portal's unqualified table names, its
migrations and its ``alembic_version`` all land there; the schema is dropped afterwards,
or, for the ``app`` fixture, emptied and kept for the next test.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
DATABASE = "portal"
SUPERUSER = "postgres"
# Tests run one at a time, but a concurrency test's gunicorn has up to 4 workers x 4
# threads, a scale-out test two servers, and the test process its own engines.
MAX_CONNECTIONS = 200
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": str(MAX_CONNECTIONS),
    "shared_buffers": "128MB",
    # Every test creates and drops a schema: no need to keep the WAL between checkpoints.
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_wal_size": "1GB",
    "log_min_messages": "warning",
    "log_min_error_statement": "panic",  # refusals the tests provoke are not news
    "timezone": "UTC",
}


def find_bindir() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian keeps it off the PATH)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(path.split("/")[4]) if path.split("/")[4].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PostgresServer:
    port: int
    folder: Path
    log_path: Path
    admin: psycopg.Connection | None = None
    # Schemas holding the portal's tables, emptied, for the next test (see schema()).
    _spares: dict[tuple[str, ...], list[str]] = field(default_factory=dict)

    def url(self, *, search_path: str | None = None, application_name: str | None = None) -> str:
        """A SQLAlchemy URL (psycopg 3) on the test database, over TCP on loopback."""
        url = f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"
        query = []
        if search_path:
            query.append("options=" + quote(f"-csearch_path={search_path}", safe=""))
        if application_name:
            query.append(f"application_name={application_name}")
        return url + ("?" + "&".join(query) if query else "")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def execute(self, query: str | sql.Composable, params: tuple = ()) -> None:
        assert self.admin is not None
        self.admin.execute(query, params)

    @contextlib.contextmanager
    def schema(self, tables: Sequence[str] = ()) -> Iterator[str]:
        """A schema of this test's own; yields the URL whose connections use it. At the
        end, connections still open (a server that did not stop, a leaked engine) are
        ended first: they are recognised by the schema's name as application_name.

        Without ``tables`` the schema is new and empty, and dropped at the end. With
        ``tables`` (the portal's, those with foreign keys first) it may be one an earlier
        test used, holding exactly these tables, emptied and its sequences restarted:
        what creating and dropping the tables cost each test (about 60 ms) then costs
        about 4 ms. A schema left with other tables than these is dropped."""
        spares = self._spares.setdefault(tuple(tables), [])
        if spares:
            name = spares.pop()
        else:
            name = f"t_{uuid.uuid4().hex[:16]}"
            self.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        try:
            yield self.url(search_path=name, application_name=name)
        finally:
            self.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            if tables and self._emptied(name, tables):
                spares.append(name)
            else:
                self.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))

    def _emptied(self, name: str, tables: Sequence[str]) -> bool:
        """Empty the schema's tables and restart its sequences, if it holds ``tables``
        and nothing else; False (nothing done) otherwise."""
        assert self.admin is not None
        found = {
            row[0]
            for row in self.admin.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (name,),
            )
        }
        if found != set(tables):
            return False
        self.execute(
            sql.SQL("; ").join(
                sql.SQL("DELETE FROM {}").format(sql.Identifier(name, table)) for table in tables
            )
        )
        self.execute(
            "SELECT setval(c.oid::regclass, 1, false) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'S' AND n.nspname = %s",
            (name,),
        )
        return True


def _as_postgres() -> dict:
    """Popen arguments that run a command as the postgres user when we are root."""
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam(SUPERUSER)
    except KeyError:
        pytest.fail(
            "running as root, and there is no 'postgres' user to run PostgreSQL as "
            "(Debian's postgresql package creates it: scripts/ensure-postgres.sh)",
            pytrace=False,
        )
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _connect(server: PostgresServer, dbname: str, timeout: float = 2) -> psycopg.Connection:
    return psycopg.connect(
        host="127.0.0.1",
        port=server.port,
        user=SUPERUSER,
        dbname=dbname,
        autocommit=True,
        connect_timeout=max(1, int(timeout)),
    )


def _answers(server: PostgresServer) -> bool:
    try:
        with _connect(server, "postgres", timeout=1):
            return True
    except psycopg.OperationalError:
        return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(2)  # SIGINT: PostgreSQL's "fast" shutdown
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)


def _initdb(bindir: Path, data: Path, log_path: Path, as_postgres: dict) -> None:
    command = [
        str(bindir / "initdb"),
        "--pgdata", str(data),
        "--auth", "trust",  # loopback and its own socket only; a throwaway cluster
        "--username", SUPERUSER,
        "--encoding", "UTF8",
        "--no-locale",
        "--no-sync",
    ]  # fmt: skip
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **as_postgres,
    )
    log_path.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        pytest.fail(
            f"initdb failed with status {result.returncode}\n{result.stdout}{result.stderr}",
            pytrace=False,
        )


def _start(bindir: Path, server: PostgresServer, as_postgres: dict) -> subprocess.Popen:
    command = [str(bindir / "postgres"), "-D", str(server.folder / "data"), "-p", str(server.port)]
    command += ["-c", f"unix_socket_directories={server.folder}"]
    for name, value in SETTINGS.items():
        command += ["-c", f"{name}={value}"]
    with server.log_path.open("ab") as log_file:
        return subprocess.Popen(
            command,
            cwd=server.folder,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            **as_postgres,
        )


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Make a cluster in a temporary folder, start it, yield it, stop it, remove it."""
    bindir = find_bindir()
    if bindir is None:
        pytest.fail(
            "PostgreSQL is not installed: run scripts/ensure-postgres.sh "
            "(`make test` does) to install Debian's postgresql package",
            pytrace=False,
        )
    as_postgres = _as_postgres()
    # Not pytest's tmp_path: its folders are private to us, and as root the server runs
    # as another user. A short path also keeps the socket's name under 108 bytes.
    folder = Path(tempfile.mkdtemp(prefix="portal-pg-", dir="/tmp"))
    proc = None
    try:
        if as_postgres:
            os.chown(folder, as_postgres["user"], as_postgres["group"])
        log_path = folder / "postgres.log"
        _initdb(bindir, folder / "data", log_path, as_postgres)
        if as_postgres:
            os.chown(log_path, as_postgres["user"], as_postgres["group"])
        for _attempt in range(5):  # the free port may be taken before the server binds it
            server = PostgresServer(port=_free_port(), folder=folder, log_path=log_path)
            proc = _start(bindir, server, as_postgres)
            deadline = time.monotonic() + START_TIMEOUT
            while proc.poll() is None and not _answers(server):
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"PostgreSQL did not accept connections within {START_TIMEOUT:.0f} s\n"
                        f"{server.log()}",
                        pytrace=False,
                    )
                time.sleep(0.05)
            if proc.poll() is None:
                break
        else:
            pytest.fail(
                f"PostgreSQL exited with status {proc.returncode} during start-up\n{server.log()}",
                pytrace=False,
            )
        with _connect(server, "postgres") as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        server.admin = _connect(server, DATABASE)
        try:
            yield server
        finally:
            server.admin.close()
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server
