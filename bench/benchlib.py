"""Shared by ``seed.py`` and ``admin_bench.py``: the database URL, the app built for the
benchmark, the operator's credentials and a small progress bar (no new dependency)."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as ``python bench/….py`` from anywhere
    sys.path.insert(0, str(REPO))

from portal.config import parse_database_url  # noqa: E402

# Outside the repository: a million members take about 1 GB on SQLite.
DEFAULT_SQLITE = "sqlite:////tmp/portal-bench.sqlite3"

OPERATOR_LOGIN = "bench-operator"
OPERATOR_PASSWORD = "bench operator password"  # noqa: S105  (a throwaway bench account)
# argon2id with tiny parameters, as in tests/conftest.py: the operator signs in once per
# process, and a 64 MiB default hash would show up in the CSV child's peak RSS.
CHEAP_ARGON2 = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}


def database_url(cli_value: str | None) -> str:
    """``--database-url``, else ``DATABASE_URL``, else the SQLite file in /tmp;
    ``postgresql://`` is normalised to the psycopg 3 driver like the portal does."""
    raw = cli_value or os.environ.get("DATABASE_URL") or DEFAULT_SQLITE
    return parse_database_url("DATABASE_URL", raw)


def redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def make_app(url: str, **overrides: Any):
    """The portal as deployed (not TESTING, CSRF on), against ``url``; rate limits off
    so repeated sign-ins of the bench processes are never refused."""
    from portal import create_app

    config = {
        "PORTAL_ENV": "development",
        "SECRET_KEY": "bench-secret-key-not-for-production-0123456789",
        "SQLALCHEMY_DATABASE_URI": url,
        "PORTAL_ARGON2_PARAMS": CHEAP_ARGON2,
        "RATELIMIT_ENABLED": False,
    }
    config.update(overrides)
    return create_app(config)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if "model name" in line)
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} CPU ({cpu}), {mem:.0f} GiB RAM, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


class Progress:
    """``[#####.....]  45.0%  450,000/1,000,000 members  52,000/s  ETA 0:11`` on stderr.

    Redrawn in place on a terminal; on a pipe or log file one line per 10 %."""

    def __init__(self, total: int, label: str, stream=sys.stderr, width: int = 30):
        self.total, self.label, self.stream, self.width = total, label, stream, width
        self.done = 0
        self.start = time.perf_counter()
        self.tty = stream.isatty()
        self.next_decile = 1

    def update(self, n: int) -> None:
        self.done += n
        if self.tty:
            self.stream.write("\r" + self._line() + "\x1b[K")  # clear to end of line
            self.stream.flush()
        elif self.done * 10 >= self.next_decile * self.total or self.done >= self.total:
            self.next_decile = self.done * 10 // max(self.total, 1) + 1
            self.stream.write(self._line() + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r" + self._line() + "\x1b[K\n")
            self.stream.flush()

    def _line(self) -> str:
        elapsed = time.perf_counter() - self.start
        frac = self.done / self.total if self.total else 1.0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        bar = "#" * int(frac * self.width)
        return (
            f"[{bar:.<{self.width}}] {frac * 100:5.1f}%  {self.done:,}/{self.total:,} "
            f"{self.label}  {rate:,.0f}/s  {_clock(elapsed)} elapsed, ETA {_clock(eta)}"
        )


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"
