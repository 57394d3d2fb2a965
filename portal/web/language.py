"""Which language and time zone a request is answered in, and the language switch.

Language: a signed-in member's stored choice, else the switch's cookie, else the
browser's ``Accept-Language`` (Japanese or English), else Japanese. Time zone: a
signed-in member's own, else ``PORTAL_TIMEZONE``. The switch is a small POST form on
every page (CSRF-protected, works without JavaScript); it remembers the choice in a
cookie and, for a signed-in member, on the member.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Response, current_app, has_request_context, request
from flask_login import current_user
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from .. import i18n
from ..sessions import safe_next

COOKIE = "portal_lang"
COOKIE_LIFETIME = timedelta(days=400)  # browsers cap cookie lifetimes about here


def _cookie_name() -> str:
    return f"__Host-{COOKIE}" if current_app.config["PORTAL_HTTPS"] else COOKIE


def _signed_in_member():
    """The signed-in member, without making Flask-Login answer for a visitor."""
    if not has_request_context():
        return None
    user = current_user
    return user if user and user.is_authenticated else None


def select_locale() -> str:
    if not has_request_context():
        return i18n.DEFAULT_LANGUAGE
    shown = i18n.available()
    member = _signed_in_member()
    if member is not None and member.locale in shown:
        return member.locale
    cookie = request.cookies.get(_cookie_name(), "")
    if cookie in shown:
        return cookie
    return request.accept_languages.best_match(list(shown)) or i18n.DEFAULT_LANGUAGE


def select_timezone() -> str:
    member = _signed_in_member()
    if member is not None:
        return i18n.member_timezone(member)
    return i18n.site_timezone()


def remember(response: Response, language: str) -> None:
    """The switch's choice for this browser (also before sign-in, and after sign-out)."""
    response.set_cookie(
        _cookie_name(),
        language,
        max_age=int(COOKIE_LIFETIME.total_seconds()),
        secure=current_app.config["PORTAL_HTTPS"],
        httponly=True,
        samesite="Lax",
        path="/",
    )


def back_to(target: str | None) -> str:
    """Where the switch returns: a local page that answers GET, else the top page.
    (A page shown after a failed POST may live at a POST-only address.)"""
    path = safe_next(target)
    if path is None:
        return "/"
    adapter = current_app.url_map.bind("localhost")
    try:
        adapter.match(path.split("?", 1)[0], method="GET")
    except (HTTPException, RequestRedirect):
        return "/"
    return path
