"""Bounding guesses: consecutive wrong second-step attempts lock the member's second step.

Counted in the member row, not the session, so signing in with the password again
does not reset the count. Codes and recovery codes share one counter.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import update

from ..extensions import db
from ..models import Member


def locked_until(member: Member, now: datetime) -> datetime | None:
    db.session.refresh(member, ["tfa_locked_until"])
    until = member.tfa_locked_until
    return until if until is not None and until > now else None


def record_failure(member: Member, now: datetime) -> datetime | None:
    """Count one wrong attempt atomically; returns the lock's end if this one locked."""
    limit = current_app.config["PORTAL_TFA_MAX_FAILURES"]
    db.session.execute(
        update(Member).where(Member.id == member.id).values(tfa_failures=Member.tfa_failures + 1)
    )
    until = now + timedelta(seconds=current_app.config["PORTAL_TFA_LOCK_SECONDS"])
    locked = db.session.execute(
        update(Member)
        .where(Member.id == member.id, Member.tfa_failures >= limit)
        .values(tfa_failures=0, tfa_locked_until=until)
    ).rowcount
    db.session.commit()
    return until if locked else None


def record_success(member: Member, now: datetime) -> None:
    db.session.execute(
        update(Member).where(Member.id == member.id).values(tfa_failures=0, last_second_step_at=now)
    )
    db.session.commit()
    db.session.refresh(member)
