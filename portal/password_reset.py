"""パスワードをお忘れの方: single-use links to set a new password.

A link carries a random token (``secrets.token_urlsafe(32)``, 256 bits); the database
keeps only its keyed SHA-256 hash, so a copy of the database (or a backup) cannot be
turned back into a working link. A link lives 30 minutes, works once, and dies when a
newer one is issued for the member or the password changes by any route
(:func:`portal.members.set_password` voids every pending link).

The reset itself changes only the password: the second step stays as it was, so a
mailbox alone never gets past two-step verification.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, func, update

from . import twofactor
from .extensions import db
from .models import Member, PasswordReset
from .twofactor.crypto import code_hasher

MINUTES = 30
LIFETIME = timedelta(minutes=MINUTES)
# Rows older than this (used, voided or expired) are cleared when a new link is issued.
KEEP_FOR = timedelta(days=1)


def _hash(token: str) -> str:
    return code_hasher().hash(f"password-reset:{token}")


def member_for(identifier: str) -> Member | None:
    """The one member a typed login ID or email address names, or None.

    Login IDs never contain "@", so the two cannot be confused. An address shared by
    several members names none of them: the link would reach the wrong person's choice.
    """
    value = identifier.strip()
    if not value or len(value) > 254:
        return None
    if "@" not in value:
        return db.session.scalar(db.select(Member).where(Member.login_key == value.lower()))
    found = list(
        db.session.scalars(
            db.select(Member).where(func.lower(Member.email) == value.lower()).limit(2)
        )
    )
    return found[0] if len(found) == 1 else None


def issue(
    member: Member, now: datetime, requested_by: str = "", lifetime: timedelta = LIFETIME
) -> str:
    """A new link for ``member``; returns the token (to be mailed, never stored or
    logged). Every earlier link of the member dies with it. ``lifetime``: an invitation
    (portal/invitations.py) lives days, not minutes."""
    token = secrets.token_urlsafe(32)
    db.session.execute(delete(PasswordReset).where(PasswordReset.member_id == member.id))
    db.session.execute(delete(PasswordReset).where(PasswordReset.expires_at < now - KEEP_FOR))
    db.session.add(
        PasswordReset(
            member_id=member.id,
            token_hash=_hash(token),
            created_at=now,
            expires_at=now + lifetime,
            requested_by=requested_by[:64],
        )
    )
    db.session.commit()
    return token


def _live(*conditions, now: datetime) -> PasswordReset | None:
    return db.session.scalar(
        db.select(PasswordReset).where(
            *conditions, PasswordReset.used_at.is_(None), PasswordReset.expires_at > now
        )
    )


def find(token: str, now: datetime) -> PasswordReset | None:
    """The unused, unexpired link this token opens, or None."""
    if not token or len(token) > 128:
        return None
    return _live(PasswordReset.token_hash == _hash(token), now=now)


def opened(token_hash: str, now: datetime) -> PasswordReset | None:
    """The same link by its hash, while it still works: the browser that opened the
    link keeps the hash (never the token) to show the form. Not the row id: ids can be
    reused once rows are deleted, and a newer link must not inherit an older one's
    browser."""
    if not isinstance(token_hash, str) or len(token_hash) != 64:
        return None
    return _live(PasswordReset.token_hash == token_hash, now=now)


def member_of(reset: PasswordReset) -> Member:
    return db.session.get_one(Member, reset.member_id)


def use(token_hash: str, now: datetime) -> Member | None:
    """Spend the link, once: of two racing requests only one gets the member (the
    row count decides). The caller then sets the password, which voids the rest."""
    spent = db.session.execute(
        update(PasswordReset)
        .where(
            PasswordReset.token_hash == token_hash,
            PasswordReset.used_at.is_(None),
            PasswordReset.expires_at > now,
        )
        .values(used_at=now)
    ).rowcount
    if spent != 1:
        db.session.rollback()
        return None
    reset = db.session.scalars(
        db.select(PasswordReset).where(PasswordReset.token_hash == token_hash)
    ).one()
    if twofactor.enabled_methods(member_of(reset)):
        # Until another second step is passed, email does not count as one (one
        # mailbox must never pass both steps): see twofactor.mailbox_only.
        db.session.execute(
            update(Member).where(Member.id == reset.member_id).values(password_reset_at=now)
        )
    db.session.commit()
    return member_of(reset)


def void(member: Member) -> None:
    """Every unused link of the member dies, e.g. when the email address changes: a link
    mailed to the old address must not outlive it."""
    db.session.execute(
        delete(PasswordReset).where(
            PasswordReset.member_id == member.id, PasswordReset.used_at.is_(None)
        )
    )
    db.session.commit()
