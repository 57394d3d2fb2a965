"""Sign-in: password, then the second step (app code or recovery code), and sign-out."""

from __future__ import annotations

from flask import current_app, flash, redirect, request, session, url_for
from flask_babel import format_datetime
from flask_babel import gettext as _
from flask_login import current_user

from .. import members, sessions, twofactor
from ..htmx import redirect_to, render
from ..twofactor import Outcome, recovery
from . import bp
from .forms import CodeForm, LoginForm, RecoveryForm

WRONG_CODE = "認証コードが正しくありません。"


def lock_message(result: twofactor.Result) -> str:
    return _(
        "認証に続けて失敗したため、一時的にロックしています。%(time)s 以降に再度お試しください。",
        time=format_datetime(result.locked_until, "HH:mm"),
    )


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    next_url = sessions.safe_next(request.args.get("next"))
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        member = members.authenticate(form.login_id.data, form.password.data)
        if member is None:
            # One message for an unknown ID and a wrong password: no hint which it was.
            error = _("ログインIDまたはパスワードが正しくありません。")
        elif twofactor.has_two_factor(member):
            sessions.begin_pending(member, next_url)
            return redirect_to(url_for("auth.verify"))
        else:
            sessions.complete_sign_in(member, second_step=False)
            return redirect_to(next_url or url_for("main.index"))
    return render("auth/login.html", "auth/_login_form.html", form=form, error=error, next=next_url)


def _pending_or_restart():
    """The pending sign-in, or a response sending the visitor back to the password step."""
    state = sessions.pending()
    if state is not None:
        return state, None
    if sessions.has_pending_data():
        session.pop(sessions.PENDING, None)
        flash(_("認証の有効期限が切れました。もう一度ログインしてください。"), "error")
    return None, redirect_to(url_for("auth.login"))


def _finish(state: sessions.Pending):
    sessions.complete_sign_in(state.member, second_step=True)
    return redirect_to(state.next or url_for("main.index"))


@bp.route("/login/verify", methods=["GET", "POST"])
def verify():
    state, restart = _pending_or_restart()
    if restart:
        return restart
    form = CodeForm()
    error, status = None, 200
    if form.validate_on_submit():
        result = twofactor.verify_code(state.member, form.code.data, sessions.now())
        if result.ok:
            return _finish(state)
        if result.outcome is Outcome.LOCKED:
            error, status = lock_message(result), 429
        else:
            error = _(WRONG_CODE)
    elif form.errors:
        error = _(WRONG_CODE)
    form.code.data = ""
    return render("auth/verify.html", "auth/_verify_form.html", status, form=form, error=error)


@bp.route("/login/recovery", methods=["GET", "POST"])
def recovery_login():
    state, restart = _pending_or_restart()
    if restart:
        return restart
    form = RecoveryForm()
    error, status = None, 200
    if form.validate_on_submit():
        result = twofactor.verify_recovery_code(
            state.member, form.recovery_code.data, sessions.now()
        )
        if result.ok:
            left = recovery.remaining(state.member)
            response = _finish(state)
            flash(
                _(
                    "リカバリーコードでログインしました。残りのリカバリーコードは%(n)d個です。",
                    n=left,
                )
            )
            if left <= current_app.config["PORTAL_RECOVERY_LOW"]:
                flash(
                    _(
                        "リカバリーコードが少なくなっています。2段階認証設定ページで再発行してください。"
                    ),
                    "warning",
                )
            return response
        if result.outcome is Outcome.LOCKED:
            error, status = lock_message(result), 429
        else:
            error = _("リカバリーコードが正しくないか、既に使用されています。")
    elif form.errors:
        error = _("リカバリーコードが正しくないか、既に使用されています。")
    form.recovery_code.data = ""
    return render("auth/recovery.html", "auth/_recovery_form.html", status, form=form, error=error)


@bp.route("/logout", methods=["POST"])
def logout():
    sessions.sign_out()
    flash(_("ログアウトしました。"))
    return redirect_to(url_for("auth.login"))
