"""Authenticator app: set-up and replacement (new phone proven before the swap)."""

from __future__ import annotations

from flask import url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from .. import audit, notices, sessions, twofactor
from ..texts import WRONG_CODE
from ..twofactor import Enrolment, totp
from ..web import policy
from ..web.dialogs import dialog, done, member, reauth_dialog
from ..web.htmx import no_store
from . import bp
from .common import method_state_mismatch, recovery_codes_dialog, stale, withdrawn
from .forms import CodeForm
from .views import announce_enabled


def _setup_view(*, replace: bool) -> ResponseReturnValue:
    endpoint = "settings.totp_replace" if replace else "settings.totp_setup"
    here = url_for(endpoint)
    m = member()
    if (refused := withdrawn("app")) is not None:
        return refused
    if stale():
        return reauth_dialog(here)
    if (mismatch := method_state_mismatch(m, "app", needs_method=replace)) is not None:
        return mismatch
    now = sessions.now()
    form = CodeForm()
    error = None
    if form.validate_on_submit():
        status, new_codes = twofactor.enable_app(
            m, form.code.data, now, sessions.session_id(), replace=replace
        )
        if status is Enrolment.OK:
            if replace:
                sessions.mark_reauthenticated(second_step=True)
                sessions.end_other_sessions(m)
                audit.record_request("app.replaced", method="app")
                notices.send(m, "app_replaced", now=now, **notices.request_details())
                return done(
                    _("認証アプリを変更しました。"),
                    _("これからは新しい端末の認証アプリに表示されるコードでログインしてください。"),
                )
            announce_enabled("app")
            if new_codes:
                return recovery_codes_dialog(
                    new_codes, _("認証アプリによる認証の設定が完了しました。")
                )
            return done(_("設定が完了しました。"), _("認証アプリによる認証の設定が完了しました。"))
        mismatch = method_state_mismatch(m, "app", needs_method=replace, after_refusal=True)
        if mismatch is not None:
            return mismatch  # a parallel request (double submit) finished the set-up
        if status is Enrolment.GONE:
            error = _(
                "このQRコードは使えなくなりました（有効期限が切れたか、別の画面で設定が"
                "開始されました）。新しいQRコードを読み取って、もう一度入力してください。"
            )
        else:
            error = str(WRONG_CODE)
        form.code.data = ""
    secret = totp.begin_enrolment(m, now, sessions.session_id())
    issuer = policy.issuer()
    uri = totp.provisioning_uri(secret, m.login_id, issuer)
    return no_store(
        dialog(
            "settings/_totp_setup.html",
            form=form,
            error=error,
            replace=replace,
            action=here,
            # The key is the QR code's text alternative too (WCAG 1.1.1).
            qr=totp.qr_svg(
                uri,
                _(
                    "認証アプリに読み取らせるQRコード。読み取れない場合のキー：%(key)s",
                    key=totp.grouped(secret),
                ),
            ),
            secret=totp.grouped(secret),
            issuer=issuer,
            account=m.login_id,
        )
    )


@bp.route("/2fa/app/setup", methods=["GET", "POST"])
def totp_setup() -> ResponseReturnValue:
    return _setup_view(replace=False)


@bp.route("/2fa/app/replace", methods=["GET", "POST"])
def totp_replace() -> ResponseReturnValue:
    return _setup_view(replace=True)
