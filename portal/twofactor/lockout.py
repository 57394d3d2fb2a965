"""Bounding guesses at the second step (NIST SP 800-63B 5.2.2).

Two counters per member, kept in the member row (not the session, so a new password
sign-in resets nothing):

- ``code``: app, email and SMS codes. 10 consecutive wrong codes lock them for 15
  minutes; each further lock since the last success lasts 4 times longer (1 h, 4 h,
  16 h, capped at a day), so a password holder gets a few dozen guesses a day, not 960.
- ``recovery``: recovery codes count separately, so a password holder who locks the
  codes cannot keep the owner out of the recovery-code way back (the codes carry 50
  bits each: they cannot be guessed anyway).

Both feed one streak of consecutive failures. At 100 (PORTAL_TFA_BLOCK_FAILURES) the
second step is locked for good — recovery codes included — until an operator clears it.
A success with any method resets everything.

Each attempt is *reserved* (counted) before its code is checked, with one conditional
UPDATE, so parallel requests cannot slip more than the allowed number of guesses past
the check: at most ``limit`` attempts are ever in flight or done before the lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import or_, update

from ..extensions import db
from ..models import Member

CODE = "code"
RECOVERY = "recovery"
GROWTH = 4  # each further lock lasts this many times longer


@dataclass(frozen=True)
class Counter:
    failures: str
    locked_until: str
    locks: str


COUNTERS = {
    CODE: Counter("tfa_failures", "tfa_locked_until", "tfa_locks"),
    RECOVERY: Counter("recovery_failures", "recovery_locked_until", "recovery_locks"),
}


@dataclass(frozen=True)
class Lock:
    """Why an attempt may not go ahead (or what a failure just caused)."""

    until: datetime | None  # None: locked until an operator clears it
    first: bool = False  # the first lock since the member's last success
    new: bool = False  # this very attempt caused it

    @property
    def permanent(self) -> bool:
        return self.until is None


def _limit() -> int:
    return current_app.config["PORTAL_TFA_MAX_FAILURES"]


def _block_at() -> int:
    return current_app.config["PORTAL_TFA_BLOCK_FAILURES"]


def lock_duration(previous_locks: int) -> timedelta:
    """15 minutes, then 1 h, 4 h, 16 h…, never more than PORTAL_TFA_LOCK_MAX_SECONDS."""
    base = current_app.config["PORTAL_TFA_LOCK_SECONDS"]
    cap = current_app.config["PORTAL_TFA_LOCK_MAX_SECONDS"]
    return timedelta(seconds=min(cap, base * GROWTH ** min(previous_locks, 16)))


def _column(counter: str, part: str):
    return getattr(Member, getattr(COUNTERS[counter], part))


def _not_locked(counter: str, now: datetime):
    until = _column(counter, "locked_until")
    return or_(until.is_(None), until <= now)


def _refresh(member: Member) -> None:
    db.session.refresh(member)


def blocked(member: Member) -> bool:
    """Locked for good: only an operator can clear it."""
    db.session.refresh(member, ["tfa_blocked_at"])
    return member.tfa_blocked_at is not None


def current_lock(
    member: Member, now: datetime, counter: str = CODE, *, reread: bool = True
) -> Lock | None:
    """The lock that forbids an attempt with ``counter`` now, if any. ``reread=False``
    for a member this request has just read (a page showing the lock up front)."""
    if reread:
        _refresh(member)
    if member.tfa_blocked_at is not None:
        return Lock(None)
    until = getattr(member, COUNTERS[counter].locked_until)
    return Lock(until) if until is not None and until > now else None


def open_for_attempts(member: Member, now: datetime) -> bool:
    """Whether the member as read (no re-read) may make a code attempt: no lock, no
    block, room left in the counter and the streak. The guarded writes decide in the
    end; this only keeps the uncounted fast path of app codes to members it can serve."""
    return (
        current_lock(member, now, CODE, reread=False) is None
        and member.tfa_failures < _limit()
        and member.tfa_streak < _block_at()
    )


def reserve(member: Member, now: datetime, counter: str = CODE) -> Lock | None:
    """Count one attempt before checking it. Returns None when the attempt may go
    ahead, else the lock that forbids it."""
    failures = _column(counter, "failures")
    reserved = db.session.execute(
        update(Member)
        .where(
            Member.id == member.id,
            Member.tfa_blocked_at.is_(None),
            Member.tfa_streak < _block_at(),
            _not_locked(counter, now),
            failures < _limit(),
        )
        .values({failures: failures + 1, Member.tfa_streak: Member.tfa_streak + 1})
    ).rowcount
    db.session.commit()
    if reserved:
        return None
    if (lock := current_lock(member, now, counter)) is not None:
        return lock
    # The counter is full (its attempts still in flight, or a crash left it so): make
    # sure a lock with an end exists, so the member is not stuck for ever.
    return (
        record_failure(member, now, counter)
        or current_lock(member, now, counter)
        or Lock(now + lock_duration(0))
    )


def record_failure(member: Member, now: datetime, counter: str = CODE) -> Lock | None:
    """The reserved attempt was wrong (it is already counted). Returns the lock this
    failure caused, if any: permanent at the streak limit, else temporary when the
    counter is full."""
    blocked_now = db.session.execute(
        update(Member)
        .where(
            Member.id == member.id,
            Member.tfa_blocked_at.is_(None),
            Member.tfa_streak >= _block_at(),
        )
        .values(tfa_blocked_at=now)
    ).rowcount
    db.session.commit()
    if blocked_now:
        _refresh(member)
        return Lock(None, new=True)
    return _lock_if_full(member, now, counter)


def _lock_if_full(member: Member, now: datetime, counter: str) -> Lock | None:
    failures, until, locks = (_column(counter, p) for p in ("failures", "locked_until", "locks"))
    for _ in range(3):
        _refresh(member)
        previous = getattr(member, COUNTERS[counter].locks)
        end = now + lock_duration(previous)
        locked = db.session.execute(
            update(Member)
            .where(
                Member.id == member.id,
                _not_locked(counter, now),
                failures >= _limit(),
                locks == previous,  # a parallel lock moved it on: read again
            )
            .values({failures: 0, until: end, locks: locks + 1})
        ).rowcount
        db.session.commit()
        if locked:
            _refresh(member)
            return Lock(end, first=previous == 0, new=True)
        if current_lock(member, now, counter) is not None:
            return None  # someone else's attempt locked it
        if getattr(member, COUNTERS[counter].failures) < _limit():
            return None
    return None


_RESTARTED = {
    "tfa_failures": 0,
    "tfa_locked_until": None,
    "tfa_locks": 0,
    "recovery_failures": 0,
    "recovery_locked_until": None,
    "recovery_locks": 0,
    "tfa_streak": 0,
}
CLEARED = _RESTARTED | {"tfa_blocked_at": None}


class AnyPending:
    """No pending sign-in to guard: re-authentication, set-up, an operator's clear."""


ANY = AnyPending()


def record_success(
    member: Member,
    now: datetime,
    *,
    last_passed: datetime | None | AnyPending = ANY,
    unlocked: bool = False,
    commit: bool = True,
) -> bool:
    """The owner proved themselves: every counter and lock starts again, and the time of
    this second step is kept. False (nothing written) when the member was blocked for
    good meanwhile, when ``last_passed`` is given and a second step has been passed
    since it was read (the pending sign-in is spent: a copy of its cookie completed it),
    or, with ``unlocked``, when a lock or a full counter forbids the attempt (it was not
    reserved first). ``commit=False`` leaves the commit to the caller, which must
    commit next (a sign-in's audit row lands with it)."""
    conditions = [Member.id == member.id, Member.tfa_blocked_at.is_(None)]
    if not isinstance(last_passed, AnyPending):
        conditions.append(Member.last_second_step_at.is_not_distinct_from(last_passed))
    if unlocked:
        conditions += [
            Member.tfa_streak < _block_at(),
            _not_locked(CODE, now),
            _column(CODE, "failures") < _limit(),
        ]
    changed = db.session.execute(
        update(Member)
        .where(*conditions)
        .values(**_RESTARTED, last_second_step_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if commit:
        db.session.commit()
        _refresh(member)
    else:
        db.session.expire(member, [*_RESTARTED, "last_second_step_at", "updated_at"])
    return changed == 1


def clear(member: Member) -> None:
    """An operator's unlock: every lock and counter, the permanent one included."""
    db.session.execute(update(Member).where(Member.id == member.id).values(**CLEARED))
    db.session.commit()
    _refresh(member)


def is_locked(member: Member, now: datetime) -> bool:
    """Any lock at all (for the admin list and member page)."""
    return current_lock(member, now, CODE) is not None or (
        current_lock(member, now, RECOVERY) is not None
    )
