"""The signed-in session and the pending one between the two steps.

The cookie session is signed, not encrypted: it holds only ids, a generation number
and timestamps, never a secret.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from flask import Flask, current_app, flash, g, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user

from .extensions import db, login_manager
from .models import Member
from .web.htmx import is_htmx, redirect_to

PENDING = "pending"
POLICY_KEY = "policy"  # flask.g's name for the policy this request read (web/policy.py)
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
    # The member's last passed second step when the password was accepted: the step
    # that completes this sign-in writes a new one only if it is still this, so a copy
    # of the pending cookie cannot complete it twice (twofactor's ``last_passed``).
    last_passed: datetime | None = None


def begin_pending(member: Member, next_url: str | None, method: str) -> None:
    """Password accepted, second step owed. Nothing from before sign-in is carried over."""
    session.clear()
    session[PENDING] = {
        "mid": member.id,
        "gen": member.session_generation,
        "at": now().timestamp(),
        "next": safe_next(next_url),
        "method": method,
        "passed": _stamp(member.last_second_step_at),
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
    member_id = data.get("mid")
    member = _read_member(member_id) if isinstance(member_id, int) else None
    if member is None or member.session_generation != data.get("gen"):
        return None
    try:
        last_passed = _unstamp(data.get("passed"))
    except (TypeError, ValueError):
        return None
    if member.last_second_step_at != last_passed:
        return None  # a second step was passed since: this one is spent (or a copy of it)
    return Pending(member, data.get("next"), str(data.get("method") or "app"), last_passed)


def _stamp(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _unstamp(text: object) -> datetime | None:
    if text is None:
        return None
    moment = datetime.fromisoformat(text)  # a str, or TypeError
    if moment.tzinfo is None:
        raise ValueError("a time without its zone")
    return moment


def _read_member(member_id: int) -> Member | None:
    """The member this request serves (signed in or half-way), read with the policy in
    one SELECT (members.load_with_policy) unless the policy was read already."""
    from . import members

    if POLICY_KEY in g:
        return db.session.get(Member, member_id, options=members.REQUEST_LOAD)
    return _with_policy(Member.id == member_id)


def signing_in(login_id: str) -> Member | None:
    """The member a typed login ID names (members.named), read with the policy."""
    from . import members

    key = members.named_key(login_id)
    return _with_policy(Member.login_key == key) if key is not None else None


def _with_policy(where) -> Member | None:
    from . import members

    member, row = members.load_with_policy(where)
    if row is not None:
        setattr(g, POLICY_KEY, row)
    return member


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


def proved_at(*, second_step: bool) -> datetime | None:
    """When this session last passed its second step (``second_step``), or its password,
    at sign-in or in a 本人確認 since; None when it never did."""
    stamp = session.get("tfa_at" if second_step else "auth_at")
    if stamp is None:
        return None
    try:
        return datetime.fromtimestamp(float(stamp), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


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
        member = _read_member(member_id)
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
