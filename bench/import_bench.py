"""Bulk import speed and memory: ``flask --app wsgi members import FILE.csv`` end to end.

    .venv/bin/python bench/import_bench.py                       # SQLite in /tmp, 100,000 rows
    .venv/bin/python bench/import_bench.py --database-url postgresql://bench@127.0.0.1:5433/imp
    .venv/bin/python bench/import_bench.py --rows 100000,200000 --json /tmp/import.json

For each size in ``--rows``: write a CSV of that many new members (every column filled:
login_id, email, name, phone, operator), empty the database's members, and run the real
command in a child process (the same code path an operator runs, with its progress bar
and report), timing it and reading the child's peak RSS. Then run the same file again
(every line unchanged: nothing written) and once with ``--dry-run``. Goal: 100,000 rows
in at most 60 s; peak memory flat in the file's size (streamed).

Exit status: 0 = goal met, 1 = missed or a run failed, 2 = error.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import REPO, database_url, machine, redacted

GOAL_SECONDS = 60.0
DEFAULT_SQLITE = f"sqlite:///{tempfile.gettempdir()}/portal-import-bench.sqlite3"


def write_csv(path: Path, rows: int) -> int:
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("login_id,email,name,phone,operator\n")
        for i in range(rows):
            phone = f"090-1{i % 1000:03d}-{i % 10000:04d}"
            out.write(f"im{i:07d},im{i:07d}@example.com,取込 太郎{i},{phone},0\n")
    return path.stat().st_size


def empty(url: str) -> None:
    """Migrate, then remove every member (and what hangs off them) and the audit log."""
    env = environment(url)
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
    )
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_event"))
        conn.execute(text("DELETE FROM member"))
    engine.dispose()


def environment(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": url,
            "SECRET_KEY": "import-bench-secret-key-" + "x" * 24,
            "PORTAL_INSTANCE_PATH": str(Path(tempfile.gettempdir()) / "portal-import-bench"),
            "PORTAL_ENV": "production",
            "LANG": "C",
        }
    )
    return env


def run_import(url: str, csv_path: Path, *options: str) -> dict:
    """The command in a child process: seconds, exit status, its own peak RSS, the
    summary line."""
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "members", "import"]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        child = subprocess.Popen(
            [*command, str(csv_path), *options],
            cwd=REPO,
            env=environment(url),
            stdout=out,
            stderr=err,
            text=True,
        )
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    summary = [line for line in stdout.splitlines() if "件" in line]
    return {
        "seconds": round(seconds, 2),
        "exit_status": child.returncode,
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # KiB on Linux
        "summary": summary[-1] if summary else stderr.strip()[-300:],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url")
    parser.add_argument("--rows", default="100000", help="comma-separated sizes")
    parser.add_argument("--json", help="write every figure here")
    args = parser.parse_args()
    # Its own SQLite file by default: the members of the database it is given are removed.
    url = database_url(args.database_url or os.environ.get("DATABASE_URL") or DEFAULT_SQLITE)
    sizes = [int(part) for part in args.rows.split(",")]
    print(f"== Bulk import benchmark  ({machine()})")
    print(f"Database: {redacted(url)}")
    figures: dict = {"database": redacted(url), "runs": []}
    ok = True
    with tempfile.TemporaryDirectory() as folder:
        for rows in sizes:
            path = Path(folder) / f"members-{rows}.csv"
            size = write_csv(path, rows)
            empty(url)
            first = run_import(url, path)
            again = run_import(url, path)
            dry = run_import(url, path, "--dry-run")
            run = {"rows": rows, "file_mib": round(size / 2**20, 1), "import": first}
            run |= {"again": again, "dry_run": dry}
            figures["runs"].append(run)
            rate = rows / first["seconds"] if first["seconds"] else 0
            print(
                f"{rows:>9,} rows ({run['file_mib']} MiB): import {first['seconds']:.1f} s "
                f"({rate:,.0f} rows/s, exit {first['exit_status']}); "
                f"again {again['seconds']:.1f} s; "
                f"dry run {dry['seconds']:.1f} s; peak RSS {first['peak_rss_mib']} / "
                f"{again['peak_rss_mib']} / {dry['peak_rss_mib']} MiB"
            )
            print(f"          {first['summary']}")
            print(f"          again: {again['summary']}")
            failed = first["exit_status"] or again["exit_status"] or dry["exit_status"]
            if failed or (rows <= 100_000 and first["seconds"] > GOAL_SECONDS * rows / 100_000):
                ok = False
    goal = "met" if ok else "MISSED"
    print(f"Goal: 100,000 rows in <= {GOAL_SECONDS:.0f} s, every run clean: {goal}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, ensure_ascii=False))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
