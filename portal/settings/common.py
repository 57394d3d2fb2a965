"""Helpers shared by the settings views: freshness, recovery codes, state checks."""

from __future__ import annotations

from urllib.parse import quote

from flask import Response
from flask_babel import gettext as _

from .. import notify, sessions, twofactor
from ..models import Member
from ..texts import METHOD_NAMES
from ..web import policy
from ..web.dialogs import dialog, done, member
from ..web.htmx import no_store

mask = notify.mask_destination


def recovery_codes_dialog(codes: list[str], title: str) -> Response:
    """Shown once: the download is a data: URL built from this same response, so the
    codes are never fetched again from the server. A printed copy names the site, the
    account and the day, so a sheet found in a drawer says what it unlocks."""
    text = quote("\r\n".join(codes) + "\r\n")
    return no_store(
        dialog(
            "settings/_recovery_codes.html",
            codes=codes,
            codes_text=text,
            title=title,
            issued=sessions.now(),
        )
    )


def stale() -> bool:
    return not sessions.is_fresh(twofactor.has_two_factor(member()))


def method_state_mismatch(
    m: Member, kind: str, needs_method: bool, *, after_refusal: bool = False
) -> Response | None:
    """Set-up while already set up, or changing/disabling with nothing there: say so.
    ``after_refusal``: the domain has just refused the change, maybe because a parallel
    request (a double submit) made it first, so the methods are read afresh."""
    if after_refusal:
        twofactor.forget_enabled_methods(m)
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


def withdrawn(kind: str) -> Response | None:
    """Setting up (or replacing) a method the policy no longer offers: say so."""
    if kind in policy.offered():
        return None
    return done(
        str(METHOD_NAMES[kind]),
        _("管理者の設定により、この方法は現在使えません。ほかの方法を設定してください。"),
    )
