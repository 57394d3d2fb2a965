"""What the views do after a refused second step.

A lock: one audit row for the lock (not one per refused attempt), and a mail to the
member at the first lock since their last success and at the permanent one: a string of
wrong codes means someone knows the password. A replayed app code (right, but already
used): an audit row and, at most every 15 minutes, a mail (ASVS 2.8.5)."""

from __future__ import annotations

from datetime import datetime, timedelta

from .. import audit, notices, sessions
from ..models import Member
from ..texts import lock_message
from ..twofactor import Lock

REPLAY_NOTICE_INTERVAL = timedelta(minutes=15)


def report(member: Member, lock: Lock | None, method: str | None) -> None:
    if lock is None or not lock.new:
        return
    if lock.permanent:
        audit.record_request("signin.blocked", subject=member, method=method)
        notices.send(member, "tfa_blocked", now=sessions.now(), **notices.request_details())
        return
    audit.record_request("signin.locked", subject=member, method=method, until=lock.until)
    if lock.first:
        notices.send(
            member, "tfa_locked", now=sessions.now(), until=lock.until, **notices.request_details()
        )


def refusal(lock: Lock, now: datetime) -> tuple[str, int, int | None]:
    """The message, status and Retry-After for a locked second step: 429 until the
    lock's end, 423 (Locked) when only an operator can lift it: no time to retry after."""
    if lock.permanent:
        return lock_message(None), 423, None
    return lock_message(lock.until, now), 429, max(1, int((lock.until - now).total_seconds()))


def report_replay(member: Member, method: str | None) -> None:
    now = sessions.now()
    mailed_lately = audit.happened_since(
        "signin.code_replayed", member, now - REPLAY_NOTICE_INTERVAL
    )
    audit.record_request("signin.code_replayed", subject=member, method=method)
    if not mailed_lately:
        notices.send(member, "code_replayed", now=now, **notices.request_details())
