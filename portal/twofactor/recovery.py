"""Recovery codes: 10 single-use codes, shown once, stored only as keyed hashes."""

from __future__ import annotations

import re
import secrets
from datetime import datetime

from sqlalchemy import delete, func, update

from ..extensions import db
from ..models import Member, RecoveryCode
from . import codes
from .crypto import code_hasher

COUNT = 10
# Lowercase letters and digits without the look-alikes l/1 and o/0: 32 symbols,
# so 10 characters carry 50 bits.
ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
_CANONICAL = re.compile(f"[{ALPHABET}]{{10}}")


def generate() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


def canonical(raw: str | None) -> str | None:
    """Case-insensitive, hyphen and spaces optional; None if it cannot be a code."""
    code = codes.normalise(raw).lower()
    return code if _CANONICAL.fullmatch(code) else None


def issue(member: Member, now: datetime) -> list[str]:
    """A new set of codes; the old set stops working in the same transaction."""
    plain = [generate() for _ in range(COUNT)]
    hasher = code_hasher()
    # Serialise two regenerations of one member (PostgreSQL row lock; SQLite's single
    # writer does this anyway): each DELETE then sees the other's rows.
    db.session.execute(db.select(Member.id).where(Member.id == member.id).with_for_update())
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.member_id == member.id))
    db.session.add_all(
        RecoveryCode(member_id=member.id, code_hash=hasher.hash(canonical(code)), created_at=now)
        for code in plain
    )
    db.session.commit()
    return plain


def use(member: Member, raw: str | None, now: datetime) -> bool:
    """Spend one code. The conditional UPDATE's row count decides, so of many parallel
    submissions of one code exactly one succeeds. The comparison happens on HMAC values
    an attacker cannot choose, so the database's equality test leaks nothing useful."""
    code = canonical(raw)
    if code is None:
        return False
    used = db.session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.member_id == member.id,
            RecoveryCode.code_hash == code_hasher().hash(code),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=now)
    ).rowcount
    db.session.commit()
    return used == 1


def remaining(member: Member) -> int:
    return db.session.scalar(
        db.select(func.count(RecoveryCode.id)).where(
            RecoveryCode.member_id == member.id, RecoveryCode.used_at.is_(None)
        )
    )


def void(member: Member) -> None:
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.member_id == member.id))
    db.session.commit()
