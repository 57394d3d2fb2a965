"""Email and SMS as second steps: set-up proves the member receives codes at the
current address. The address itself lives on the member-info page."""

from __future__ import annotations

from flask import url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from .. import sessions, twofactor
from ..texts import METHOD_NAMES, code_status_message, refusal_message, sent_message
from ..twofactor import SendRefused, Status, otp_codes
from ..web.dialogs import dialog, done, member, reauth_dialog
from ..web.forms import ActionForm
from . import bp
from .common import mask, method_state_mismatch, recovery_codes_dialog, stale, withdrawn
from .forms import CodeForm
from .views import announce_enabled

KINDS = "<any(email, sms):kind>"


def _setup_dialog(kind: str, **context):
    m = member()
    target = twofactor.destination(m, kind)
    sent = otp_codes.pending_destination(m, f"setup:{kind}", sessions.now())
    return dialog(
        "settings/_contact_setup.html",
        kind=kind,
        method_name=METHOD_NAMES[kind],
        destination=mask(kind, target) if target else None,
        code_sent=sent is not None and sent == target,
        resend_wait=otp_codes.resend_wait(m, f"setup:{kind}", sessions.now()),
        form=context.pop("form", None) or CodeForm(formdata=None),
        **context,
    )


def _gate(kind: str):
    """Fresh second step, not yet set up, and an address to send to."""
    m = member()
    if (refused := withdrawn(kind)) is not None:
        return refused
    if stale():
        return reauth_dialog(url_for("settings.contact_setup", kind=kind))
    if (mismatch := method_state_mismatch(m, kind, needs_method=False)) is not None:
        return mismatch
    if not twofactor.destination(m, kind):
        return _setup_dialog(kind)  # the template asks for a phone number first
    return None


@bp.route(f"/2fa/{KINDS}/setup", methods=["GET", "POST"])
def contact_setup(kind: str) -> ResponseReturnValue:
    if (gate := _gate(kind)) is not None:
        return gate
    m = member()
    form = CodeForm()
    if not form.validate_on_submit():
        return _setup_dialog(kind)
    status, new_codes = twofactor.enable_contact(m, kind, form.code.data, sessions.now())
    if status is not Status.OK:
        mismatch = method_state_mismatch(m, kind, needs_method=False, after_refusal=True)
        if mismatch is not None:
            return mismatch  # a parallel request (double submit) finished the set-up
        return _setup_dialog(kind, error=code_status_message(status))
    announce_enabled(kind)
    title = _("%(method)sの設定が完了しました。", method=METHOD_NAMES[kind])
    if new_codes:
        return recovery_codes_dialog(new_codes, title)
    target = mask(kind, twofactor.destination(m, kind))
    return done(
        title, _("ログイン時に、%(destination)s に届く認証コードを使えます。", destination=target)
    )


@bp.route(f"/2fa/{KINDS}/send", methods=["POST"])
def contact_send(kind: str) -> ResponseReturnValue:
    """コードを送信する: a POST, so no code is ever sent by a GET."""
    if (gate := _gate(kind)) is not None:
        return gate
    if not ActionForm().validate_on_submit():
        return _setup_dialog(kind)
    try:
        sent_to = twofactor.send_setup_code(member(), kind, sessions.now())
    except SendRefused as refused:
        return _setup_dialog(kind, send_error=refusal_message(refused, kind))
    return _setup_dialog(kind, notice=sent_message(kind, mask(kind, sent_to)))
