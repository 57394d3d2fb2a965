"""One-time codes sent by email or SMS.

6 digits from ``secrets``, valid 10 minutes, at most 5 wrong tries per code, only the
latest code per member and purpose is valid, a resend waits 60 s. Codes are stored as
keyed hashes bound to the member and purpose, compared in constant time, and accepted
once (a conditional UPDATE decides). Sending goes through :mod:`portal.notify`.
"""

from __future__ import annotations

import enum
import hmac
import logging
import math
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, func, text, update

from .. import notify
from ..extensions import db
from ..models import CodeSend, Member, OneTimeCode
from . import codes
from .crypto import code_hasher

log = logging.getLogger(__name__)

SMS_LOCK_KEY = 0x534D53  # "SMS": the advisory lock that serialises the site-wide cap
MEMBER_DAILY_LIMIT = {
    "email": "PORTAL_EMAIL_MEMBER_DAILY_LIMIT",
    "sms": "PORTAL_SMS_MEMBER_DAILY_LIMIT",
}


class Status(enum.Enum):
    OK = "ok"
    WRONG = "wrong"
    EXPIRED = "expired"  # too old, or none was ever sent
    EXHAUSTED = "exhausted"  # 5 wrong tries: void, a new code is needed
    USED = "used"  # this very code was already used (a second submit, the back button)


class Refusal(enum.Enum):
    TOO_SOON = "too-soon"
    MEMBER_CAP = "member-cap"
    SITE_CAP = "site-cap"
    FAILED = "failed"
    LOCKED = "locked"  # the second step is locked: a code could not be used anyway


class SendRefused(Exception):
    """Nothing was sent; ``seconds`` is the wait for TOO_SOON, ``until`` the lock's end."""

    def __init__(self, reason: Refusal, seconds: int = 0, until: datetime | None = None):
        super().__init__(reason.value)
        self.reason = reason
        self.seconds = seconds
        self.until = until


def _hash(member: Member, purpose: str, code: str) -> str:
    return code_hasher().hash(f"otp:{member.id}:{purpose}:{code}")


def _latest(member: Member, purpose: str) -> OneTimeCode | None:
    return db.session.scalar(
        db.select(OneTimeCode)
        .where(OneTimeCode.member_id == member.id, OneTimeCode.purpose == purpose)
        .order_by(OneTimeCode.id.desc())
        .limit(1)
    )


def pending_destination(member: Member, purpose: str, now: datetime) -> str | None:
    """Where the current, still usable code for this purpose went (None if none)."""
    row = _latest(member, purpose)
    if row is None or row.used_at is not None or row.expires_at <= now:
        return None
    if row.tries >= current_app.config["PORTAL_OTP_MAX_TRIES"]:
        return None
    return row.destination


def resend_wait(member: Member, purpose: str, now: datetime) -> int:
    """Whole seconds (rounded up) until a new code may be sent for this purpose; 0 when
    one may be sent now. Pages show it as a countdown beside コードを再送する."""
    last = _latest(member, purpose)
    if last is None:
        return 0
    wait = timedelta(seconds=current_app.config["PORTAL_OTP_RESEND_SECONDS"])
    left = last.created_at + wait - now
    return max(1, math.ceil(left.total_seconds())) if left > timedelta(0) else 0


def _check_caps(member: Member, channel: str, now: datetime) -> None:
    """Daily caps: per member for both channels (a flood of mail is abuse too), and
    site-wide for SMS (toll fraud)."""
    day_ago = now - timedelta(days=1)
    mine = db.session.scalar(
        db.select(func.count(CodeSend.id)).where(
            CodeSend.member_id == member.id,
            CodeSend.channel == channel,
            CodeSend.sent_at > day_ago,
        )
    )
    limit_key = (
        "PORTAL_SMS_MEMBER_DAILY_LIMIT" if channel == "sms" else "PORTAL_EMAIL_MEMBER_DAILY_LIMIT"
    )
    if mine >= current_app.config[limit_key]:
        log.warning("%s refused: member %s reached the daily cap", channel, member.login_key)
        raise SendRefused(Refusal.MEMBER_CAP)
    if channel != "sms":
        return
    site = db.session.scalar(
        db.select(func.count(CodeSend.id)).where(
            CodeSend.channel == "sms", CodeSend.sent_at > day_ago
        )
    )
    if site >= current_app.config["PORTAL_SMS_DAILY_LIMIT"]:
        log.warning("SMS refused: the site reached PORTAL_SMS_DAILY_LIMIT (%s)", site)
        raise SendRefused(Refusal.SITE_CAP)


def _serialise(member: Member, channel: str) -> None:
    """Take the write lock before reading the counters, so two racing sends cannot both
    pass the 60-second rule or the daily caps. A write to the member row serialises one
    member on every backend (SQLite has one writer; PostgreSQL locks the row); the
    site-wide SMS cap also takes a transaction-scoped advisory lock on PostgreSQL."""
    db.session.execute(
        update(Member)
        .where(Member.id == member.id)
        .values(session_generation=Member.session_generation)
    )
    if channel == "sms" and db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SMS_LOCK_KEY})


def send(
    member: Member,
    purpose: str,
    channel: str,
    destination: str,
    now: datetime,
    message: Callable[[str, str], tuple[str, str]],
) -> None:
    """Make a new code, book it (and the send) under the lock, then send it.

    ``message(code, channel)`` returns (subject, text); SMS uses the text alone.
    Refusals (too soon, caps) raise :class:`SendRefused` before anything is sent. A
    failed send voids the code but keeps its booking: it still counts toward the
    60-second spacing and the daily caps (a gateway that timed out may still deliver,
    and bill, it; a failing mail server is not a way around the spacing).
    """
    _serialise(member, channel)
    if seconds := resend_wait(member, purpose, now):
        db.session.rollback()
        raise SendRefused(Refusal.TOO_SOON, seconds)
    try:
        _check_caps(member, channel, now)
    except SendRefused:
        db.session.rollback()
        raise
    code = f"{secrets.randbelow(10**6):06d}"
    db.session.execute(
        delete(OneTimeCode).where(
            OneTimeCode.member_id == member.id, OneTimeCode.purpose == purpose
        )
    )
    booked = OneTimeCode(
        member_id=member.id,
        purpose=purpose,
        channel=channel,
        destination=destination,
        code_hash=_hash(member, purpose, code),
        created_at=now,
        expires_at=now + timedelta(seconds=current_app.config["PORTAL_OTP_SECONDS"]),
    )
    db.session.add(booked)
    db.session.add(CodeSend(member_id=member.id, channel=channel, sent_at=now))
    db.session.commit()  # the booking is visible to racing requests; the lock is free

    subject, body = message(code, channel)
    try:
        if channel == "sms":
            notify.send_sms(destination, body)
        else:
            notify.send_email(destination, subject, body)
    except notify.DeliveryError:
        # Void, not delete: the row's created_at keeps the 60-second spacing.
        db.session.execute(
            update(OneTimeCode)
            .where(OneTimeCode.id == booked.id, OneTimeCode.member_id == member.id)
            .values(expires_at=OneTimeCode.created_at)
        )
        db.session.commit()
        log.warning("one-time code for %s (%s) could not be sent", member.login_key, purpose)
        raise SendRefused(Refusal.FAILED) from None


def check(
    member: Member, purpose: str, raw: str | None, now: datetime
) -> tuple[Status, str | None]:
    """Check a typed code; returns the status and, when OK, the destination it went to.

    The try is counted and the stored hash read back in one conditional
    ``UPDATE … RETURNING``, before the comparison: of any number of parallel guesses
    at one code, at most PORTAL_OTP_MAX_TRIES are ever compared.
    """
    row = _latest(member, purpose)
    if row is not None and row.used_at is not None:
        return _used_or_expired(member, purpose, raw, row.code_hash), None
    if row is None or row.expires_at <= now:
        return Status.EXPIRED, None
    # This very code, by more than its id: another request may delete it meanwhile (a
    # resend, the method turned off), and SQLite may give the next code the same id.
    this_code = (
        OneTimeCode.id == row.id,
        OneTimeCode.member_id == member.id,
        OneTimeCode.purpose == purpose,
        OneTimeCode.created_at == row.created_at,
        OneTimeCode.code_hash == row.code_hash,
    )
    limit = current_app.config["PORTAL_OTP_MAX_TRIES"]
    counted = db.session.execute(
        update(OneTimeCode)
        .where(
            *this_code,
            OneTimeCode.used_at.is_(None),
            OneTimeCode.expires_at > now,
            OneTimeCode.tries < limit,
        )
        .values(tries=OneTimeCode.tries + 1)
        .returning(OneTimeCode.code_hash, OneTimeCode.destination, OneTimeCode.tries)
        .execution_options(synchronize_session=False)
    ).first()
    db.session.commit()
    if counted is None:
        # Used up, or gone since it was read (used, replaced, voided): which one?
        still = db.session.execute(
            db.select(OneTimeCode.tries, OneTimeCode.used_at).where(*this_code)
        ).first()
        if still is not None and still.used_at is not None:
            return _used_or_expired(member, purpose, raw, row.code_hash), None
        if still is not None and still.tries >= limit:
            return Status.EXHAUSTED, None
        return Status.EXPIRED, None
    code_hash, destination, tries = counted
    code = codes.six_digits(raw)
    if code is not None and hmac.compare_digest(_hash(member, purpose, code), code_hash):
        used = db.session.execute(
            update(OneTimeCode)
            .where(*this_code, OneTimeCode.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        db.session.commit()
        # used == 0: a parallel request with the same code used it a moment ago.
        return (Status.OK, destination) if used == 1 else (Status.USED, None)
    return (Status.EXHAUSTED if tries >= limit else Status.WRONG), None


def _used_or_expired(member: Member, purpose: str, raw: str | None, code_hash: str) -> Status:
    """The latest code was used: typing it again is told as such (a second submit, the
    back button); any other code finds no live code. A used code is worth nothing, so
    comparing against it counts no try."""
    # Only a six-digit code was ever hashed, so nothing else can match.
    typed = codes.normalise(raw)
    if typed and hmac.compare_digest(_hash(member, purpose, typed), code_hash):
        return Status.USED
    return Status.EXPIRED


def discard(member: Member, *purposes: str) -> None:
    """Void outstanding codes, e.g. when the method or address they belong to changes."""
    db.session.execute(
        delete(OneTimeCode).where(
            OneTimeCode.member_id == member.id, OneTimeCode.purpose.in_(purposes)
        )
    )
    db.session.commit()
