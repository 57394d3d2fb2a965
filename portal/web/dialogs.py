"""Dialogs: an htmx partial swapped into the page's ``<dialog>``, or the same partial
inside a full page without JavaScript. Shared by the settings and admin areas."""

from __future__ import annotations

from flask import Response, request
from flask_babel import gettext as _
from flask_login import current_user

from .. import sessions, twofactor
from ..models import Member
from ..twofactor import CONTACT_METHODS
from . import passkeys, policy
from .forms import ReauthCodeForm, ReauthPasswordForm
from .htmx import render


def dialog(partial: str, status: int = 200, **context) -> Response:
    """A dialog partial for htmx, or the same partial inside a full page."""
    return render("settings/dialog.html", partial, status, dialog_partial=partial, **context)


def done(title: str, message: str, close_url: str | None = None) -> Response:
    """A completion dialog. ``close_url`` is where its button leads without JavaScript
    (the settings page unless given), so the page it returns to shows the change."""
    return dialog("settings/_done.html", title=title, message=message, close_url=close_url)


def member() -> Member:
    return current_user._get_current_object()


def reauth_dialog(next_url: str, **context) -> Response:
    """Ask for a fresh second step (or the password when there is none) first."""
    m = member()
    if twofactor.has_two_factor(m):
        form = context.pop("form", None) or ReauthCodeForm()
    else:
        form = context.pop("form", None) or ReauthPasswordForm()
    methods = twofactor.usable_methods(m, policy.offered())
    passkey_options = None
    if "passkey" in methods and (rp := passkeys.relying_party()) is not None:
        # A fresh challenge with each rendering of the dialog.
        passkey_options = twofactor.passkeys.begin_authentication(
            m, rp, passkeys.session_key(), "reauth", sessions.now()
        )
    # The 本人確認 before sending a member-area form: its own wording, its cancel back
    # to the form's confirm page (the same ``next`` through every retry of the dialog).
    for_form = next_url.startswith(request.script_root + "/forms/")
    if for_form:
        context.setdefault("close_url", next_url)
        context.setdefault("dialog_area", _("フォームの送信"))
    return dialog(
        "settings/_reauth.html",
        context.pop("status", 200),
        form=form,
        for_form=for_form,
        next=next_url,
        uses_code=isinstance(form, ReauthCodeForm),
        has_app="app" in methods,
        contact_methods=[k for k in methods if k in CONTACT_METHODS],
        passkey_options=passkey_options,
        **context,
    )
