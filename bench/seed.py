"""Seed a database with N members (default 1,000,000) for ``admin_bench.py``.

    .venv/bin/python bench/seed.py                      # SQLite, /tmp/portal-bench.sqlite3
    .venv/bin/python bench/seed.py --members 100000 --reset
    DATABASE_URL=postgresql://bench@127.0.0.1:5433/bench .venv/bin/python bench/seed.py

The schema comes from the migrations (``flask db upgrade``), as in production. Rows
go in with SQLAlchemy Core ``insert(...)`` executemany, one transaction per batch of
members (10,000 by default) together with their methods and recovery codes.

Each member independently has an authenticator app (35 %), email (10 %) and SMS (5 %),
so about 44 % have some 2FA and every stretch of ids mixes both kinds. Members with
2FA get ``--recovery-codes`` codes (10 by default), a few of them used. Every member
shares one precomputed argon2id hash; the operator ``bench-operator`` is created last
(id N + 1) with the password in ``benchlib.py``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime, timedelta

from benchlib import (
    OPERATOR_LOGIN,
    OPERATOR_PASSWORD,
    Progress,
    database_url,
    make_app,
    redacted,
)
from sqlalchemy import MetaData, func, insert, inspect, select, text

from portal import members
from portal.extensions import db
from portal.models import ContactMethod, Member, RecoveryCode, TotpCredential

# (kanji, romaji): common surnames and given names, so the list reads like a real one.
SURNAMES = [
    ("佐藤", "sato"), ("鈴木", "suzuki"), ("高橋", "takahashi"), ("田中", "tanaka"),
    ("伊藤", "ito"), ("渡辺", "watanabe"), ("山本", "yamamoto"), ("中村", "nakamura"),
    ("小林", "kobayashi"), ("加藤", "kato"), ("吉田", "yoshida"), ("山田", "yamada"),
    ("佐々木", "sasaki"), ("山口", "yamaguchi"), ("松本", "matsumoto"), ("井上", "inoue"),
    ("木村", "kimura"), ("林", "hayashi"), ("斎藤", "saito"), ("清水", "shimizu"),
    ("山崎", "yamazaki"), ("森", "mori"), ("池田", "ikeda"), ("橋本", "hashimoto"),
    ("阿部", "abe"), ("石川", "ishikawa"), ("山下", "yamashita"), ("中島", "nakajima"),
    ("石井", "ishii"), ("小川", "ogawa"), ("前田", "maeda"), ("岡田", "okada"),
    ("長谷川", "hasegawa"), ("藤田", "fujita"), ("後藤", "goto"), ("近藤", "kondo"),
    ("村上", "murakami"), ("遠藤", "endo"), ("青木", "aoki"), ("坂本", "sakamoto"),
]  # fmt: skip
GIVEN_NAMES = [
    ("太郎", "taro"), ("花子", "hanako"), ("翔太", "shota"), ("陽菜", "hina"),
    ("大輔", "daisuke"), ("美咲", "misaki"), ("健太", "kenta"), ("結衣", "yui"),
    ("拓也", "takuya"), ("葵", "aoi"), ("直樹", "naoki"), ("さくら", "sakura"),
    ("蓮", "ren"), ("愛", "ai"), ("大翔", "hiroto"), ("七海", "nanami"),
    ("悠真", "yuma"), ("優子", "yuko"), ("誠", "makoto"), ("真由美", "mayumi"),
    ("浩", "hiroshi"), ("恵子", "keiko"), ("隆", "takashi"), ("裕子", "yuko"),
    ("和也", "kazuya"), ("明美", "akemi"), ("亮", "ryo"), ("舞", "mai"),
    ("修", "osamu"), ("智子", "tomoko"),
]  # fmt: skip
DOMAINS = ["example.jp", "example.co.jp", "example.ne.jp", "example.com", "example.org"]
# Column weights for surnames: the most common ones are much more common.
SURNAME_WEIGHTS = [1 / (rank + 3) for rank in range(len(SURNAMES))]

P_APP, P_EMAIL, P_SMS = 0.35, 0.10, 0.05
FIRST_JOIN = datetime(2023, 1, 1, tzinfo=UTC)
SEED_NOW = datetime(2026, 11, 1, tzinfo=UTC)
SECRET_BYTES = b"bench-not-a-real-fernet-token-" * 4  # stands in for secret_encrypted


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000, help="how many (1,000,000)")
    parser.add_argument("--batch", type=int, default=10_000, help="members per insert batch")
    parser.add_argument(
        "--recovery-codes", type=int, default=10, help="codes per member with 2FA (10)"
    )
    parser.add_argument("--database-url", help="default: $DATABASE_URL, else the SQLite file")
    parser.add_argument(
        "--reset", action="store_true", help="drop every table of a non-empty database first"
    )
    parser.add_argument(
        "--create-all", action="store_true", help="db.create_all() instead of the migrations"
    )
    parser.add_argument("--seed", type=int, default=20261125, help="random seed")
    return parser.parse_args(argv)


def prepare_schema(args: argparse.Namespace) -> None:
    inspector = inspect(db.engine)
    if inspector.has_table("member"):
        count = db.session.scalar(select(func.count()).select_from(Member))
        db.session.rollback()
        if count and not args.reset:
            sys.exit(
                f"The database already has {count:,} members. Pass --reset to drop every "
                "table and seed again."
            )
    if args.reset:
        reflected = MetaData()
        reflected.reflect(db.engine)
        reflected.drop_all(db.engine)
    if args.create_all:
        db.create_all()
    else:
        import flask_migrate

        flask_migrate.upgrade()


class Generator:
    """Rows for one batch of member ids; ids are explicit so children can refer to them."""

    def __init__(self, rng: random.Random, total: int, password_hash: str, codes: int):
        self.rng, self.total, self.password_hash, self.codes = rng, total, password_hash, codes
        self.span = (SEED_NOW - FIRST_JOIN).total_seconds()
        self.counts = {"member": 0, "totp_credential": 0, "contact_method": 0, "recovery_code": 0}

    def batch(self, first: int, last: int) -> tuple[list[dict], ...]:
        rng = self.rng
        member_rows, totp_rows, contact_rows, code_rows = [], [], [], []
        for member_id in range(first, last + 1):
            surname, surname_r = rng.choices(SURNAMES, SURNAME_WEIGHTS)[0]
            given, given_r = rng.choice(GIVEN_NAMES)
            # Members joined over the years in id order, with some jitter.
            joined = FIRST_JOIN + timedelta(
                seconds=self.span * (member_id - 1) / self.total + rng.uniform(0, 3600)
            )
            methods: dict[str, datetime] = {}
            for kind, p in (("app", P_APP), ("email", P_EMAIL), ("sms", P_SMS)):
                if rng.random() < p:
                    offset = timedelta(seconds=rng.uniform(0, 200 * 86400))
                    methods[kind] = min(joined + offset, SEED_NOW)
            has_sms = "sms" in methods
            phone = ""
            if has_sms or rng.random() < 0.7:
                phone = f"+81{rng.choice('789')}0{rng.randrange(10**8):08d}"
            first_setup = min(methods.values()) if methods else None
            last_step = None
            if methods and rng.random() < 0.8:
                last_step = first_setup + (SEED_NOW - first_setup) * rng.random()
            login_id = f"m{member_id:07d}"
            member_rows.append(
                {
                    "id": member_id,
                    "login_id": login_id,
                    "login_key": login_id,
                    "name": f"{surname} {given}",
                    "email": f"{given_r}.{surname_r}{rng.randrange(1, 1000)}@{rng.choice(DOMAINS)}",
                    "phone": phone,
                    "password_hash": self.password_hash,
                    "is_operator": False,
                    "session_generation": 0,
                    "tfa_failures": 0,
                    "tfa_locked_until": None,
                    "last_second_step_at": last_step,
                    "preferred_method": min(methods, key=methods.__getitem__) if methods else None,
                    "created_at": joined,
                    "updated_at": first_setup or joined,
                }
            )
            if "app" in methods:
                totp_rows.append(
                    {
                        "member_id": member_id,
                        "secret_encrypted": SECRET_BYTES,
                        "last_step": 0,
                        "created_at": methods["app"],
                        "last_used_at": last_step,
                    }
                )
            for kind in ("email", "sms"):
                if kind in methods:
                    contact_rows.append(
                        {
                            "member_id": member_id,
                            "kind": kind,
                            "created_at": methods[kind],
                            "last_used_at": None,
                        }
                    )
            if methods and self.codes:
                # Most members never use a recovery code; some used one to three.
                used = rng.choices((0, 1, 2, 3), (70, 15, 10, 5))[0]
                used_at = first_setup + (SEED_NOW - first_setup) / 2 if used else None
                for n in range(self.codes):
                    code_rows.append(
                        {
                            "member_id": member_id,
                            "code_hash": f"{rng.getrandbits(256):064x}",
                            "created_at": first_setup,
                            "used_at": used_at if n < used else None,
                        }
                    )
        self.counts["member"] += len(member_rows)
        self.counts["totp_credential"] += len(totp_rows)
        self.counts["contact_method"] += len(contact_rows)
        self.counts["recovery_code"] += len(code_rows)
        return member_rows, totp_rows, contact_rows, code_rows


def seed(args: argparse.Namespace) -> dict[str, int]:
    from argon2 import PasswordHasher

    # One real argon2id hash (default parameters, so the column holds a realistic value).
    password_hash = PasswordHasher().hash("bench member password, never used to sign in")
    gen = Generator(random.Random(args.seed), args.members, password_hash, args.recovery_codes)
    statements = (
        insert(Member.__table__),
        insert(TotpCredential.__table__),
        insert(ContactMethod.__table__),
        insert(RecoveryCode.__table__),
    )
    progress = Progress(args.members, "members")
    with db.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            # Bulk load only: a crash mid-seed means seeding again anyway.
            conn.exec_driver_sql("PRAGMA synchronous=OFF")
            conn.commit()
        for first in range(1, args.members + 1, args.batch):
            last = min(first + args.batch - 1, args.members)
            with conn.begin():
                for stmt, rows in zip(statements, gen.batch(first, last), strict=True):
                    if rows:
                        conn.execute(stmt, rows)
            progress.update(last - first + 1)
        progress.close()
        if conn.dialect.name == "postgresql":
            # Explicit ids leave the sequence behind: move it past them.
            with conn.begin():
                conn.execute(
                    text("SELECT setval(pg_get_serial_sequence('member', 'id'), :n)"),
                    {"n": args.members},
                )
    return gen.counts


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    url = database_url(args.database_url)
    app = make_app(url)
    print(f"Seeding {args.members:,} members into {redacted(url)}", file=sys.stderr)
    with app.app_context():
        started = time.perf_counter()
        prepare_schema(args)
        counts = seed(args)
        members.create(
            OPERATOR_LOGIN,
            email="bench-operator@example.jp",
            password=OPERATOR_PASSWORD,
            name="ベンチ 運用者",
            is_operator=True,
            now=SEED_NOW,
        )
        inserted = time.perf_counter() - started
        analyse_started = time.perf_counter()
        if db.engine.dialect.name == "postgresql":
            # What autovacuum would do soon after a bulk load; plans need the statistics.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
        analysed = time.perf_counter() - analyse_started
        db.session.remove()
        db.engine.dispose()
    total_rows = sum(counts.values())
    print(
        f"Inserted {total_rows:,} rows in {inserted:.1f} s ({total_rows / inserted:,.0f} rows/s):",
        ", ".join(f"{table} {n:,}" for table, n in counts.items()),
        file=sys.stderr,
    )
    if analysed > 0.5:
        print(f"VACUUM ANALYZE took {analysed:.1f} s", file=sys.stderr)
    if url.startswith("sqlite:///"):
        from pathlib import Path

        size = Path(url.removeprefix("sqlite:///")).stat().st_size
        print(f"SQLite file: {size / 2**20:,.0f} MiB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
