"""Device cookies (OWASP "Slow down online guessing attacks with device cookies").

A browser that completed a sign-in for a member carries a signed cookie naming that
member and a random device id. Its failed password checks are counted per device, not
in the account's shared bucket, so strangers filling the account's bucket from
elsewhere can never keep the owner's own browser out.

The cookie grants nothing by itself: it only chooses which rate-limit bucket counts.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from flask import Response, current_app, request
from itsdangerous import BadSignature, URLSafeTimedSerializer

LIFETIME = timedelta(days=365)
MAX_MEMBERS = 5  # a shared family browser: a few members, never an unbounded cookie


def _name() -> str:
    # __Host- cookies must be Secure, host-only and Path=/: only possible behind TLS.
    return "__Host-portal_device" if current_app.config["PORTAL_HTTPS"] else "portal_device"


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt="portal device cookie")


def _entries() -> list[tuple[int, str]]:
    raw = request.cookies.get(_name())
    if not raw or len(raw) > 2048:
        return []
    try:
        data = _serializer().loads(raw, max_age=int(LIFETIME.total_seconds()))
    except BadSignature:
        return []
    if not isinstance(data, list):
        return []
    found = []
    for entry in data[:MAX_MEMBERS]:
        if (
            isinstance(entry, list)
            and len(entry) == 2
            and isinstance(entry[0], int)
            and isinstance(entry[1], str)
        ):
            found.append((entry[0], entry[1]))
    return found


def device_id(member_id: int | None) -> str | None:
    """This browser's device id for the member, if it signed in as them before."""
    if member_id is None:
        return None
    return next((device for mid, device in _entries() if mid == member_id), None)


def remember(response: Response, member_id: int) -> Response:
    """After a completed sign-in: this browser is now one of the member's devices."""
    entries = _entries()
    device = next((d for mid, d in entries if mid == member_id), None) or secrets.token_urlsafe(16)
    kept = [[mid, d] for mid, d in entries if mid != member_id][: MAX_MEMBERS - 1]
    response.set_cookie(
        _name(),
        _serializer().dumps([[member_id, device], *kept]),
        max_age=int(LIFETIME.total_seconds()),
        secure=current_app.config["PORTAL_HTTPS"],
        httponly=True,
        samesite="Lax",
        path="/",
    )
    return response
