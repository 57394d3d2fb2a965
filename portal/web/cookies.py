"""Long-lived cookies of a browser: remembered-device tokens and the shared-terminal
mark. HttpOnly, SameSite=Lax, and Secure with the ``__Host-`` prefix behind TLS."""

from __future__ import annotations

from datetime import timedelta

from flask import Response, current_app, request

REMEMBER = "portal_remember"
TERMINAL = "portal_terminal"
MAX_REMEMBERED = 5  # members remembered on one browser (a family PC)
TERMINAL_LIFETIME = timedelta(days=400)  # browsers cap cookie lifetimes about here


def _name(base: str) -> str:
    return f"__Host-{base}" if current_app.config["PORTAL_HTTPS"] else base


def _set(response: Response, base: str, value: str, lifetime: timedelta) -> None:
    response.set_cookie(
        _name(base),
        value,
        max_age=int(lifetime.total_seconds()),
        secure=current_app.config["PORTAL_HTTPS"],
        httponly=True,
        samesite="Lax",
        path="/",
    )


def remembered_tokens() -> list[str]:
    raw = request.cookies.get(_name(REMEMBER), "")
    return [t for t in raw.split(".") if 20 <= len(t) <= 64][:MAX_REMEMBERED]


def add_remembered(response: Response, token: str, lifetime: timedelta) -> None:
    """Keep the browser's other members' tokens: each member has their own device."""
    kept = [t for t in remembered_tokens() if t != token][: MAX_REMEMBERED - 1]
    _set(response, REMEMBER, ".".join([token, *kept]), lifetime)


def terminal_token() -> str | None:
    raw = request.cookies.get(_name(TERMINAL), "")
    return raw if 20 <= len(raw) <= 64 else None


def set_terminal(response: Response, token: str) -> None:
    _set(response, TERMINAL, token, TERMINAL_LIFETIME)


def clear_terminal(response: Response) -> None:
    response.delete_cookie(_name(TERMINAL), path="/", secure=current_app.config["PORTAL_HTTPS"])
