"""Sign-in: password, then the second step (app, email or SMS code, or a recovery code),
and sign-out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from flask import Response, current_app, flash, jsonify, redirect, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, logout_user
from flask_wtf import FlaskForm

from .. import (
    audit,
    members,
    notices,
    notify,
    sessions,
    throttle,
    twofactor,
    useragent,
)
from ..models import Member
from ..texts import (
    MAILBOX_ONLY,
    METHOD_SHORT,
    TOO_MANY,
    WRONG_CODE,
    code_status_message,
    lock_message,
    refusal_message,
    sent_message,
)
from ..twofactor import (
    CONTACT_METHODS,
    Failure,
    Outcome,
    SendRefused,
    devices,
    lockout,
    otp_codes,
    passkeys,
    recovery,
)
from ..twofactor import policy as policy_rules
from ..web import cookies, enforcement, locks, policy
from ..web import passkeys as passkey_web
from ..web.forms import ActionForm, MethodForm
from ..web.htmx import no_store, redirect_to, render
from . import bp, device_cookie
from .forms import CodeForm, LoginForm, PasskeyForm, PasskeyLoginForm, RecoveryForm


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    next_url = sessions.safe_next(request.args.get("next"))
    form = LoginForm()
    error, wait = None, None
    if form.validate_on_submit():
        # The typed ID is recorded only as the member it names: people type their
        # password into the ID box, and that must never reach the audit log.
        named = sessions.signing_in(form.login_id.data)
        key = members.login_key(form.login_id.data)
        device = device_cookie.device_id(named.id if named else None)
        refused = _password_throttle(key, device)
        if refused is not None:
            wait, bucket = refused
            error = TOO_MANY
            if throttle.first_refusal(*bucket):
                audit.record_request("signin.throttled", subject=named, bucket=bucket[0])
        elif (member := members.authenticate_member(named, form.password.data)) is None:
            _count_password_failure(key, device)
            # One message for an unknown ID and a wrong password: no hint which it was.
            error = _("ログインIDまたはパスワードが正しくありません。")
            audit.record_request(
                "signin.password_failed", subject=named, known_id=named is not None
            )
        else:
            return _after_password(member, next_url)
    response = _login_page(form, error, next_url)
    return throttle.too_many(response, wait) if wait else response


def _login_page(form: LoginForm, error: str | None, next_url: str | None, status: int = 200):
    passwordless = passkey_web.passwordless_allowed()
    if passwordless:
        # The id passkey ceremonies are bound to, made now: the options request passkeys.js
        # sends as the page loads then writes no cookie, which could overwrite what a
        # navigation racing it stores (a password-reset link opened at once).
        passkey_web.session_key()
    return render(
        "auth/login.html",
        "auth/_login_form.html",
        status,
        form=form,
        error=error,
        next=next_url,
        passwordless=passwordless,
    )


def _password_throttle(key: str, device: str | None) -> tuple[int, tuple[str, ...]] | None:
    """Whether a password check may run now; else the wait and the bucket that is full.

    Account buckets count failures only and are looked at, not counted, here: a request
    refused by a limit never fills them. A browser that signed in to the account before
    is counted on its own device bucket instead, so strangers cannot keep it out.
    """
    address = throttle.client_address()
    if device is not None:
        account_buckets = [("PORTAL_LIMIT_LOGIN_DEVICE", ("login-device", key, device))]
    else:
        account_buckets = [
            ("PORTAL_LIMIT_LOGIN_ACCOUNT_ADDRESS", ("login-account-address", key, address)),
            ("PORTAL_LIMIT_LOGIN_ACCOUNT", ("login-account", key)),
        ]
    if (found := throttle.first_full(account_buckets)) is not None:
        return found
    # Every password check from one address counts (it costs an argon2 hash).
    bucket = ("login-address", address)
    if (wait := throttle.hit("PORTAL_LIMIT_LOGIN_ADDRESS", *bucket)) is not None:
        return wait, bucket
    return None


def _count_password_failure(key: str, device: str | None) -> None:
    if device is not None:
        throttle.record("PORTAL_LIMIT_LOGIN_DEVICE", "login-device", key, device)
    else:
        address = throttle.client_address()
        throttle.record("PORTAL_LIMIT_LOGIN_ACCOUNT_ADDRESS", "login-account-address", key, address)
        throttle.record("PORTAL_LIMIT_LOGIN_ACCOUNT", "login-account", key)


def _send_code(member: Member, method: str) -> None:
    """Send a sign-in code; a refusal becomes a message on the code page."""
    try:
        twofactor.send_signin_code(member, method, sessions.now())
    except SendRefused as refused:
        # The 60-second spacing is no error: the code page counts it down.
        if (message := refusal_message(refused, method)) is not None:
            flash(message, "error")


def _pending_or_restart(state: sessions.Pending | None = None):
    """The pending sign-in (``state``, when the view has read it already), or a response
    sending the visitor back to the password step."""
    if state is None:
        state = sessions.pending()
    if state is not None:
        return state, None
    sessions.drop_stale_pending()
    return None, redirect_to(url_for("auth.login"))


def _audit_sign_in(member: Member, method: str | None, **detail: object) -> None:
    """Record a sign-in this browser has just been given; its commit also carries what the
    sign-in spent (an app code's step, the member's new last second step, which spends
    the pending sign-in). Should that commit fail, the browser is signed out again before
    the error page: nothing was spent, so a copy of a pending cookie could otherwise
    complete the step a second time, and no sign-in goes unrecorded."""
    operator = member.is_operator  # read before the commit below expires the member
    try:
        audit.record_request("signin.success", subject=member, method=method, **detail)
        if operator:
            audit.record_request("admin.signin", subject=member, method=method, **detail)
    except Exception:
        logout_user()
        session.clear()
        raise


def _after_password(member: Member, next_url: str | None):
    """The password was right: the second step, or a sign-in the policy lets skip it."""
    method = twofactor.preferred_method(member, policy.offered())
    if method is None:
        if twofactor.mailbox_only(member) and not recovery.remaining(member):
            # Email was the only method and the password was just reset by mail: one
            # mailbox must never pass both steps. Without a recovery code, an operator.
            audit.record_request("signin.mailbox_only", subject=member)
            return _login_page(LoginForm(formdata=None), str(MAILBOX_ONLY), next_url)
        if twofactor.enabled_methods(member) and recovery.remaining(member):
            # The operator withdrew every method this member had: a recovery code is
            # the second step now (never the password alone), then set up another.
            sessions.begin_pending(member, next_url, "recovery")
            return redirect_to(url_for("auth.recovery_login"))
        return _signed_in(member, next_url, None)
    if (skipped := _skip_reason(member)) is not None:
        return _signed_in(member, next_url, skipped)
    sessions.begin_pending(member, next_url, method)
    if method in CONTACT_METHODS:
        # Sent by this POST, never by a GET: reloading the code page sends nothing.
        _send_code(member, method)
    return redirect_to(url_for("auth.verify"))


def _skip_reason(member: Member) -> str | None:
    """Why the policy lets this sign-in skip the second step ("network", "terminal",
    "device"), or None. Never for operators; an "always" network asks everyone."""
    if not policy.spares_second_step(member) or twofactor.mailbox_only(member):
        return None
    now, rules = sessions.now(), policy.current()
    mode = policy.network_mode()
    if mode == "skip":
        return "network"
    if mode == "always":
        return None
    if rules.shared_terminal_skip and devices.terminal(cookies.terminal_token(), now):
        return "terminal"
    lifetime = policy_rules.remember_for(rules)
    if lifetime and devices.recognise(member, cookies.remembered_tokens(), now, lifetime):
        return "device"
    return None


def _landing(next_url: str | None) -> str:
    """Where a sign-in lands: the page first asked for, else the policy's page."""
    return next_url or policy.current().landing_path


def _signed_in(member: Member, next_url: str | None, skipped: str | None):
    """A sign-in without a second step: the member has none, or the policy skipped it
    (audited with the reason as the method). The first one after an operator's reset
    goes to the set-up page, which says on screen what happened (not only the mail)."""
    reset_at = twofactor.take_reset_notice(member) if skipped is None else None
    sessions.complete_sign_in(member, second_step=False)
    _audit_sign_in(member, skipped)
    target = _landing(next_url)
    if reset_at is not None:
        session[enforcement.RESET_NOTICE] = reset_at.isoformat()
        target = url_for("settings.setup")
    return device_cookie.remember(redirect_to(target), member.id)


def offers_remembering(member: Member) -> bool:
    """Whether the code pages show この端末では次回からコード入力をスキップする: the policy
    allows it, the member is not an operator, and this is neither an "always" network
    nor a shared terminal."""
    return (
        policy.current().allow_remember_device
        and policy.spares_second_step(member)
        and policy.network_mode() != "always"
        and devices.terminal(cookies.terminal_token()) is None
    )


def _finish(state: sessions.Pending, method: str, remember: bool):
    if method == "recovery":
        # A recovery code means the phone may be lost: every device remembered so far
        # gives a code again (this one may be remembered afresh below).
        devices.forget(state.member)
    sessions.complete_sign_in(state.member, second_step=True)
    # Read before the audit row's commit, which expires what the session holds.
    response = device_cookie.remember(redirect_to(_landing(state.next)), state.member.id)
    _audit_sign_in(state.member, method)
    if remember and offers_remembering(state.member):
        _remember_this_device(state.member, response)
    return response


def _remember_this_device(member: Member, response) -> None:
    lifetime = policy_rules.remember_for(policy.current())
    details = notices.request_details()
    label = useragent.describe(details["user_agent"])
    token, device = devices.remember(
        member, sessions.now(), lifetime, label=label, ip=details["ip"]
    )
    cookies.add_remembered(response, token, lifetime)
    audit.record_request("device.remembered", subject=member, device=device.id, label=label)
    notices.send(member, "device_remembered", now=sessions.now(), label=label, **details)


def _verify_context(state: sessions.Pending) -> dict:
    """What the code page says about the chosen method and the other choices."""
    method = state.method
    sent_to = None
    if method in CONTACT_METHODS:
        sent_to = otp_codes.pending_destination(state.member, f"signin:{method}", sessions.now())
    return {
        "method": method,
        "sent_to": notify.mask_destination(method, sent_to) if sent_to else None,
        "resend_wait": otp_codes.resend_wait(state.member, f"signin:{method}", sessions.now())
        if method in CONTACT_METHODS
        else 0,
        "others": [
            m for m in twofactor.usable_methods(state.member, policy.offered()) if m != method
        ],
        "method_short": METHOD_SHORT,
        # Email held back after a mailed password reset: the page says why.
        "mailbox_only": "email" in twofactor.enabled_methods(state.member)
        and twofactor.mailbox_only(state.member)
        and "email" in policy.offered(),
        "offer_remember": offers_remembering(state.member),
        # A fresh challenge with each rendering: the one before was spent or replaced.
        "passkey_options": _passkey_options(state) if method == "passkey" else None,
    }


def _passkey_options(state: sessions.Pending) -> str | None:
    rp = passkey_web.relying_party()
    if rp is None:
        return None
    return passkeys.begin_authentication(
        state.member, rp, passkey_web.session_key(), "second", sessions.now()
    )


def _second_step(
    form: FlaskForm,
    field: str,
    check: Callable[[sessions.Pending, str | None, datetime], twofactor.Result],
    templates: tuple[str, str],
    limit: tuple[str, str],
    wrong: str | None = None,
    on_success: Callable[[Member], None] | None = None,
    recovery_step: bool = False,
    message: Callable[[twofactor.Result], str] | None = None,
    state: sessions.Pending | None = None,
) -> ResponseReturnValue:
    """One shape for every second-step page: refuse without a live pending sign-in,
    show the lock up front, count the attempt in the domain, re-render in place."""
    counter = lockout.RECOVERY if recovery_step else lockout.CODE
    state, restart = _pending_or_restart(state)
    if restart:
        return restart
    now = sessions.now()
    error, status, wait = None, 200, None
    if form.is_submitted() and (wait := throttle.per_address(*limit, subject=state.member)):
        error, status = TOO_MANY, 429
    elif form.validate_on_submit():
        method = "recovery" if recovery_step else state.method
        result = check(state, getattr(form, field).data, now)
        if result.outcome is Outcome.SPENT:
            # A copy of this pending cookie completed the sign-in a moment ago.
            return redirect_to(url_for("auth.login"))
        if result.ok:
            # What the step wrote (an app code's) is committed with the audit row.
            response = _finish(state, method, bool(form.remember_device.data))
            if on_success:
                on_success(state.member)
            return response
        if result.outcome is Outcome.LOCKED:
            locks.report(state.member, result.lock, method)
            error, status, wait = locks.refusal(result.lock, now)
        else:
            error = message(result) if message else wrong or code_status_message(result.status)
            audit.record_request("signin.second_step_failed", subject=state.member, method=method)
            if result.replayed:
                locks.report_replay(state.member, method)
            if result.passkey is Failure.CLONED:
                passkey_web.report_clone(state.member, result.key)
    elif form.errors:
        error = message(twofactor.Result(Outcome.WRONG)) if message else wrong or str(WRONG_CODE)
    elif (lock := lockout.current_lock(state.member, now, counter, reread=False)) is not None:
        error = lock_message(lock.until, now)
    getattr(form, field).data = ""
    response = render(*templates, status, form=form, error=error, **_verify_context(state))
    return throttle.too_many(response, wait) if wait else response


@bp.route("/login/verify", methods=["GET", "POST"])
def verify() -> ResponseReturnValue:
    state = sessions.pending()
    if state is not None and state.method not in twofactor.usable_methods(
        state.member, policy.offered()
    ):
        # The policy withdrew this method (or the member has only recovery codes left).
        method = twofactor.preferred_method(state.member, policy.offered())
        if method is None:
            return redirect_to(url_for("auth.recovery_login"))
        sessions.set_pending_method(method)
        flash(_("この認証方法は現在使えません。別の方法で認証してください。"), "warning")
        return redirect_to(url_for("auth.verify"))
    return _second_step(
        CodeForm(),
        "code",
        lambda state, code, now: twofactor.verify_code(
            state.member, code, now, state.method, state.last_passed, commit=False
        ),
        ("auth/verify.html", "auth/_verify_form.html"),
        ("PORTAL_LIMIT_VERIFY", "verify"),
        state=state,
    )


@bp.route("/login/verify/passkey", methods=["POST"])
def verify_passkey() -> ResponseReturnValue:
    """パスキーで認証する: the browser's answer to the code page's passkey prompt."""
    state = sessions.pending()
    if state is not None and (
        state.method != "passkey"
        or "passkey" not in twofactor.usable_methods(state.member, policy.offered())
    ):
        return redirect_to(url_for("auth.verify"))
    rp = passkey_web.relying_party()
    return _second_step(
        PasskeyForm(),
        "credential",
        lambda state, answer, now: twofactor.verify_passkey(
            state.member, answer, now, rp, passkey_web.session_key(), "second", state.last_passed
        ),
        ("auth/verify.html", "auth/_verify_form.html"),
        ("PORTAL_LIMIT_VERIFY", "verify"),
        message=lambda result: passkey_web.failure_message(result.passkey),
        state=state,
    )


@bp.route("/login/passkey/options", methods=["POST"])
def passkey_options() -> ResponseReturnValue:
    """パスキーでログイン: the prompt's options, asked for by passkeys.js only when the
    button is pressed or the browser offers passkeys in autofill (JSON)."""
    if current_user.is_authenticated:
        return jsonify(error=_("既にログインしています。")), 400
    rp = passkey_web.relying_party()
    if rp is None or not passkey_web.passwordless_allowed():
        return jsonify(error=_("パスキーだけでのログインは現在使えません。")), 403
    wait = throttle.per_address("PORTAL_LIMIT_PASSKEY_OPTIONS", "passkey-options")
    if wait:
        return throttle.too_many(jsonify(error=str(TOO_MANY)), wait)
    options = passkeys.begin_authentication(
        None, rp, passkey_web.session_key(), "passwordless", sessions.now()
    )
    return no_store(Response(options, mimetype="application/json"))


@bp.route("/login/passkey", methods=["POST"])
def passkey_login() -> ResponseReturnValue:
    """A passkey alone, with user verification: both steps at once. A refusal counts
    per client address only (anyone can name someone's credential ID)."""
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    next_url = sessions.safe_next(request.args.get("next"))
    form = PasskeyLoginForm()
    rp = passkey_web.relying_party()
    if wait := throttle.per_address("PORTAL_LIMIT_PASSKEY", "passkey"):
        error = str(TOO_MANY)
    elif rp is None or not passkey_web.passwordless_allowed():
        error = _(
            "パスキーだけでのログインは現在使えません。IDとパスワードでログインしてください。"
        )
        audit.record_request("signin.passkey_failed", reason="not_allowed")
    elif not form.validate_on_submit():
        error = passkey_web.failure_message(Failure.INVALID)
    else:
        now = sessions.now()
        result = twofactor.passwordless(form.credential.data, now, rp, passkey_web.session_key())
        if result.ok:
            sessions.complete_sign_in(result.member, second_step=True)
            _audit_sign_in(result.member, "passkey", passwordless=True)
            response = redirect_to(_landing(next_url))
            return device_cookie.remember(response, result.member.id)
        if result.lock is not None:
            error = lock_message(result.lock.until, now)
            reason = "locked"
        else:
            error = passkey_web.failure_message(result.failure)
            reason = result.failure.value if result.failure else "invalid"
        audit.record_request(
            "signin.passkey_failed",
            subject=result.member,
            method="passkey",
            reason=reason,
            name=result.key.name if result.key is not None else None,
        )
        if result.failure is Failure.CLONED and result.member is not None:
            passkey_web.report_clone(result.member, result.key)
    response = _login_page(LoginForm(formdata=None), error, next_url, 400)
    return throttle.too_many(response, wait) if wait else response


@bp.route("/login/resend", methods=["POST"])
def resend() -> ResponseReturnValue:
    """Send the email/SMS code again (60 s apart); the answer renders in place."""
    state, restart = _pending_or_restart()
    if restart:
        return restart
    form = ActionForm()
    notice = send_error = wait = None
    if form.is_submitted() and (wait := throttle.per_address("PORTAL_LIMIT_RESEND", "resend")):
        send_error = str(TOO_MANY)
    elif form.validate_on_submit() and state.method in CONTACT_METHODS:
        try:
            sent_to = twofactor.send_signin_code(state.member, state.method, sessions.now())
            notice = sent_message(state.method, notify.mask_destination(state.method, sent_to))
        except SendRefused as refused:
            send_error = refusal_message(refused, state.method)
    return _code_page(state, wait, notice=notice, send_error=send_error)


def _code_page(state: sessions.Pending, wait: int | None, **messages: str | None):
    """The code page after a resend or a refused switch, with 429 when over a limit."""
    response = render(
        "auth/verify.html",
        "auth/_verify_form.html",
        form=CodeForm(formdata=None),
        **messages,
        **_verify_context(state),
    )
    return throttle.too_many(response, wait) if wait else response


@bp.route("/login/method", methods=["POST"])
def choose_method() -> ResponseReturnValue:
    """別の方法で認証する: switch to another enabled method (email/SMS send a code)."""
    state, restart = _pending_or_restart()
    if restart:
        return restart
    form = MethodForm()
    if form.is_submitted() and (wait := throttle.per_address("PORTAL_LIMIT_RESEND", "resend")):
        return _code_page(state, wait, send_error=str(TOO_MANY))
    usable = twofactor.usable_methods(state.member, policy.offered())
    if form.validate_on_submit() and form.method.data in usable:
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
            _("リカバリーコードが少なくなっています。二段階認証設定ページで再発行してください。"),
            "warning",
        )


@bp.route("/login/recovery", methods=["GET", "POST"])
def recovery_login() -> ResponseReturnValue:
    return _second_step(
        RecoveryForm(),
        "recovery_code",
        lambda state, code, now: twofactor.verify_recovery_code(
            state.member, code, now, state.last_passed
        ),
        ("auth/recovery.html", "auth/_recovery_form.html"),
        ("PORTAL_LIMIT_RECOVERY", "recovery"),
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
