"""The admin API's endpoints. Lists use keyset pagination like the admin area (a
``cursor`` from the previous page, ``limit`` up to 200): no OFFSET, whatever the depth.
Query parameters are checked strictly: a value the admin page would quietly ignore is a
422 here, so a program's typo does not read as "no filter"."""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import date, datetime
from zoneinfo import ZoneInfo

from flask import abort, g, request

from .. import audit, i18n, invitations, member_resets, members, sessions, throttle, twofactor
from ..models import METHOD_SINCE, ApiToken, AuditEvent, Member
from ..queries import (
    METHODS,
    UNKNOWN_MEMBER,
    AuditFilter,
    MemberFilter,
    MemberRow,
    audit_filter_from,
    audit_page,
    describe,
    member_page,
)
from ..twofactor import devices, lockout
from . import actor_label, bp, record, require_write
from .errors import ApiError
from .openapi import document

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def _invalid(name: str, message: str) -> ApiError:
    return ApiError(422, "invalid_parameter", f"{name}: {message}")


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _only(*names: str) -> None:
    """A query parameter the endpoint does not know is a 422 too: a misspelt filter
    must not read as no filter."""
    for name in request.args:
        if name not in names:
            raise _invalid(name or "(empty name)", "not a parameter of this endpoint")


def _limit() -> int:
    raw = request.args.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3 and 1 <= int(raw) <= MAX_LIMIT):
        raise _invalid("limit", f"a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def _cursor() -> int | None:
    """Where the previous page ended (the ``next_cursor`` it gave), or None."""
    raw = request.args.get("cursor")
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise _invalid("cursor", "not a cursor this API gave")
    return int(raw)


def _next(position: int | None) -> str | None:
    return str(position) if position is not None else None


def _member_or_404(login_id: str) -> Member:
    found = members.find(login_id) if members.LOGIN_ID_RE.fullmatch(login_id) else None
    if found is None:
        abort(404)
    return found


# --- members ------------------------------------------------------------------------------


def _member_filter() -> MemberFilter:
    """The admin list's filters: ``tfa`` (on|off), ``method``, ``q`` (login ID, name or
    address contains it)."""
    tfa = request.args.get("tfa", "")
    if tfa not in ("", "on", "off"):
        raise _invalid("tfa", "'on' or 'off'")
    method = request.args.get("method", "")
    if method and method not in METHODS:
        raise _invalid("method", "one of " + ", ".join(METHODS))
    q = request.args.get("q", "")
    if len(q) > 100 or any(unicodedata.category(ch) == "Cc" for ch in q):
        raise _invalid("q", "at most 100 characters, no control characters")
    return MemberFilter(q=q.strip(), tfa=tfa, method=method)


def _summary(row: MemberRow) -> dict:
    m = row.member
    return {
        "login_id": m.login_id,
        "name": m.name,
        "email": m.email,
        "two_factor": {
            "enabled": bool(row.methods),
            "methods": row.methods,
            "set_up_at": _when(row.set_up_on),
            "recovery_codes_left": row.recovery_left,
            "passkeys": row.passkeys,
            "last_second_step_at": _when(m.last_second_step_at),
        },
    }


@bp.get("/members")
def members_list():
    _only("tfa", "method", "q", "cursor", "limit")
    flt = _member_filter()
    page = member_page(flt, _cursor(), None, _limit())
    return {
        "members": [_summary(row) for row in page.rows],
        "next_cursor": _next(page.next_after),
    }


@bp.get("/members/<login_id>")
def member_detail(login_id: str):
    _only()
    m = _member_or_404(login_id)
    now = sessions.now()
    row = describe([m])[0]
    methods = twofactor.enabled_methods(m)
    code_lock = lockout.current_lock(m, now, lockout.CODE)
    recovery_lock = lockout.current_lock(m, now, lockout.RECOVERY)
    return {
        "login_id": m.login_id,
        "name": m.name,
        "email": m.email,
        "is_operator": m.is_operator,
        "two_factor": {
            "enabled": bool(methods),
            "methods": [
                {"method": kind, "since": _when(getattr(m, METHOD_SINCE[kind]))} for kind in methods
            ],
            "preferred_method": twofactor.preferred_method(m),
            "recovery_codes_left": row.recovery_left,
            "passkeys": row.passkeys,
            "remembered_devices": len(devices.listed(m, now)),
            "last_second_step_at": _when(m.last_second_step_at),
            "lock": {
                # Locked until an operator unlocks (after PORTAL_TFA_BLOCK_FAILURES).
                "blocked": m.tfa_blocked_at is not None,
                "blocked_since": _when(m.tfa_blocked_at),
                "codes_locked_until": _when(code_lock.until) if code_lock else None,
                "recovery_codes_locked_until": (
                    _when(recovery_lock.until) if recovery_lock else None
                ),
            },
        },
    }


# --- changes (write tokens) ----------------------------------------------------------------


def _changeable(login_id: str) -> tuple[ApiToken, Member]:
    """The write token and the member a change is for. An operator's account is changed
    on the admin page only, by another operator with a fresh second step: a token is
    one factor, and with the operator's password it must not open the admin area."""
    token = require_write()
    m = _member_or_404(login_id)
    if m.is_operator:
        raise ApiError(
            403, "operator_account", "An operator's account is changed on the admin page only."
        )
    return token, m


@bp.post("/members/<login_id>/reset-2fa")
def member_reset(login_id: str):
    """無効化, as the admin page's button does it: every method, recovery code and
    remembered device goes, the member's sessions end, the member is mailed."""
    token, m = _changeable(login_id)
    _only()
    try:
        methods = member_resets.reset_second_step(
            m,
            actor=None,
            actor_label=actor_label(token),
            now=sessions.now(),
            ip=request.remote_addr or "",
            user_agent=request.user_agent.string or "",
            token=token.name,
            token_id=token.id,
        )
    except twofactor.NoSecondStep:
        raise ApiError(409, "nothing_to_reset", "The member has no second step to reset.") from None
    g.api_audited = True  # admin.reset_2fa is this call's row
    return {"login_id": m.login_id, "methods": methods}


@bp.post("/members/<login_id>/password-link")
def member_password_link(login_id: str):
    """Mail the member the link they need (portal/invitations.py): an invitation to set
    a password while they have none (imported), else a password-reset link saying an
    operator sent it. Every earlier link of the member stops working."""
    token, m = _changeable(login_id)
    _only()
    if not m.email:
        raise ApiError(409, "no_email", "The member has no email address to send a link to.")
    # The same per-member limit as パスワードをお忘れの方: a looping or stolen token
    # cannot flood a mailbox, nor keep replacing the link the member is about to use.
    bucket = ("reset-account", m.login_key)
    if wait := throttle.full("PORTAL_LIMIT_RESET_ACCOUNT", *bucket):
        raise ApiError(
            429,
            "rate_limited",
            "Too many links were sent to this member lately.",
            {"Retry-After": str(wait)},
        )
    throttle.record("PORTAL_LIMIT_RESET_ACCOUNT", *bucket)
    sent = invitations.send_link(m, sessions.now(), requested_by=actor_label(token))
    event, detail = sent.audit()
    record(event, token, subject=m, **detail, token=token.name)
    if not sent.mailed:
        raise ApiError(
            503, "mail_failed", "The mail server did not take the mail: try again later."
        )
    return {"login_id": m.login_id, "kind": sent.kind, "expires_in_minutes": sent.minutes}


# --- the audit log ------------------------------------------------------------------------


DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _day(name: str) -> str:
    """A day of the calendar as YYYY-MM-DD, or "" (no bound). The log holds nothing
    before 1900 or after 9998: such days are moved to the nearest that means the same."""
    raw = request.args.get(name, "")
    if not raw:
        return ""
    try:
        day = date.fromisoformat(raw) if DAY.fullmatch(raw) else None
    except ValueError:
        day = None
    if day is None:
        raise _invalid(name, "a day of the calendar as YYYY-MM-DD")
    if day.year < 1900:
        return "1900-01-01"
    if day.year > 9998:
        return "9998-12-31" if name == "from" else ""
    return raw


def _audit_filter() -> AuditFilter:
    """The admin log's filters: ``member`` (login ID; 404 unknown_member when no member
    has it), ``event``, ``from`` and ``to`` (days in the portal's time zone,
    PORTAL_TIMEZONE; ``to`` included; ``from`` after ``to`` matches nothing)."""
    event = request.args.get("event", "")
    if event and event not in audit.EVENTS:
        raise _invalid("event", "not an event of the audit log")
    args = {
        "member": request.args.get("member", ""),
        "event": event,
        "from": _day("from"),
        "to": _day("to"),
    }
    flt, problems = audit_filter_from(args, ZoneInfo(i18n.site_timezone()))
    if problems.get("member") == UNKNOWN_MEMBER:
        raise ApiError(404, "unknown_member", "member: no member has this login ID.")
    return flt  # dates reversed: an empty range, no error


def _event(e: AuditEvent) -> dict:
    try:
        detail = json.loads(e.detail or "{}")
    except ValueError:
        detail = {}
    return {
        "id": e.id,
        "at": _when(e.created_at),
        "event": e.event,
        "actor": e.actor_label,
        "subject": e.subject_label,
        "method": e.method,
        "ip": e.ip,
        "user_agent": e.user_agent,
        "detail": detail if isinstance(detail, dict) else {},
    }


@bp.get("/audit")
def audit_log():
    _only("member", "event", "from", "to", "cursor", "limit")
    flt = _audit_filter()
    found, next_before = audit_page(flt, _cursor(), _limit())
    return {"events": [_event(e) for e in found], "next_cursor": _next(next_before)}


@bp.get("/openapi.json")
def openapi():
    return document()
