"""The signed-in session and the pending one between the two steps.

The cookie session is signed, not encrypted: it holds only ids, a generation number
and timestamps, never a secret.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from flask import Flask, current_app, flash, g, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from .extensions import db, login_manager
from .models import Member, SpentSignIn
from .web.htmx import is_htmx, redirect_to

PENDING = "pending"
SEEN_RESOLUTION = 60  # seconds between writes of a session's last-seen time


def now() -> datetime:
    return datetime.now(UTC)


def safe_next(target: str | None) -> str | None:
    """Only a local path: ``/…``, never ``//host``, a backslash (browsers read it as a
    slash), a scheme, or control characters."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


@dataclass
class Pending:
    member: Member
    next: str | None
    method: str  # the second-step method being used: "app", "email" or "sms"
    nonce: str = ""


def begin_pending(member: Member, next_url: str | None, method: str) -> None:
    """Password accepted, second step owed. Nothing from before sign-in is carried over."""
    session.clear()
    session[PENDING] = {
        "mid": member.id,
        "gen": member.session_generation,
        "at": now().timestamp(),
        "next": safe_next(next_url),
        "method": method,
        "nonce": secrets.token_urlsafe(24),
    }


def set_pending_method(method: str) -> None:
    data = dict(session[PENDING])
    data["method"] = method
    session[PENDING] = data


def pending() -> Pending | None:
    """The pending sign-in, or None if there is none, it expired (5 minutes), or the
    member's sessions were ended meanwhile."""
    data = session.get(PENDING)
    if not isinstance(data, dict):
        return None
    age = now().timestamp() - float(data.get("at", 0))
    if age > current_app.config["PORTAL_PENDING_SECONDS"]:
        return None
    member = db.session.get(Member, data.get("mid"))
    if member is None or member.session_generation != data.get("gen"):
        return None
    nonce = data.get("nonce")
    if not isinstance(nonce, str) or not nonce:
        return None
    if db.session.get(SpentSignIn, _nonce_hash(nonce)) is not None:
        return None  # its second step already succeeded: a copy of the cookie is dead
    return Pending(member, data.get("next"), str(data.get("method") or "app"), nonce)


def _nonce_hash(nonce: str) -> str:
    return hmac.new(
        current_app.secret_key.encode(), f"pending:{nonce}".encode(), hashlib.sha256
    ).hexdigest()


# Seconds between two clearings of expired spent marks by one process: a mark outlives
# its pending cookie anyway, so clearing on every sign-in is only a write more.
PURGE_SECONDS = 60
_purged_at = [-math.inf]  # time.monotonic() of this process's last clearing


def spend_pending(state: Pending) -> bool:
    """Mark the pending sign-in used, once: False if another request (a copy of the
    cookie) already completed it. The mark is written (a racing copy waits on it and is
    refused) but left to the caller's commit, so it lands with the sign-in's audit row
    in one transaction. Expired marks are cleared on the way, once a minute."""
    stamp = now()
    if time.monotonic() - _purged_at[0] >= PURGE_SECONDS:
        db.session.execute(delete(SpentSignIn).where(SpentSignIn.expires_at < stamp))
        _purged_at[0] = time.monotonic()
    lifetime = timedelta(seconds=current_app.config["PORTAL_PENDING_SECONDS"] + 60)
    db.session.add(SpentSignIn(nonce_hash=_nonce_hash(state.nonce), expires_at=stamp + lifetime))
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return False
    return True


def drop_stale_pending() -> None:
    """Forget a pending sign-in that can no longer be completed, and say why."""
    if PENDING in session:
        session.pop(PENDING)
        flash(_("認証の有効期限が切れました。もう一度ログインしてください。"), "error")


def session_id() -> str:
    """A random id for this signed-in session (the cookie session has none of its own),
    made at sign-in; things bound to one session (a pending app set-up) use it."""
    if not isinstance(session.get("sid"), str):
        session["sid"] = secrets.token_urlsafe(24)
    return session["sid"]


def complete_sign_in(member: Member, *, second_step: bool) -> None:
    """Full sign-in: the session is cleared and rebuilt, so nothing set before sign-in
    (a planted value, an old CSRF token) survives."""
    session.clear()
    login_user(member)
    session.permanent = True
    session["sid"] = secrets.token_urlsafe(24)
    stamp = now().timestamp()
    session["auth_at"] = session["seen_at"] = stamp
    if second_step:
        session["tfa_at"] = stamp


def mark_reauthenticated(*, second_step: bool) -> None:
    stamp = now().timestamp()
    session["auth_at"] = session["seen_at"] = stamp
    if second_step:
        session["tfa_at"] = stamp


def is_fresh(has_two_factor: bool) -> bool:
    """A recent enough proof for changing 2FA: the second step for members who have
    one (never the password alone), else the password."""
    stamp = session.get("tfa_at" if has_two_factor else "auth_at")
    if stamp is None:
        return False
    return now().timestamp() - float(stamp) <= current_app.config["PORTAL_REAUTH_SECONDS"]


def sign_out() -> None:
    """End the session for real: the generation moves on, so a copied cookie dies too.
    A pending sign-in (password only) just forgets itself: it must not be able to
    sign the member out of their real sessions."""
    from . import members

    if current_user.is_authenticated:
        members.end_sessions(current_user._get_current_object())
    logout_user()
    session.clear()


def end_other_sessions(member: Member) -> None:
    """After a change to the member's second step every other session ends (a thief
    signed in with the password alone is evicted); this one carries on, re-issued
    under the new generation with its proof times and CSRF token kept (the open
    page's forms stay valid)."""
    from . import members

    members.end_sessions(member)
    db.session.refresh(member)
    login_user(member)


def init_app(app: Flask) -> None:
    login_manager.session_protection = None  # the generation counter does this job

    @login_manager.user_loader
    def load_member(user_id: str) -> Member | None:
        try:
            member_id, generation = (int(part) for part in user_id.split(":"))
        except ValueError:
            return None
        member = db.session.get(Member, member_id)
        if member is None or member.session_generation != generation:
            return None
        # Absolute lifetime, counted from sign-in (or the last re-authentication).
        stamp = now().timestamp()
        lifetime = current_app.config["PERMANENT_SESSION_LIFETIME"].total_seconds()
        if stamp - float(session.get("auth_at", 0)) > lifetime:
            return None
        # Idle lifetime (ASVS 3.3.2): a session left alone ends, however young.
        seen = float(session.get("seen_at", session.get("auth_at", 0)))
        if stamp - seen > current_app.config["PORTAL_IDLE_MINUTES"] * 60:
            g.session_idle = True
            return None
        if stamp - seen > SEEN_RESOLUTION:
            # Written back at most once a minute, so parallel requests seldom race to
            # set the cookie.
            session["seen_at"] = stamp
        return member

    @login_manager.unauthorized_handler
    def unauthorized():
        if pending() is not None:
            return redirect_to(url_for("auth.verify"))
        drop_stale_pending()
        if g.pop("session_idle", False):
            session.clear()
            flash(
                _("しばらく操作がなかったため、ログアウトしました。もう一度ログインしてください。")
            )
        target = None
        if request.method == "GET" and not is_htmx():
            target = safe_next(request.full_path.rstrip("?"))
        return redirect_to(url_for("auth.login", next=target))
