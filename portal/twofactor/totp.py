"""Authenticator app (RFC 6238: SHA1, 6 digits, 30 s steps, ±1 step of clock drift).

Every accepted code moves the credential's ``last_step`` forward with one conditional
UPDATE whose row count decides, so a code (or an older one) is never accepted twice,
even by two racing requests.
"""

from __future__ import annotations

import enum
import hmac
from datetime import datetime, timedelta

import pyotp
import segno
from flask import current_app
from sqlalchemy import delete, or_, update
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import Member, TotpCredential, TotpEnrolment
from . import codes
from .crypto import code_hasher, secret_box

STEP_SECONDS = 30
DIGITS = 6
WINDOW = 1  # steps either side of now


def generate_secret() -> str:
    """160 random bits, the RFC 4226 recommended length, as 32 base32 characters."""
    return pyotp.random_base32(length=32)


def step_of(now: datetime) -> int:
    return int(now.timestamp()) // STEP_SECONDS


def code_at(secret: str, step: int, digits: int = DIGITS) -> str:
    return pyotp.TOTP(secret, digits=digits).generate_otp(step)


def matching_step(secret: str, code: str | None, now: datetime) -> int | None:
    """The time step within the window whose code equals ``code``, or None.

    Every candidate is compared (constant time each), so timing does not reveal which
    step matched.
    """
    wanted = codes.six_digits(code)
    if wanted is None:
        return None
    current = step_of(now)
    found = None
    for step in range(current - WINDOW, current + WINDOW + 1):
        if hmac.compare_digest(code_at(secret, step), wanted) and found is None:
            found = step
    return found


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    """Google Authenticator key-URI: ``otpauth://totp/ISSUER:ACCOUNT?secret=…&issuer=…``
    with ``%20`` for spaces and no base32 padding."""
    return pyotp.TOTP(secret.rstrip("=")).provisioning_uri(name=account, issuer_name=issuer)


def qr_svg(uri: str, title: str) -> str:
    """Inline SVG (no external image, no script), large enough for phone cameras; an
    image named by ``title`` for screen readers."""
    svg = segno.make(uri, error="m").svg_inline(
        scale=5, border=2, dark="#000", light="#fff", title=title, svgclass="qr"
    )
    return svg.replace("<svg ", '<svg role="img" ', 1)


def grouped(secret: str) -> str:
    """``ABCD EFGH …`` for typing the secret by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def credential(member: Member) -> TotpCredential | None:
    return db.session.scalar(db.select(TotpCredential).where(TotpCredential.member_id == member.id))


class Enrolment(enum.Enum):
    OK = "ok"
    WRONG_CODE = "wrong-code"
    # No pending set-up for this session: expired, confirmed, or voided because the
    # set-up was opened in another session since.
    GONE = "gone"


def _nonce_hash(nonce: str) -> str:
    return code_hasher().hash(f"totp-enrolment:{nonce}")


def _pending(member: Member) -> TotpEnrolment | None:
    return db.session.scalar(db.select(TotpEnrolment).where(TotpEnrolment.member_id == member.id))


def _bound_to(pending: TotpEnrolment | None, nonce: str, now: datetime) -> bool:
    """The pending set-up is fresh and was started by the holder of ``nonce``."""
    if pending is None or not nonce:
        return False
    ttl = timedelta(seconds=current_app.config["PORTAL_ENROLMENT_SECONDS"])
    if pending.created_at <= now - ttl:
        return False
    return hmac.compare_digest(pending.session_hash, _nonce_hash(nonce))


def begin_enrolment(member: Member, now: datetime, nonce: str) -> str:
    """The secret to show to the session identified by ``nonce``.

    A pending secret is bound to the session that started it: the session keeps a
    random id, the row keeps only its keyed hash, and confirming needs both. The same
    session reopening the dialog (or double-clicking) sees the same secret, so a QR
    code already scanned stays valid; any other session gets a new secret, which voids
    the old one. So a thief holding the password can neither plant a secret he has
    seen for the owner to enrol, nor see the one the owner enrols.
    """
    pending = _pending(member)
    if _bound_to(pending, nonce, now):
        return secret_box().decrypt(pending.secret_encrypted)
    secret = generate_secret()
    mine = _nonce_hash(nonce)
    ttl = timedelta(seconds=current_app.config["PORTAL_ENROLMENT_SECONDS"])
    for _ in range(3):
        # Void another session's (or an expired) set-up, never a fresh one of ours: a
        # parallel request of this session may have stored it a moment ago.
        db.session.execute(
            delete(TotpEnrolment).where(
                TotpEnrolment.member_id == member.id,
                or_(TotpEnrolment.session_hash != mine, TotpEnrolment.created_at <= now - ttl),
            )
        )
        db.session.add(
            TotpEnrolment(
                member_id=member.id,
                secret_encrypted=secret_box().encrypt(secret),
                session_hash=mine,
                created_at=now,
            )
        )
        try:
            db.session.commit()
            return secret
        except IntegrityError:
            db.session.rollback()
            pending = _pending(member)
            if _bound_to(pending, nonce, now):
                return secret_box().decrypt(pending.secret_encrypted)
    raise RuntimeError("could not store a pending authenticator set-up")


def confirm_enrolment(
    member: Member, code: str | None, now: datetime, nonce: str, *, replace: bool
) -> Enrolment:
    """Prove the pending secret with one code, then make it the member's app.

    Only the session that was shown the secret (``nonce``) can confirm it. ``replace``
    swaps the secret of the existing credential in the same transaction, so the old
    phone stops working only once the new one is proven. Deleting the pending row is
    the guard against two racing confirmations: only one deletes it.
    """
    pending = _pending(member)
    if not _bound_to(pending, nonce, now):
        return Enrolment.GONE
    secret = secret_box().decrypt(pending.secret_encrypted)
    step = matching_step(secret, code, now)
    if step is None:
        return Enrolment.WRONG_CODE
    existing = credential(member)
    if (existing is not None) != replace:
        return Enrolment.GONE
    try:
        taken = db.session.execute(
            delete(TotpEnrolment).where(TotpEnrolment.id == pending.id)
        ).rowcount
        if taken != 1:
            db.session.rollback()
            return Enrolment.GONE
        encrypted = secret_box().encrypt(secret)
        if replace:
            moved = db.session.execute(
                update(TotpCredential)
                .where(TotpCredential.id == existing.id, TotpCredential.member_id == member.id)
                .values(
                    secret_encrypted=encrypted, last_step=step, created_at=now, last_used_at=now
                )
            ).rowcount
            if moved != 1:
                db.session.rollback()
                return Enrolment.GONE
        else:
            db.session.add(
                TotpCredential(
                    member_id=member.id,
                    secret_encrypted=encrypted,
                    last_step=step,
                    created_at=now,
                    last_used_at=now,
                )
            )
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return Enrolment.GONE
    db.session.expire_all()
    return Enrolment.OK


def accept(member: Member, code: str | None, now: datetime, *, commit: bool = True) -> bool:
    """Check a sign-in or re-authentication code; each time step is accepted once.
    ``commit=False``: the spent step is written but committed by the caller, which must
    commit next (an attempt commits it together with its success)."""
    cred = credential(member)
    if cred is None:
        return False
    step = matching_step(secret_box().decrypt(cred.secret_encrypted), code, now)
    if step is None:
        return False
    moved = spend_step(cred, step, now)
    if commit:
        db.session.commit()
    return moved


def spend_step(cred: TotpCredential, step: int, now: datetime) -> bool:
    """Mark ``step`` used, unless it (or a later one) was: one guarded UPDATE, left to
    the caller's commit."""
    moved = db.session.execute(
        update(TotpCredential)
        .where(
            TotpCredential.id == cred.id,
            # The secret the code was checked against: not one replaced meanwhile.
            TotpCredential.secret_encrypted == cred.secret_encrypted,
            TotpCredential.last_step < step,
        )
        .values(last_step=step, last_used_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.expire(cred, ["last_step", "last_used_at"])
    return moved == 1


def replayed(member: Member, code: str | None, now: datetime) -> bool:
    """A right code of a time step already used (ASVS 2.8.5): someone is replaying a
    code they saw, or the owner submitted twice. Refused either way, but reported."""
    cred = credential(member)
    if cred is None:
        return False
    step = matching_step(secret_box().decrypt(cred.secret_encrypted), code, now)
    return step is not None and step <= cred.last_step


def remove(member: Member) -> None:
    db.session.execute(delete(TotpCredential).where(TotpCredential.member_id == member.id))
    db.session.execute(delete(TotpEnrolment).where(TotpEnrolment.member_id == member.id))
    db.session.commit()
    db.session.expire_all()


def rotate_secrets() -> int:
    """Re-encrypt every stored secret under the newest key; returns how many."""
    box = secret_box()
    count = 0
    for model in (TotpCredential, TotpEnrolment):
        for row in db.session.scalars(db.select(model)):
            row.secret_encrypted = box.rotate(row.secret_encrypted)
            count += 1
    db.session.commit()
    return count
