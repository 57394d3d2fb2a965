"""What happens when a wrong code locks the second step: one audit row for the lock
(not one per refused attempt), and a mail to the member at the first lock since their
last success and at the permanent one: a string of wrong codes means someone knows the
password."""

from __future__ import annotations

from datetime import datetime

from .. import audit, notices, sessions
from ..models import Member
from ..texts import lock_message
from ..twofactor import Lock


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
