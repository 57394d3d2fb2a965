"""Sign-in: password, then the second step (app code or recovery code), and sign-out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from flask import current_app, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import format_datetime
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm

from .. import members, sessions, throttle, twofactor
from ..htmx import redirect_to, render
from ..models import Member
from ..twofactor import Outcome, lockout, recovery
from . import bp
from .forms import CodeForm, LoginForm, RecoveryForm

WRONG_CODE = "認証コードが正しくありません。"
TOO_MANY = _l("ログインの試行回数が多すぎます。しばらく待ってから再度お試しください。")


def lock_message(result: twofactor.Result) -> str:
    return _(
        "認証に続けて失敗したため、一時的にロックしています。%(time)s 以降に再度お試しください。",
        time=format_datetime(result.locked_until, "HH:mm"),
    )


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    next_url = sessions.safe_next(request.args.get("next"))
    form = LoginForm()
    error, status = None, 200
    if form.validate_on_submit():
        by_address = throttle.allow(
            "login-address", "PORTAL_LOGIN_LIMIT_PER_ADDRESS", throttle.client_address()
        )
        by_account = throttle.allow(
            "login-account", "PORTAL_LOGIN_LIMIT_PER_ACCOUNT", members.login_key(form.login_id.data)
        )
        if not (by_address and by_account):
            error, status = TOO_MANY, 429
        elif (member := members.authenticate(form.login_id.data, form.password.data)) is None:
            # One message for an unknown ID and a wrong password: no hint which it was.
            error = _("ログインIDまたはパスワードが正しくありません。")
        elif twofactor.has_two_factor(member):
            sessions.begin_pending(member, next_url)
            return redirect_to(url_for("auth.verify"))
        else:
            sessions.complete_sign_in(member, second_step=False)
            return redirect_to(next_url or url_for("main.index"))
    return render(
        "auth/login.html", "auth/_login_form.html", status, form=form, error=error, next=next_url
    )


def _pending_or_restart():
    """The pending sign-in, or a response sending the visitor back to the password step."""
    state = sessions.pending()
    if state is not None:
        return state, None
    sessions.drop_stale_pending()
    return None, redirect_to(url_for("auth.login"))


def _finish(state: sessions.Pending):
    sessions.complete_sign_in(state.member, second_step=True)
    return redirect_to(state.next or url_for("main.index"))


def _second_step(
    form: FlaskForm,
    field: str,
    check: Callable[[Member, str | None, datetime], twofactor.Result],
    wrong: str,
    templates: tuple[str, str],
    on_success: Callable[[Member], None] | None = None,
) -> ResponseReturnValue:
    """One shape for every second-step page: refuse without a live pending sign-in,
    show the lock up front, count the attempt in the domain, re-render in place."""
    state, restart = _pending_or_restart()
    if restart:
        return restart
    now = sessions.now()
    error, status = None, 200
    if form.validate_on_submit():
        result = check(state.member, getattr(form, field).data, now)
        if result.ok:
            response = _finish(state)
            if on_success:
                on_success(state.member)
            return response
        if result.outcome is Outcome.LOCKED:
            error, status = lock_message(result), 429
        else:
            error = wrong
    elif form.errors:
        error = wrong
    elif (until := lockout.locked_until(state.member, now)) is not None:
        error = lock_message(twofactor.Result(Outcome.LOCKED, until))
    getattr(form, field).data = ""
    return render(*templates, status, form=form, error=error)


@bp.route("/login/verify", methods=["GET", "POST"])
def verify() -> ResponseReturnValue:
    return _second_step(
        CodeForm(),
        "code",
        twofactor.verify_code,
        _(WRONG_CODE),
        ("auth/verify.html", "auth/_verify_form.html"),
    )


def _report_recovery_codes_left(member: Member) -> None:
    left = recovery.remaining(member)
    flash(_("リカバリーコードでログインしました。残りのリカバリーコードは%(n)d個です。", n=left))
    if left <= current_app.config["PORTAL_RECOVERY_LOW"]:
        flash(
            _("リカバリーコードが少なくなっています。2段階認証設定ページで再発行してください。"),
            "warning",
        )


@bp.route("/login/recovery", methods=["GET", "POST"])
def recovery_login() -> ResponseReturnValue:
    return _second_step(
        RecoveryForm(),
        "recovery_code",
        twofactor.verify_recovery_code,
        _("リカバリーコードが正しくないか、既に使用されています。"),
        ("auth/recovery.html", "auth/_recovery_form.html"),
        on_success=_report_recovery_codes_left,
    )


@bp.route("/logout", methods=["POST"])
def logout() -> ResponseReturnValue:
    sessions.sign_out()
    flash(_("ログアウトしました。"))
    return redirect_to(url_for("auth.login"))
