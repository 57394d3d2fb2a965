"""Helpers shared by the settings views: dialogs, freshness, the re-auth step."""

from __future__ import annotations

from urllib.parse import quote

from flask import Response
from flask_babel import gettext as _
from flask_login import current_user

from .. import notify, sessions, twofactor
from ..htmx import no_store, render
from ..models import Member
from ..texts import METHOD_NAMES
from ..twofactor import CONTACT_METHODS
from .forms import ReauthCodeForm, ReauthPasswordForm


def dialog(partial: str, status: int = 200, **context) -> Response:
    """A dialog partial for htmx, or the same partial inside a full page."""
    return render("settings/dialog.html", partial, status, dialog_partial=partial, **context)


def done(title: str, message: str) -> Response:
    return dialog("settings/_done.html", title=title, message=message)


def member() -> Member:
    return current_user._get_current_object()


mask = notify.mask_destination


def recovery_codes_dialog(codes: list[str], title: str) -> Response:
    """Shown once: the download is a data: URL built from this same response, so the
    codes are never fetched again from the server."""
    text = quote("\r\n".join(codes) + "\r\n")
    return no_store(
        dialog("settings/_recovery_codes.html", codes=codes, codes_text=text, title=title)
    )


def stale() -> bool:
    return not sessions.is_fresh(twofactor.has_two_factor(member()))


def reauth_dialog(next_url: str, **context) -> Response:
    """Ask for a fresh second step (or the password when there is none) first."""
    m = member()
    if twofactor.has_two_factor(m):
        form = context.pop("form", None) or ReauthCodeForm()
    else:
        form = context.pop("form", None) or ReauthPasswordForm()
    methods = twofactor.enabled_methods(m)
    return dialog(
        "settings/_reauth.html",
        context.pop("status", 200),
        form=form,
        next=next_url,
        uses_code=isinstance(form, ReauthCodeForm),
        has_app="app" in methods,
        contact_methods=[k for k in methods if k in CONTACT_METHODS],
        **context,
    )


def method_state_mismatch(m: Member, kind: str, needs_method: bool) -> Response | None:
    """Set-up while already set up, or changing/disabling with nothing there: say so."""
    has = kind in twofactor.enabled_methods(m)
    if has == needs_method:
        return None
    name = METHOD_NAMES[kind]
    return done(
        str(name),
        _("%(method)sは既に設定済みです。", method=name)
        if has
        else _("%(method)sはまだ設定されていません。", method=name),
    )
