"""Remembered devices (この端末では次回からコード入力をスキップする) and shared terminals.

Both are random tokens in a long-lived cookie; the database keeps only a keyed hash, so a
copy of the database cannot be turned back into a cookie. A remembered device belongs to
one member and lasts the policy's number of days; a shared terminal belongs to the site.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, update

from ..extensions import db
from ..models import Member, RememberedDevice, SharedTerminal
from .crypto import code_hasher


def _hash(kind: str, token: str) -> str:
    return code_hasher().hash(f"{kind}:{token}")


def new_token() -> str:
    return secrets.token_urlsafe(32)


# --- remembered devices ---------------------------------------------------------------


def remember(
    member: Member, now: datetime, lifetime: timedelta, *, label: str, ip: str
) -> tuple[str, RememberedDevice]:
    """A new remembered device; returns the token for the cookie and the row."""
    token = new_token()
    device = RememberedDevice(
        member_id=member.id,
        token_hash=_hash("device", token),
        label=label[:80],
        ip=ip[:45],
        created_at=now,
        last_used_at=now,
        expires_at=now + lifetime,
    )
    db.session.add(device)
    db.session.commit()
    return token, device


def recognise(
    member: Member, tokens: list[str], now: datetime, lifetime: timedelta
) -> RememberedDevice | None:
    """The member's remembered device among this browser's tokens, if one is still valid:
    before its own expiry and within the policy's current number of days (shortening
    the policy shortens devices remembered before)."""
    hashes = [_hash("device", t) for t in tokens if t]
    if not hashes:
        return None
    device = db.session.scalar(
        db.select(RememberedDevice).where(
            RememberedDevice.member_id == member.id,
            RememberedDevice.token_hash.in_(hashes),
            RememberedDevice.expires_at > now,
            RememberedDevice.created_at > now - lifetime,
        )
    )
    if device is not None:
        device.last_used_at = now
        db.session.commit()
    return device


def owned_by(member: Member, tokens: list[str]) -> set[int]:
    """Ids of the member's devices among this browser's tokens ("this device")."""
    hashes = [_hash("device", t) for t in tokens if t]
    if not hashes:
        return set()
    return set(
        db.session.scalars(
            db.select(RememberedDevice.id).where(
                RememberedDevice.member_id == member.id, RememberedDevice.token_hash.in_(hashes)
            )
        )
    )


def listed(member: Member, now: datetime) -> list[RememberedDevice]:
    return list(
        db.session.scalars(
            db.select(RememberedDevice)
            .where(RememberedDevice.member_id == member.id, RememberedDevice.expires_at > now)
            .order_by(RememberedDevice.last_used_at.desc())
        )
    )


def forget(member: Member, device_id: int | None = None) -> int:
    """Forget one of the member's devices, or all of them; returns how many."""
    if device_id is not None and not 0 < device_id < 2**63:
        return 0  # no row has such an id (and the database cannot even take it)
    stmt = delete(RememberedDevice).where(RememberedDevice.member_id == member.id)
    if device_id is not None:
        stmt = stmt.where(RememberedDevice.id == device_id)
    count = db.session.execute(stmt).rowcount
    db.session.commit()
    return count


def forget_everyone() -> int:
    """The policy stopped allowing remembered devices: every one is void."""
    count = db.session.execute(delete(RememberedDevice)).rowcount
    db.session.commit()
    return count


# --- shared terminals -------------------------------------------------------------------


def mark_terminal(label: str, by: str, now: datetime) -> tuple[str, SharedTerminal]:
    token = new_token()
    terminal = SharedTerminal(
        token_hash=_hash("terminal", token), label=label, created_by=by, created_at=now
    )
    db.session.add(terminal)
    db.session.commit()
    return token, terminal


def terminal(token: str | None, now: datetime | None = None) -> SharedTerminal | None:
    """The shared terminal this browser's token names; ``now`` records it as used."""
    if not token:
        return None
    found = db.session.scalar(
        db.select(SharedTerminal).where(SharedTerminal.token_hash == _hash("terminal", token))
    )
    if found is not None and now is not None:
        db.session.execute(
            update(SharedTerminal).where(SharedTerminal.id == found.id).values(last_used_at=now)
        )
        db.session.commit()
    return found


def terminal_by_id(terminal_id: int) -> SharedTerminal | None:
    return db.session.get(SharedTerminal, terminal_id) if terminal_id < 2**63 else None


def terminals() -> list[SharedTerminal]:
    return list(db.session.scalars(db.select(SharedTerminal).order_by(SharedTerminal.id)))


def unmark_terminal(terminal_id: int) -> SharedTerminal | None:
    found = db.session.get(SharedTerminal, terminal_id)
    if found is not None:
        db.session.delete(found)
        db.session.commit()
    return found
