"""Sign-in: password, then the second step (app, email or SMS code, or a recovery code),
and sign-out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from flask import current_app, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf import FlaskForm

from .. import audit, members, notices, notify, sessions, throttle, twofactor
from ..htmx import redirect_to, render
from ..models import Member
from ..texts import (
    METHOD_SHORT,
    TOO_MANY,
    WRONG_CODE,
    code_status_message,
    lock_message,
    refusal_message,
    sent_message,
)
from ..twofactor import CONTACT_METHODS, Outcome, SendRefused, lockout, otp_codes, recovery
from . import bp
from .forms import ActionForm, CodeForm, LoginForm, MethodForm, RecoveryForm


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
        # The typed ID is recorded only as the member it names: people type their
        # password into the ID box, and that must never reach the audit log.
        named = (
            members.find(form.login_id.data)
            if members.LOGIN_ID_RE.fullmatch(form.login_id.data.strip())
            else None
        )
        if not (by_address and by_account):
            error, status = TOO_MANY, 429
            audit.record_request("signin.throttled", subject=named)
        elif (member := members.authenticate(form.login_id.data, form.password.data)) is None:
            # One message for an unknown ID and a wrong password: no hint which it was.
            error = _("ログインIDまたはパスワードが正しくありません。")
            audit.record_request(
                "signin.password_failed", subject=named, known_id=named is not None
            )
        elif (method := twofactor.preferred_method(member)) is not None:
            sessions.begin_pending(member, next_url, method)
            if method in CONTACT_METHODS:
                # Sent by this POST, never by a GET: reloading the code page sends nothing.
                _send_code(member, method)
            return redirect_to(url_for("auth.verify"))
        else:
            sessions.complete_sign_in(member, second_step=False)
            _audit_sign_in(member, None)
            return redirect_to(next_url or url_for("main.index"))
    return render(
        "auth/login.html", "auth/_login_form.html", status, form=form, error=error, next=next_url
    )


def _send_code(member: Member, method: str) -> None:
    """Send a sign-in code; a refusal becomes a message on the code page."""
    try:
        twofactor.send_signin_code(member, method, sessions.now())
    except SendRefused as refused:
        flash(refusal_message(refused, method), "error")


def _pending_or_restart():
    """The pending sign-in, or a response sending the visitor back to the password step."""
    state = sessions.pending()
    if state is not None:
        return state, None
    sessions.drop_stale_pending()
    return None, redirect_to(url_for("auth.login"))


def _audit_sign_in(member: Member, method: str | None) -> None:
    audit.record_request("signin.success", subject=member, method=method)
    if member.is_operator:
        audit.record_request("admin.signin", subject=member, method=method)


def _finish(state: sessions.Pending, method: str):
    sessions.complete_sign_in(state.member, second_step=True)
    _audit_sign_in(state.member, method)
    return redirect_to(state.next or url_for("main.index"))


def _verify_context(state: sessions.Pending) -> dict:
    """What the code page says about the chosen method and the other choices."""
    method = state.method
    sent_to = None
    if method in CONTACT_METHODS:
        sent_to = otp_codes.pending_destination(state.member, f"signin:{method}", sessions.now())
    return {
        "method": method,
        "sent_to": notify.mask_destination(method, sent_to) if sent_to else None,
        "others": [m for m in twofactor.enabled_methods(state.member) if m != method],
        "method_short": METHOD_SHORT,
    }


def _second_step(
    form: FlaskForm,
    field: str,
    check: Callable[[sessions.Pending, str | None, datetime], twofactor.Result],
    templates: tuple[str, str],
    wrong: str | None = None,
    on_success: Callable[[Member], None] | None = None,
    recovery_step: bool = False,
) -> ResponseReturnValue:
    """One shape for every second-step page: refuse without a live pending sign-in,
    show the lock up front, count the attempt in the domain, re-render in place."""
    state, restart = _pending_or_restart()
    if restart:
        return restart
    now = sessions.now()
    error, status = None, 200
    if form.validate_on_submit():
        method = "recovery" if recovery_step else state.method
        result = check(state, getattr(form, field).data, now)
        if result.ok:
            response = _finish(state, method)
            if on_success:
                on_success(state.member)
            return response
        if result.outcome is Outcome.LOCKED:
            error, status = lock_message(result.locked_until), 429
            audit.record_request("signin.locked", subject=state.member, method=method)
        else:
            error = wrong or code_status_message(result.status)
            audit.record_request("signin.second_step_failed", subject=state.member, method=method)
    elif form.errors:
        error = wrong or str(WRONG_CODE)
    elif (until := lockout.locked_until(state.member, now)) is not None:
        error = lock_message(until)
    getattr(form, field).data = ""
    return render(*templates, status, form=form, error=error, **_verify_context(state))


@bp.route("/login/verify", methods=["GET", "POST"])
def verify() -> ResponseReturnValue:
    return _second_step(
        CodeForm(),
        "code",
        lambda state, code, now: twofactor.verify_code(state.member, code, now, state.method),
        ("auth/verify.html", "auth/_verify_form.html"),
    )


@bp.route("/login/resend", methods=["POST"])
def resend() -> ResponseReturnValue:
    """Send the email/SMS code again (60 s apart); the answer renders in place."""
    state, restart = _pending_or_restart()
    if restart:
        return restart
    form = ActionForm()
    notice = send_error = None
    if form.validate_on_submit() and state.method in CONTACT_METHODS:
        try:
            sent_to = twofactor.send_signin_code(state.member, state.method, sessions.now())
            notice = sent_message(state.method, notify.mask_destination(state.method, sent_to))
        except SendRefused as refused:
            send_error = refusal_message(refused, state.method)
    return render(
        "auth/verify.html",
        "auth/_verify_form.html",
        form=CodeForm(formdata=None),
        notice=notice,
        send_error=send_error,
        **_verify_context(state),
    )


@bp.route("/login/method", methods=["POST"])
def choose_method() -> ResponseReturnValue:
    """別の方法で認証する: switch to another enabled method (email/SMS send a code)."""
    state, restart = _pending_or_restart()
    if restart:
        return restart
    form = MethodForm()
    if form.validate_on_submit() and form.method.data in twofactor.enabled_methods(state.member):
        sessions.set_pending_method(form.method.data)
        if form.method.data in CONTACT_METHODS:
            _send_code(state.member, form.method.data)
    return redirect_to(url_for("auth.verify"))


def _report_recovery_codes_left(member: Member) -> None:
    left = recovery.remaining(member)
    audit.record_request("recovery.used", subject=member, left=left)
    notices.send(
        member, "recovery_used", now=sessions.now(), left=left, **notices.request_details()
    )
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
        lambda state, code, now: twofactor.verify_recovery_code(state.member, code, now),
        ("auth/recovery.html", "auth/_recovery_form.html"),
        wrong=_("リカバリーコードが正しくないか、既に使用されています。"),
        on_success=_report_recovery_codes_left,
        recovery_step=True,
    )


@bp.route("/logout", methods=["POST"])
def logout() -> ResponseReturnValue:
    if current_user.is_authenticated:
        audit.record_request("signout")
    sessions.sign_out()
    flash(_("ログアウトしました。"))
    return redirect_to(url_for("auth.login"))
