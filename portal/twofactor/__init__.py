"""The two-step verification domain: no request, session or flash in here.

Views pass a member, what was typed and ``now``; these functions answer with a
:class:`Outcome` and keep the counters, so every entry point applies the same rules.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ..models import Member, TotpCredential
from . import lockout, recovery, totp


class Outcome(enum.Enum):
    OK = "ok"
    WRONG = "wrong"
    LOCKED = "locked"


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    locked_until: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


def totp_credential(member: Member) -> TotpCredential | None:
    return totp.credential(member)


def enabled_methods(member: Member) -> list[str]:
    """Method keys in the order they are offered. Email/SMS join in a later issue."""
    return ["app"] if totp_credential(member) is not None else []


def has_two_factor(member: Member) -> bool:
    return bool(enabled_methods(member))


def _attempt(member: Member, now: datetime, check: Callable[[], bool]) -> Result:
    until = lockout.reserve(member, now)
    if until is not None:
        return Result(Outcome.LOCKED, until)
    if check():
        lockout.record_success(member, now)
        return Result(Outcome.OK)
    until = lockout.record_failure(member, now)
    if until is not None:
        return Result(Outcome.LOCKED, until)
    return Result(Outcome.WRONG)


def verify_code(member: Member, code: str | None, now: datetime) -> Result:
    """A second step with an authenticator-app code (sign-in)."""
    return _attempt(member, now, lambda: totp.accept(member, code, now))


def verify_recovery_code(member: Member, code: str | None, now: datetime) -> Result:
    """A second step with a recovery code (sign-in when the phone is lost)."""
    return _attempt(member, now, lambda: recovery.use(member, code, now))


def verify_any(member: Member, code: str | None, now: datetime) -> Result:
    """Re-authentication: a current code from an enabled method or an unused recovery
    code, never the password alone."""

    def check() -> bool:
        if recovery.canonical(code) is not None:
            return recovery.use(member, code, now)
        return totp.accept(member, code, now)

    return _attempt(member, now, check)


def disable_app(member: Member) -> None:
    """Turning off the last method also voids the recovery codes (they would otherwise
    be a way back into an account that has no second step)."""
    totp.remove(member)
    if not has_two_factor(member):
        recovery.void(member)


def enable_app(
    member: Member, code: str | None, now: datetime, *, replace: bool
) -> list[str] | None:
    """Confirm the pending secret. Returns new recovery codes when this is the first
    method, ``[]`` when the member already had codes, None for a wrong code."""
    first = not has_two_factor(member)
    if not totp.confirm_enrolment(member, code, now, replace=replace):
        return None
    lockout.record_success(member, now)
    if first:
        return recovery.issue(member, now)
    return []
