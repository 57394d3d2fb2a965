"""The 2FA settings page and its dialogs.

Every dialog is one partial template: htmx swaps it into the page's ``<dialog>``;
without JavaScript the same URL renders it as a full page. Changing or turning off a
method needs a recent second step (10 minutes); a stale session is first asked for one.
"""

from __future__ import annotations

from urllib.parse import quote

from flask import Response, current_app, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_required

from .. import members, sessions, throttle, twofactor
from ..auth.views import TOO_MANY, WRONG_CODE, lock_message
from ..htmx import no_store, render
from ..models import Member
from ..twofactor import Outcome, recovery, totp
from . import bp
from .forms import ActionForm, CodeForm, ConfirmForm, ReauthCodeForm, ReauthPasswordForm


@bp.before_request
@login_required
def require_sign_in() -> None:
    """Every settings URL is for signed-in members only."""


def dialog(partial: str, status: int = 200, **context) -> Response:
    return render("settings/dialog.html", partial, status, dialog_partial=partial, **context)


def member() -> Member:
    return current_user._get_current_object()


def recovery_codes_dialog(codes: list[str], title: str) -> Response:
    """Shown once: the download is a data: URL built from this same response, so the
    codes are never fetched again from the server."""
    text = quote("\r\n".join(codes) + "\r\n")
    return no_store(
        dialog("settings/_recovery_codes.html", codes=codes, codes_text=text, title=title)
    )


def sections_context() -> dict:
    m = member()
    return {
        "totp": twofactor.totp_credential(m),
        "has_two_factor": twofactor.has_two_factor(m),
        "recovery_left": recovery.remaining(m),
    }


def stale() -> bool:
    return not sessions.is_fresh(twofactor.has_two_factor(member()))


def reauth_dialog(next_url: str, **context) -> Response:
    """Ask for a fresh second step (or the password when there is none) first."""
    if twofactor.has_two_factor(member()):
        form = context.pop("form", None) or ReauthCodeForm()
    else:
        form = context.pop("form", None) or ReauthPasswordForm()
    return dialog(
        "settings/_reauth.html",
        context.pop("status", 200),
        form=form,
        next=next_url,
        uses_code=isinstance(form, ReauthCodeForm),
        **context,
    )


@bp.route("/2fa")
def index() -> ResponseReturnValue:
    return render("settings/index.html", "settings/_sections.html", **sections_context())


@bp.route("/reauth", methods=["GET", "POST"])
def reauth() -> ResponseReturnValue:
    next_url = sessions.safe_next(request.args.get("next")) or url_for("settings.index")
    m = member()
    if twofactor.has_two_factor(m):
        form = ReauthCodeForm()
        if form.validate_on_submit():
            result = twofactor.verify_any(m, form.code.data, sessions.now())
            if result.ok:
                sessions.mark_reauthenticated(second_step=True)
                return redirect(next_url)
            form.code.data = ""
            if result.outcome is Outcome.LOCKED:
                return reauth_dialog(next_url, form=form, error=lock_message(result), status=429)
            return reauth_dialog(next_url, form=form, error=_(WRONG_CODE))
    else:
        form = ReauthPasswordForm()
        if form.validate_on_submit():
            if not throttle.allow("reauth", "PORTAL_REAUTH_LIMIT", str(m.id)):
                return reauth_dialog(next_url, form=form, error=TOO_MANY, status=429)
            if members.authenticate(m.login_id, form.password.data or "") is not None:
                sessions.mark_reauthenticated(second_step=False)
                return redirect(next_url)
            return reauth_dialog(next_url, form=form, error=_("パスワードが正しくありません。"))
    return reauth_dialog(next_url, form=form)


def _app_state_mismatch(m: Member, needs_app: bool) -> Response | None:
    """Set-up while already set up, or replacing/disabling with nothing there: say so."""
    has_app = twofactor.totp_credential(m) is not None
    if has_app == needs_app:
        return None
    return dialog(
        "settings/_done.html",
        title=_("認証アプリによる認証"),
        message=_("認証アプリによる認証は既に設定済みです。")
        if has_app
        else _("認証アプリによる認証はまだ設定されていません。"),
    )


def _setup_view(*, replace: bool) -> ResponseReturnValue:
    endpoint = "settings.totp_replace" if replace else "settings.totp_setup"
    here = url_for(endpoint)
    m = member()
    if stale():
        return reauth_dialog(here)
    if (mismatch := _app_state_mismatch(m, replace)) is not None:
        return mismatch
    now = sessions.now()
    form = CodeForm()
    error = None
    if form.validate_on_submit():
        new_codes = twofactor.enable_app(m, form.code.data, now, replace=replace)
        if new_codes is not None:
            sessions.mark_reauthenticated(second_step=True)
            sessions.end_other_sessions(m)
            if new_codes:
                return recovery_codes_dialog(
                    new_codes, _("認証アプリによる認証の設定が完了しました。")
                )
            return dialog(
                "settings/_done.html",
                title=_("認証アプリを変更しました。") if replace else _("設定が完了しました。"),
                message=_(
                    "これからは新しい端末の認証アプリに表示されるコードでログインしてください。"
                )
                if replace
                else _("認証アプリによる認証の設定が完了しました。"),
            )
        if (mismatch := _app_state_mismatch(m, replace)) is not None:
            return mismatch  # a parallel request (double submit) finished the set-up
        error = _(WRONG_CODE)
        form.code.data = ""
    secret = totp.enrolment_secret(m, now)
    issuer = current_app.config["PORTAL_ISSUER"]
    uri = totp.provisioning_uri(secret, m.login_id, issuer)
    return no_store(
        dialog(
            "settings/_totp_setup.html",
            form=form,
            error=error,
            replace=replace,
            action=here,
            qr=totp.qr_svg(uri, _("認証アプリに読み取らせるQRコード")),
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


@bp.route("/2fa/app/disable", methods=["GET", "POST"])
def totp_disable() -> ResponseReturnValue:
    here = url_for("settings.totp_disable")
    m = member()
    if stale():
        return reauth_dialog(here)
    if (mismatch := _app_state_mismatch(m, needs_app=True)) is not None:
        return mismatch
    form = ConfirmForm()
    error = None
    if form.validate_on_submit():
        if form.confirm.data:
            twofactor.disable_app(m)
            sessions.end_other_sessions(m)
            return dialog(
                "settings/_done.html",
                title=_("認証アプリによる認証の無効化"),
                message=_("認証アプリによる認証の無効化が完了しました。"),
            )
        error = _("無効化するには「はい、無効化して問題ありません。」にチェックを入れてください。")
    return dialog(
        "settings/_disable.html",
        form=form,
        error=error,
        action=here,
        method_name=_("認証アプリによる認証"),
    )


@bp.route("/2fa/recovery/regenerate", methods=["GET", "POST"])
def recovery_regenerate() -> ResponseReturnValue:
    here = url_for("settings.recovery_regenerate")
    m = member()
    if not twofactor.has_two_factor(m):
        return dialog(
            "settings/_done.html",
            title=_("リカバリーコード"),
            message=_("リカバリーコードは2段階認証を設定すると発行されます。"),
        )
    if stale():
        return reauth_dialog(here)
    form = ActionForm()
    if form.validate_on_submit():
        new_codes = recovery.issue(m, sessions.now())
        sessions.end_other_sessions(m)
        return recovery_codes_dialog(new_codes, _("リカバリーコードを再発行しました。"))
    return dialog("settings/_regenerate.html", form=form, action=here)
