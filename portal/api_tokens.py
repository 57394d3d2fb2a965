"""Tokens of the admin API (issue 14): made and revoked by operators on the admin page,
presented by other systems as ``Authorization: Bearer pt_…``.

A token is ``pt_`` and 256 random bits (``secrets.token_urlsafe(32)``), shown once. The
database keeps only its keyed SHA-256 hash (the key derived from SECRET_KEY, as for
recovery codes), so a copy of the database or a backup holds no working token, and a
presented token is found by its hash: an index lookup that compares no secret byte by
byte. An expired or revoked token is refused. The last use is written at most once a
minute, so a busy client does not write the row on every call.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import or_, update

from .extensions import db
from .models import ApiToken
from .twofactor.crypto import code_hasher

PREFIX = "pt_"
SCOPES = ("read", "write")
NAME_MAX = 60
TOUCH_EVERY = timedelta(minutes=1)
# What a token looks like: the prefix and 43 url-safe base64 characters (32 bytes).
SHAPE = re.compile(r"pt_[A-Za-z0-9_-]{43}")

ACTIVE, EXPIRED, REVOKED = "active", "expired", "revoked"


class NameTaken(ValueError):
    """Another token in use has this name (names tell tokens apart in the audit log)."""


def _hash(token: str) -> str:
    return code_hasher().hash(f"api-token:{token}")


def well_formed(token: str) -> bool:
    return SHAPE.fullmatch(token) is not None


def create(
    name: str,
    scope: str,
    *,
    by: str,
    now: datetime,
    expires_at: datetime | None = None,
    commit: bool = True,
) -> tuple[str, ApiToken]:
    """A new token: (the token, to be shown once and never stored, and its row).
    ``commit=False`` leaves the row to the caller's commit (its audit row's)."""
    name = name.strip()
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    if not name or len(name) > NAME_MAX:
        raise ValueError("a token's name is 1 to 60 characters")
    if expires_at is not None and expires_at <= now:
        raise ValueError("a token cannot expire before it is made")
    in_use = db.select(ApiToken.id).where(
        ApiToken.name == name,
        ApiToken.revoked_at.is_(None),
        or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now),
    )
    if db.session.scalar(in_use.limit(1)) is not None:
        raise NameTaken(name)
    token = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        name=name,
        scope=scope,
        token_hash=_hash(token),
        created_by=by[:64],
        created_at=now,
        expires_at=expires_at,
    )
    db.session.add(row)
    if commit:
        db.session.commit()
    else:
        db.session.flush()
    return token, row


def listed() -> list[ApiToken]:
    """Every token, newest first (revoked and expired ones too: the list is their record)."""
    return list(db.session.scalars(db.select(ApiToken).order_by(ApiToken.id.desc())))


def get(token_id: int) -> ApiToken | None:
    if not 0 < token_id < 2**63:
        return None  # no row has such an id (and the database cannot even take it)
    return db.session.get(ApiToken, token_id)


def state(token: ApiToken, now: datetime) -> str:
    if token.revoked_at is not None:
        return REVOKED
    if token.expires_at is not None and token.expires_at <= now:
        return EXPIRED
    return ACTIVE


def revoke(token: ApiToken, now: datetime, *, commit: bool = True) -> bool:
    """Revoke ``token``; False when it already was (by another operator meanwhile: the
    row count decides, so a revocation is recorded once)."""
    revoked = db.session.execute(
        update(ApiToken)
        .where(ApiToken.id == token.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.expire(token, ["revoked_at"])
    if commit:
        db.session.commit()
    return revoked == 1


def lookup(token: str) -> ApiToken | None:
    """The row of a presented token, whatever its state; None for an unknown token."""
    if not well_formed(token):
        return None
    return db.session.scalar(db.select(ApiToken).where(ApiToken.token_hash == _hash(token)))


def authenticate(token: str, now: datetime) -> ApiToken | None:
    """The token's row if it may be used now: known, not expired, not revoked."""
    found = lookup(token)
    return found if found is not None and state(found, now) == ACTIVE else None


def touch(token: ApiToken, now: datetime) -> None:
    """Note the use, at most once a minute. Committed at once when written, so the row
    is not held locked (PostgreSQL) while the call runs: a busy client's parallel calls
    with one token do not wait on each other."""
    written = db.session.execute(
        update(ApiToken)
        .where(
            ApiToken.id == token.id,
            or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= now - TOUCH_EVERY),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if written:
        db.session.commit()
    db.session.expire(token, ["last_used_at"])
