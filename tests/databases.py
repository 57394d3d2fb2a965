"""Which database a test run targets, and a fresh one for each test (not a test module).

``PORTAL_TEST_DATABASE`` chooses: ``sqlite`` (the default) or ``postgresql``. ``make test``
runs the suite once with each (``make test-sqlite`` / ``make test-postgres`` run one).
On SQLite a fresh database is a new file; on PostgreSQL a new schema on the session's
server (tests/postgres_server.py), which conftest starts and hands over with :func:`use`.

Every test that builds its own app or server takes its database from
:func:`fresh_database` (the ``app`` fixture and ``live_server.run_server`` do), so the
whole suite follows the selected backend.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
BACKEND = os.environ.get("PORTAL_TEST_DATABASE", SQLITE).strip().lower() or SQLITE
if BACKEND not in (SQLITE, POSTGRESQL):
    raise pytest.UsageError(
        f"PORTAL_TEST_DATABASE={BACKEND!r}: expected {SQLITE!r} or {POSTGRESQL!r}"
    )

_server = None  # the session's PostgresServer, once conftest has started it


def on_postgresql() -> bool:
    return BACKEND == POSTGRESQL


def use(server) -> None:
    global _server
    _server = server


@contextlib.contextmanager
def fresh_database(folder: Path, name: str = "portal", *, reuse: bool = False) -> Iterator[str]:
    """The SQLAlchemy URL of a new empty database, removed afterwards on PostgreSQL (on
    SQLite the file ``name``.db stays in ``folder``, pytest's temporary folder).

    ``reuse``: on PostgreSQL the database may already hold the portal's tables, empty (an
    earlier test's, emptied): for tests that only ever ``db.create_all()`` in it, which
    then has nothing to create."""
    if not on_postgresql():
        yield f"sqlite:///{(Path(folder) / f'{name}.db').resolve()}"
        return
    assert _server is not None, "the PostgreSQL server was not started (conftest)"
    with _server.schema(_portal_tables() if reuse else ()) as url:
        yield url


def _portal_tables() -> list[str]:
    """The portal's tables, those with foreign keys before the tables they refer to."""
    from portal import models  # noqa: F401  (the tables)
    from portal.extensions import db

    return [table.name for table in reversed(db.metadata.sorted_tables)]


requires_postgresql = pytest.mark.skipif(
    not on_postgresql(),
    reason="needs PostgreSQL: several processes as one site share one database "
    "server (PORTAL_TEST_DATABASE=postgresql, `make test`'s second pass)",
)
