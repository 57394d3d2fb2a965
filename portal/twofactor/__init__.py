"""The two-step verification domain: no request, session or flash in here.

Views pass a member, what was typed and ``now``; these functions answer with a
:class:`Result` and keep the counters, so every entry point applies the same rules.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from sqlalchemy import delete, event, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..extensions import db
from ..models import (
    METHOD_SINCE,
    ContactMethod,
    Member,
    Passkey,
    TotpCredential,
    WebAuthnChallenge,
)
from . import devices, lockout, otp_codes, passkeys, recovery, totp
from .crypto import secret_box
from .lockout import Lock
from .otp_codes import Refusal, SendRefused, Status
from .passkeys import Failure, RelyingParty
from .totp import Enrolment

METHODS = ("app", "email", "sms", "passkey")
CONTACT_METHODS = ("email", "sms")

__all__ = [
    "METHODS",
    "Failure",
    "Lock",
    "Enrolment",
    "NoSecondStep",
    "Outcome",
    "Refusal",
    "RelyingParty",
    "Result",
    "SendRefused",
    "Status",
]


class NoSecondStep(Exception):
    """An operator's reset of a member who has no method: nothing to remove, so no
    session ends, no mail and no audit row (also when a parallel reset won)."""


class Outcome(enum.Enum):
    OK = "ok"
    WRONG = "wrong"
    LOCKED = "locked"
    # Right, but the pending sign-in it was for had been completed meanwhile (by a copy
    # of its cookie): nothing was written.
    SPENT = "spent"


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    # With LOCKED: the lock (its end, or none: until an operator clears it), and
    # whether this attempt caused it (the views then tell the member by mail).
    lock: Lock | None = None
    # For email/SMS codes: why a code was refused (wrong, expired, tries used up).
    status: Status | None = None
    # An app code that was right but already used: a replay, reported to the member.
    replayed: bool = False
    # For passkeys: why the response was refused (a CLONED key is audited), and the key.
    passkey: Failure | None = None
    key: Passkey | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    @property
    def locked_until(self) -> datetime | None:
        return self.lock.until if self.lock is not None else None


def totp_credential(member: Member) -> TotpCredential | None:
    return totp.credential(member)


def contact_method(member: Member, kind: str) -> ContactMethod | None:
    return db.session.scalar(
        db.select(ContactMethod).where(
            ContactMethod.member_id == member.id, ContactMethod.kind == kind
        )
    )


def method_since(member: Member, kind: str) -> datetime | None:
    if kind == "passkey":
        return passkeys.first_added(member)
    row = totp_credential(member) if kind == "app" else contact_method(member, kind)
    return row.created_at if row is not None else None


def enabled_methods(member: Member) -> list[str]:
    """The member's methods in the order they were set up. They are read with the
    member (``Member.app_since`` and its group, models.py): a member loaded for sign-in
    or for a signed-in page brought them in its own SELECT; another costs one query."""
    session = db.session
    changed = (*session.new, *session.dirty, *session.deleted)
    if any(getattr(row, "__tablename__", None) in _METHOD_TABLES for row in changed):
        session.flush()  # a method row not yet written: the flush expires the answer
    found = sorted(
        (since, kind)
        for kind, attribute in METHOD_SINCE.items()
        if (since := getattr(member, attribute)) is not None
    )
    return [kind for _, kind in found]


def forget_enabled_methods(member: Member) -> None:
    """The next enabled_methods() reads afresh, for a decision about what a parallel
    request may have just committed. On PostgreSQL (READ COMMITTED) every statement sees
    the latest commits, so what this request read with the member can be older than a
    row it has read since (SQLite reads one snapshot until the transaction ends)."""
    db.session.expire(member, list(METHOD_SINCE.values()))


_METHOD_TABLES = frozenset(
    model.__tablename__ for model in (TotpCredential, ContactMethod, Passkey)
)


def _forget_all(session: Session) -> None:
    for held in list(session.identity_map.values()):
        if isinstance(held, Member):
            session.expire(held, list(METHOD_SINCE.values()))


_STALE = "portal.methods_stale"


@event.listens_for(Session, "after_flush")
def _note_method_rows(session: Session, flush_context) -> None:
    """A method row added or removed through the session: no member keeps a stale answer
    until the commit (which expires everything anyway). Expired once the flush is over."""
    changed = (*session.new, *session.dirty, *session.deleted)
    if any(getattr(obj, "__tablename__", None) in _METHOD_TABLES for obj in changed):
        session.info[_STALE] = True


@event.listens_for(Session, "after_flush_postexec")
def _forget_methods_on_flush(session: Session, flush_context) -> None:
    if session.info.pop(_STALE, False):
        _forget_all(session)


@event.listens_for(Session, "do_orm_execute")
def _forget_methods_on_write(state) -> None:
    """The same for an UPDATE or DELETE statement on a method table."""
    table = getattr(state.statement, "table", None)
    if not state.is_select and getattr(table, "name", None) in _METHOD_TABLES:
        _forget_all(state.session)


def has_two_factor(member: Member) -> bool:
    return bool(enabled_methods(member))


def usable_methods(member: Member, offered: tuple[str, ...] = METHODS) -> list[str]:
    """The member's methods that the operator's policy still offers, less email while
    the password was just reset by mail (:func:`mailbox_only`)."""
    held = ("email",) if mailbox_only(member) else ()
    return [kind for kind in enabled_methods(member) if kind in offered and kind not in held]


def mailbox_only(member: Member) -> bool:
    """Whether the password was set through a mailed link and no second step has been
    passed since. Then a code by email would let one mailbox past both steps (and any
    skip would let it past the second), so until another method or a recovery code
    has been passed, email does not count and no sign-in skips the second step."""
    reset_at = member.password_reset_at
    if reset_at is None:
        return False
    return member.last_second_step_at is None or member.last_second_step_at < reset_at


def preferred_method(member: Member, offered: tuple[str, ...] = METHODS) -> str | None:
    """The method sign-in starts with: the member's choice, else the first set up (of
    those the policy offers)."""
    methods = usable_methods(member, offered)
    if member.preferred_method in methods:
        return member.preferred_method
    return methods[0] if methods else None


def set_preferred(member: Member, kind: str) -> bool:
    if kind not in enabled_methods(member):
        return False
    member.preferred_method = kind
    db.session.commit()
    return True


def destination(member: Member, kind: str) -> str:
    """Always the member's *current* address: changing it needs no new set-up."""
    return member.email if kind == "email" else member.phone


# --- attempts and the lockout ---------------------------------------------------------


def _attempt(
    member: Member,
    now: datetime,
    check: Callable[[], bool],
    counter: str = lockout.CODE,
    last_passed: datetime | None | lockout.AnyPending = lockout.ANY,
) -> Result:
    """Count the attempt, then check it. ``last_passed``: the member's last passed second
    step as the pending sign-in read it, so a success for a spent sign-in writes nothing."""
    lock = lockout.reserve(member, now, counter)
    if lock is not None:
        return Result(Outcome.LOCKED, lock)
    if check():
        if lockout.record_success(member, now, last_passed=last_passed):
            return Result(Outcome.OK)
        if (lock := lockout.current_lock(member, now, counter)) is not None:
            return Result(Outcome.LOCKED, lock)  # blocked for good meanwhile
        return Result(Outcome.SPENT)
    lock = lockout.record_failure(member, now, counter)
    if lock is not None:
        return Result(Outcome.LOCKED, lock)
    return Result(Outcome.WRONG)


def _contact_check(member: Member, kind: str, code: str | None, now: datetime):
    """A check for _attempt that remembers why an email/SMS code failed."""
    seen: dict[str, Status] = {}

    def check() -> bool:
        status, _ = otp_codes.check(member, f"signin:{kind}", code, now)
        seen["status"] = status
        if status is Status.OK:
            db.session.execute(
                update(ContactMethod)
                .where(ContactMethod.member_id == member.id, ContactMethod.kind == kind)
                .values(last_used_at=now)
            )
            db.session.commit()
        return status is Status.OK

    return check, seen


def verify_code(
    member: Member,
    code: str | None,
    now: datetime,
    method: str = "app",
    last_passed: datetime | None | lockout.AnyPending = lockout.ANY,
    *,
    commit: bool = True,
) -> Result:
    """A second step at sign-in with the chosen method's code. ``commit=False``: an
    accepted app code's writes are left to the caller, which must commit next (the
    sign-in commits them with its audit row)."""
    if method == "app":
        return _app_attempt(member, code, now, last_passed, commit=commit)
    if method not in CONTACT_METHODS or contact_method(member, method) is None:
        return _attempt(member, now, lambda: False)
    check, seen = _contact_check(member, method, code, now)
    result = _attempt(member, now, check, last_passed=last_passed)
    if result.outcome is Outcome.WRONG:
        return Result(Outcome.WRONG, status=seen.get("status"))
    return result


def verify_recovery_code(
    member: Member,
    code: str | None,
    now: datetime,
    last_passed: datetime | None | lockout.AnyPending = lockout.ANY,
) -> Result:
    """A second step with a recovery code (sign-in when the phone is lost). Counted on
    its own, so a lock of the codes does not shut this way back."""
    return _attempt(
        member, now, lambda: recovery.use(member, code, now), lockout.RECOVERY, last_passed
    )


def verify_any(
    member: Member, code: str | None, now: datetime, method: str | None = None
) -> Result:
    """Re-authentication: a current code from an enabled method or an unused recovery
    code, never the password alone. ``method`` names the email/SMS method whose code was
    sent for this; otherwise the app code is tried."""
    if recovery.canonical(code) is not None:
        return verify_recovery_code(member, code, now)
    if method in CONTACT_METHODS:
        if method not in usable_methods(member):
            return _attempt(member, now, lambda: False)  # e.g. email right after a reset
        purpose = f"signin:{method}"
        return _attempt(
            member, now, lambda: otp_codes.check(member, purpose, code, now)[0] is Status.OK
        )
    return _app_attempt(member, code, now)


def _app_attempt(
    member: Member,
    code: str | None,
    now: datetime,
    last_passed: datetime | None | lockout.AnyPending = lockout.ANY,
    *,
    commit: bool = True,
) -> Result:
    """An app code; a wrong one that is a replay of a used code is flagged as such.

    The morning's common case, a right code for a member with no lock, is checked first
    and written once: the step is spent and the counters restarted in two guarded
    UPDATEs committed with the sign-in's audit row (no reservation, no re-reads). If
    a lock, a full counter or a spent sign-in gets in the way, the member's guarded
    UPDATE writes nothing and the attempt takes the counted path below, as does any code
    that is not right or already used (so no more than the allowed number of wrong codes is ever
    answered, however many are sent in parallel). Nothing is rolled back here: the
    caller's uncommitted work stays as it was.

    The fast path is taken only when the member as read shows no lock, a counter with
    room and no block. A lock written by a parallel request after that read (PostgreSQL)
    makes the guarded UPDATE refuse: the answer is LOCKED all the same, and the step of
    the right code is spent, so a code found that way can never be used."""
    cred = member.totp
    step = None
    if cred is not None and lockout.open_for_attempts(member, now):
        step = totp.matching_step(secret_box().decrypt(cred.secret_encrypted), code, now)
    if step is not None and totp.spend_step(cred, step, now):
        if lockout.record_success(
            member, now, last_passed=last_passed, unlocked=True, commit=False
        ):
            if commit:
                db.session.commit()
            return Result(Outcome.OK)
        # Right, but a lock, a full counter or a spent sign-in is in the way: the counted
        # path says which. The step stays spent: the code was used.
        return _attempt(member, now, lambda: True, last_passed=last_passed)
    # The spent step is committed with the success (or the failure) the attempt records.
    result = _attempt(
        member, now, lambda: totp.accept(member, code, now, commit=False), last_passed=last_passed
    )
    if result.outcome is Outcome.WRONG and totp.replayed(member, code, now):
        return Result(Outcome.WRONG, replayed=True)
    return result


def verify_passkey(
    member: Member,
    response: str | None,
    now: datetime,
    rp: RelyingParty,
    session_key: str,
    purpose: str = "second",
    last_passed: datetime | None | lockout.AnyPending = lockout.ANY,
) -> Result:
    """A second step (or re-authentication) with one of the member's passkeys: counted
    against the lock like a code, since a refused response is a failed attempt."""
    seen: dict[str, passkeys.Assertion] = {}

    def check() -> bool:
        seen["assertion"] = passkeys.check_assertion(
            member, response, rp, session_key, purpose, now
        )
        return seen["assertion"].ok

    result = _attempt(member, now, check, last_passed=last_passed)
    assertion = seen.get("assertion")
    if result.outcome is Outcome.WRONG and assertion is not None:
        return Result(Outcome.WRONG, passkey=assertion.failure, key=assertion.key)
    return result


@dataclass(frozen=True)
class PasswordlessResult:
    """A passkey-only sign-in: the member it names (when the passkey is known) and the
    outcome. ``failure`` says why a response was refused; ``lock`` a locked member."""

    member: Member | None
    key: Passkey | None = None
    failure: Failure | None = None
    lock: Lock | None = None

    @property
    def ok(self) -> bool:
        return self.member is not None and self.failure is None and self.lock is None


def passwordless(
    response: str | None, now: datetime, rp: RelyingParty, session_key: str
) -> PasswordlessResult:
    """Sign in with a discoverable passkey and user verification: both steps at once.

    Refusals do not count against the member's lock (anyone can send a response naming
    a credential ID, and must not lock its owner out); the views limit them per address.
    A member whose second step is locked is refused all the same: a lock is a lock."""
    assertion = passkeys.check_assertion(None, response, rp, session_key, "passwordless", now)
    owner = db.session.get(Member, assertion.key.member_id) if assertion.key is not None else None
    if not assertion.ok:
        return PasswordlessResult(owner, assertion.key, assertion.failure)
    if (lock := lockout.current_lock(owner, now)) is not None:
        return PasswordlessResult(owner, assertion.key, lock=lock)
    lockout.record_success(owner, now)
    return PasswordlessResult(owner, assertion.key)


def send_signin_code(member: Member, kind: str, now: datetime) -> str:
    """Send a sign-in (or re-authentication) code by email/SMS; returns where it went.
    Raises :class:`SendRefused` when nothing was sent."""
    from ..messages import signin_code

    target = destination(member, kind)
    if kind not in CONTACT_METHODS or contact_method(member, kind) is None or not target:
        raise SendRefused(Refusal.FAILED)
    if (lock := lockout.current_lock(member, now)) is not None:
        raise SendRefused(Refusal.LOCKED, until=lock.until)  # no SMS bill for an unusable code
    otp_codes.send(member, f"signin:{kind}", kind, target, now, partial(signin_code, member))
    return target


# --- turning methods on and off -------------------------------------------------------


def _first_method_bookkeeping(member: Member, kind: str, first: bool, now: datetime) -> list[str]:
    lockout.record_success(member, now)
    if first:
        member.preferred_method = kind
        db.session.commit()
        return recovery.issue(member, now)
    return []


def enable_app(
    member: Member, code: str | None, now: datetime, nonce: str, *, replace: bool
) -> tuple[Enrolment, list[str]]:
    """Confirm the pending secret shown to the session holding ``nonce``. With OK come
    new recovery codes when this is the first method (``[]`` otherwise)."""
    first = not has_two_factor(member)
    status = totp.confirm_enrolment(member, code, now, nonce, replace=replace)
    if status is not Enrolment.OK:
        return status, []
    return status, _first_method_bookkeeping(member, "app", first and not replace, now)


def enable_passkey(
    member: Member, response: str | None, now: datetime, rp: RelyingParty, session_key: str
) -> tuple[Passkey | Failure, list[str]]:
    """Keep the passkey the browser just made. With it come new recovery codes when it
    is the member's first second step (``[]`` otherwise, and for further keys)."""
    first = not has_two_factor(member)
    outcome = passkeys.finish_registration(member, response, rp, session_key, now)
    if isinstance(outcome, Failure):
        return outcome, []
    return outcome, _first_method_bookkeeping(member, "passkey", first, now)


def remove_passkey(member: Member, key_id: int) -> str | None:
    """Remove one passkey; returns its name, or None when the member has no such key.
    The last one going takes the method with it (see :func:`disable_method`)."""
    names = passkeys.remove(member, key_id)
    if not names:
        return None
    _after_removal(member)
    return names[0]


def _after_removal(member: Member) -> None:
    devices.forget(member)
    if not has_two_factor(member):
        recovery.void(member)


def send_setup_code(member: Member, kind: str, now: datetime) -> str:
    """Send the code that proves the member receives mail/SMS at the current address."""
    from ..messages import setup_code

    target = destination(member, kind)
    if not target:
        raise SendRefused(Refusal.FAILED)
    otp_codes.send(member, f"setup:{kind}", kind, target, now, partial(setup_code, member))
    return target


def enable_contact(
    member: Member, kind: str, code: str | None, now: datetime
) -> tuple[Status, list[str] | None]:
    """Turn on email/SMS with the code sent to the current address. Returns the code
    status and, when OK, new recovery codes (first method) or ``[]``."""
    first = not has_two_factor(member)
    status, sent_to = otp_codes.check(member, f"setup:{kind}", code, now)
    if status is not Status.OK:
        return status, None
    otp_codes.discard(member, f"change:{kind}")  # a change begun before does not carry over
    if sent_to != destination(member, kind):
        return Status.EXPIRED, None  # the address changed after the code was sent
    try:
        db.session.add(
            ContactMethod(member_id=member.id, kind=kind, created_at=now, last_used_at=now)
        )
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # a parallel request enabled it first
        return Status.OK, []
    return Status.OK, _first_method_bookkeeping(member, kind, first, now)


def disable_method(member: Member, kind: str) -> None:
    """Turning off the last method also voids the recovery codes (they would otherwise
    be a way back into an account that has no second step). Remembered devices are
    forgotten with any method: the skip was granted on the strength of the old set."""
    if kind == "app":
        totp.remove(member)
    elif kind == "passkey":
        passkeys.remove(member)
    else:
        db.session.execute(
            delete(ContactMethod).where(
                ContactMethod.member_id == member.id, ContactMethod.kind == kind
            )
        )
        db.session.commit()
        otp_codes.discard(member, f"signin:{kind}", f"setup:{kind}", f"change:{kind}")
    _after_removal(member)


def reset_all(member: Member, *, now: datetime | None = None, commit: bool = True) -> list[str]:
    """The operator's 無効化: every method, pending set-up, code, recovery code and
    remembered device of the member goes, and every session ends, in one transaction.
    The member can then sign in with the password alone and set 2FA up again.

    Returns the methods removed. Raises :class:`NoSecondStep`, changing nothing, when
    the member has none: a second press must not end sessions or mail the member again.
    The rows deleted are counted too, so of two resets racing only one goes through.
    ``now`` is kept as ``tfa_reset_at``: the member's next sign-in says on screen that an
    operator turned the second step off (see :func:`take_reset_notice`)."""
    from ..models import OneTimeCode, RecoveryCode, RememberedDevice, TotpEnrolment

    methods = enabled_methods(member)
    if not methods:
        raise NoSecondStep
    removed = sum(
        db.session.execute(delete(model).where(model.member_id == member.id)).rowcount
        for model in (TotpCredential, ContactMethod, Passkey)
    )
    if not removed:
        raise NoSecondStep  # another reset removed them since: nothing was changed here
    for model in (
        TotpEnrolment,
        RecoveryCode,
        OneTimeCode,
        RememberedDevice,
        WebAuthnChallenge,
    ):
        db.session.execute(delete(model).where(model.member_id == member.id))
    db.session.execute(
        update(Member)
        .where(Member.id == member.id)
        .values(
            session_generation=Member.session_generation + 1,
            preferred_method=None,
            tfa_reset_at=now or datetime.now(UTC),
            # Nothing left to hold email back from; a method set up anew starts clean.
            password_reset_at=None,
            **lockout.CLEARED,
        )
    )
    if commit:
        db.session.commit()
        db.session.expire_all()
    return methods


def take_reset_notice(member: Member) -> datetime | None:
    """When an operator reset this member's second step, if the member has not been told
    on screen yet; cleared as it is read, so of two sign-ins racing only one says it."""
    when = db.session.scalar(db.select(Member.tfa_reset_at).where(Member.id == member.id))
    if when is None:
        return None
    cleared = db.session.execute(
        update(Member)
        .where(Member.id == member.id, Member.tfa_reset_at == when)
        .values(tfa_reset_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return when if cleared == 1 else None
