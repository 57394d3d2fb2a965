"""Bounding guesses: consecutive wrong second-step attempts lock the member's second step.

Counted in the member row, not the session, so signing in with the password again
does not reset the count. Codes and recovery codes share one counter.

Each attempt is *reserved* (counted) before its code is checked, with one conditional
UPDATE, so parallel requests cannot slip more than the allowed number of guesses past
the check: at most ``limit`` attempts are ever in flight or done before the lock.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import or_, update

from ..extensions import db
from ..models import Member


def _limit() -> int:
    return current_app.config["PORTAL_TFA_MAX_FAILURES"]


def _lock_duration() -> timedelta:
    return timedelta(seconds=current_app.config["PORTAL_TFA_LOCK_SECONDS"])


def _not_locked(now: datetime):
    return or_(Member.tfa_locked_until.is_(None), Member.tfa_locked_until <= now)


def locked_until(member: Member, now: datetime) -> datetime | None:
    db.session.refresh(member, ["tfa_locked_until"])
    until = member.tfa_locked_until
    return until if until is not None and until > now else None


def reserve(member: Member, now: datetime) -> datetime | None:
    """Count one attempt before checking it. Returns None when the attempt may go
    ahead, else the end of the lock that forbids it."""
    reserved = db.session.execute(
        update(Member)
        .where(Member.id == member.id, _not_locked(now), Member.tfa_failures < _limit())
        .values(tfa_failures=Member.tfa_failures + 1)
    ).rowcount
    db.session.commit()
    if reserved:
        return None
    # The counter is full (its attempts still in flight, or a crash left it so):
    # make sure a lock with an end exists, so the member is not stuck for ever.
    _lock_if_full(member, now)
    return locked_until(member, now) or (now + _lock_duration())


def _lock_if_full(member: Member, now: datetime) -> datetime | None:
    until = now + _lock_duration()
    locked = db.session.execute(
        update(Member)
        .where(Member.id == member.id, _not_locked(now), Member.tfa_failures >= _limit())
        .values(tfa_failures=0, tfa_locked_until=until)
    ).rowcount
    db.session.commit()
    return until if locked else None


def record_failure(member: Member, now: datetime) -> datetime | None:
    """The reserved attempt was wrong (it is already counted); lock when the count is
    full. Returns the lock's end if this attempt locked."""
    return _lock_if_full(member, now)


def record_success(member: Member, now: datetime) -> None:
    db.session.execute(
        update(Member).where(Member.id == member.id).values(tfa_failures=0, last_second_step_at=now)
    )
    db.session.commit()
    db.session.refresh(member)
