"""The 2FA settings page, re-authentication, turning methods off, recovery codes.

Every dialog is one partial template: htmx swaps it into the page's ``<dialog>``;
without JavaScript the same URL renders it as a full page. Changing or turning off a
method needs a recent second step (10 minutes); a stale session is first asked for one.
"""

from __future__ import annotations

from datetime import datetime

from flask import flash, redirect, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import login_required

from .. import audit, members, notices, sessions, throttle, twofactor
from ..texts import (
    METHOD_NAMES,
    METHOD_SHORT,
    TOO_MANY,
    WRONG_CODE,
    refusal_message,
    sent_message,
)
from ..twofactor import (
    CONTACT_METHODS,
    METHODS,
    Failure,
    Outcome,
    SendRefused,
    devices,
    passkeys,
    recovery,
)
from ..web import cookies, enforcement, locks, policy
from ..web import passkeys as passkey_web
from ..web.dialogs import dialog, done, member, reauth_dialog
from ..web.forms import ActionForm, ConfirmForm, MethodForm, ReauthCodeForm, ReauthPasswordForm
from ..web.htmx import is_htmx, redirect_to, render
from . import bp
from .common import mask, method_state_mismatch, recovery_codes_dialog, stale
from .forms import PasskeyAnswerForm


@bp.before_request
@login_required
def require_sign_in() -> None:
    """Every settings URL is for signed-in members only."""


def sections_context() -> dict:
    m = member()
    methods = twofactor.enabled_methods(m)
    offered = policy.offered()
    return {
        "methods": methods,
        # Sections for what the policy offers, and for withdrawn methods still set up
        # (so the member can see why they no longer work and turn them off).
        "kinds": [k for k in METHODS if k in offered or k in methods],
        "offered": offered,
        "since": {kind: twofactor.method_since(m, kind) for kind in methods},
        "preferred": twofactor.preferred_method(m, offered),
        "has_two_factor": bool(methods),
        "recovery_left": recovery.remaining(m),
        "email_masked": mask("email", m.email) if m.email else None,
        "phone_masked": mask("sms", m.phone) if m.phone else None,
        "method_names": METHOD_NAMES,
        "passkeys": passkeys.listed(m),
        "passkey_max": passkeys.MAX_KEYS,
        "passwordless": passkey_web.passwordless_allowed(),
    }


@bp.route("/2fa")
def index() -> ResponseReturnValue:
    return render(
        "settings/index.html",
        "settings/_sections.html",
        devices=_devices_context(),
        **sections_context(),
    )


@bp.route("/2fa/setup")
def setup() -> ResponseReturnValue:
    """The set-up page the policy sends members to (required): only the methods it
    offers; the member goes on once one is set up."""
    m = member()
    state = enforcement.enrolment(m)
    reset_at = session.pop(enforcement.RESET_NOTICE, None)
    # A form that needs 2FA sent the member here (``?next=``): back there once set up.
    back_to = sessions.safe_next(request.args.get("next"))
    return render(
        "settings/setup.html",
        "settings/_sections.html",
        state=state,
        forced=state.forced(sessions.now()),
        reset_at=datetime.fromisoformat(reset_at) if reset_at else None,
        days_left=state.days_left(sessions.now()),
        landing=back_to or policy.current().landing_path,
        back_to=back_to,
        setup_done=state.has_two_factor,
        refresh_url=url_for("settings.setup", next=back_to),
        **sections_context(),
    )


@bp.route("/banner/hide", methods=["POST"])
def hide_banner() -> ResponseReturnValue:
    """Hide the "not set up" banner for the rest of this session."""
    if ActionForm().validate_on_submit():
        session[enforcement.BANNER_HIDDEN] = True
    if is_htmx():
        return ""
    return redirect(sessions.safe_next(request.form.get("next")) or url_for("main.index"))


def _devices_context() -> dict:
    m = member()
    now = sessions.now()
    return {
        "allowed": policy.current().allow_remember_device,
        "listed": devices.listed(m, now),
        "this_browser": devices.owned_by(m, cookies.remembered_tokens()),
    }


@bp.route("/2fa/devices/<int:device_id>/forget", methods=["POST"])
def forget_device(device_id: int) -> ResponseReturnValue:
    """この端末の記憶を解除: the device is asked for the code again next time."""
    if ActionForm().validate_on_submit() and devices.forget(member(), device_id):
        audit.record_request("device.forgotten", device=device_id)
        flash(_("端末の記憶を解除しました。次回からはコードの入力が必要です。"))
    return redirect_to(url_for("settings.index") + "#section-devices")


@bp.route("/2fa/devices/forget", methods=["POST"])
def forget_all_devices() -> ResponseReturnValue:
    """すべての端末の記憶を解除する."""
    if ActionForm().validate_on_submit():
        count = devices.forget(member())
        audit.record_request("device.forgotten", count=count)
        flash(_("すべての端末の記憶を解除しました。"))
    return redirect_to(url_for("settings.index") + "#section-devices")


@bp.route("/reauth", methods=["GET", "POST"])
def reauth() -> ResponseReturnValue:
    next_url = sessions.safe_next(request.args.get("next")) or url_for("settings.index")
    m = member()
    form = ReauthCodeForm() if twofactor.has_two_factor(m) else ReauthPasswordForm()
    if form.is_submitted() and (wait := _reauth_limit()):
        return throttle.too_many(reauth_dialog(next_url, form=form, error=TOO_MANY), wait)
    if isinstance(form, ReauthCodeForm):
        if form.validate_on_submit():
            method = form.method.data if form.method.data in CONTACT_METHODS else None
            result = twofactor.verify_any(m, form.code.data, sessions.now(), method)
            if result.ok:
                sessions.mark_reauthenticated(second_step=True)
                return redirect(next_url)
            form.code.data = ""
            audit.record_request("reauth.failed", method=method or "app")
            if result.replayed:
                locks.report_replay(m, method or "app")
            if result.outcome is Outcome.LOCKED:
                locks.report(m, result.lock, method or "app")
                error, status, wait = locks.refusal(result.lock, sessions.now())
                response = reauth_dialog(next_url, form=form, error=error, status=status)
                return throttle.too_many(response, wait) if wait else response
            return reauth_dialog(next_url, form=form, error=str(WRONG_CODE))
    elif form.validate_on_submit():
        if wait := throttle.hit("PORTAL_LIMIT_REAUTH_PASSWORD", "reauth-password", str(m.id)):
            return throttle.too_many(reauth_dialog(next_url, form=form, error=TOO_MANY), wait)
        if members.authenticate(m.login_id, form.password.data or "") is not None:
            sessions.mark_reauthenticated(second_step=False)
            return redirect(next_url)
        return reauth_dialog(next_url, form=form, error=_("パスワードが正しくありません。"))
    return reauth_dialog(next_url, form=form)


@bp.route("/reauth/passkey", methods=["POST"])
def reauth_passkey() -> ResponseReturnValue:
    """本人確認 with one of the member's passkeys (a second step, like a code)."""
    next_url = sessions.safe_next(request.args.get("next")) or url_for("settings.index")
    m = member()
    form = PasskeyAnswerForm()
    if form.is_submitted() and (wait := _reauth_limit()):
        return throttle.too_many(reauth_dialog(next_url, error=TOO_MANY), wait)
    rp = passkey_web.relying_party()
    if (
        not form.validate_on_submit()
        or rp is None
        or "passkey" not in twofactor.usable_methods(m, policy.offered())
    ):
        return reauth_dialog(next_url, passkey_error=passkey_web.failure_message(None))
    result = twofactor.verify_passkey(
        m, form.credential.data, sessions.now(), rp, passkey_web.session_key(), "reauth"
    )
    if result.ok:
        sessions.mark_reauthenticated(second_step=True)
        return redirect(next_url)
    audit.record_request("reauth.failed", method="passkey")
    if result.passkey is Failure.CLONED:
        passkey_web.report_clone(m, result.key)
    if result.outcome is Outcome.LOCKED:
        locks.report(m, result.lock, "passkey")
        error, status, wait = locks.refusal(result.lock, sessions.now())
        response = reauth_dialog(next_url, passkey_error=error, status=status)
        return throttle.too_many(response, wait) if wait else response
    return reauth_dialog(next_url, passkey_error=passkey_web.failure_message(result.passkey))


def _reauth_limit() -> int | None:
    return throttle.per_address("PORTAL_LIMIT_REAUTH", "reauth", event="request.throttled")


@bp.route("/reauth/send", methods=["POST"])
def reauth_send() -> ResponseReturnValue:
    """Send a code by email/SMS for re-authentication (never by a GET)."""
    next_url = sessions.safe_next(request.args.get("next")) or url_for("settings.index")
    m = member()
    form = MethodForm()
    kind = form.method.data
    if form.is_submitted() and (wait := _reauth_limit()):
        return throttle.too_many(reauth_dialog(next_url, error=TOO_MANY), wait)
    if (
        not form.validate_on_submit()
        or kind not in CONTACT_METHODS
        or kind not in twofactor.usable_methods(m, policy.offered())
    ):
        return reauth_dialog(next_url)
    code_form = ReauthCodeForm(formdata=None, method=kind)
    try:
        sent_to = twofactor.send_signin_code(m, kind, sessions.now())
    except SendRefused as refused:
        return reauth_dialog(
            next_url,
            form=code_form,
            send_error=refusal_message(refused, kind),
            resend_wait=refused.seconds,
        )
    return reauth_dialog(next_url, form=code_form, notice=sent_message(kind, mask(kind, sent_to)))


@bp.route("/2fa/preferred", methods=["POST"])
def preferred() -> ResponseReturnValue:
    """Which method sign-in starts with."""
    form = MethodForm()
    if form.validate_on_submit():
        twofactor.set_preferred(member(), form.method.data or "")
    if request.headers.get("HX-Request"):
        return index()
    return redirect_to(url_for("settings.index"))


@bp.route("/2fa/<any(app, email, sms, passkey):kind>/disable", methods=["GET", "POST"])
def method_disable(kind: str) -> ResponseReturnValue:
    here = url_for("settings.method_disable", kind=kind)
    m = member()
    if stale():
        return reauth_dialog(here)
    if (mismatch := method_state_mismatch(m, kind, needs_method=True)) is not None:
        return mismatch
    name = METHOD_NAMES[kind]
    # Turning off the last method turns 二段階認証 off and voids the recovery codes too:
    # the dialog says so before, and the completion after.
    last = set(twofactor.enabled_methods(m)) == {kind}
    codes_left = recovery.remaining(m) if last else 0
    form = ConfirmForm()
    error = None
    if form.validate_on_submit():
        if form.confirm.data:
            twofactor.disable_method(m, kind)
            audit.record_request("method.disabled", method=kind)
            return removed(
                _("%(method)sの無効化が完了しました。", method=name),
                codes_left,
                "method_disabled",
                method=name,
            )
        error = str(UNTICKED)
    return removal_dialog(
        form=form,
        error=error,
        action=here,
        method_name=name,
        last=last,
        codes_left=codes_left,
    )


def removal_dialog(**context) -> ResponseReturnValue:
    """The confirm dialog for turning off a method or removing a passkey."""
    return dialog("settings/_disable.html", **context)


UNTICKED = _l("無効化するには「はい、無効化して問題ありません。」にチェックを入れてください。")


def removed(title: str, codes_left: int, notice: str, **details: object) -> ResponseReturnValue:
    """After a method or a passkey is removed: other sessions end, the member is mailed
    (saying whether any second step is left), and the completion dialog says what still
    works."""
    m = member()
    sessions.end_other_sessions(m)
    others = twofactor.enabled_methods(m)
    notices.send(
        m,
        notice,
        now=sessions.now(),
        none_left=not others,
        **details,
        **notices.request_details(),
    )
    return removal_done(title, others, codes_left)


def removal_done(title: str, others: list[str], codes_left: int) -> ResponseReturnValue:
    """The completion: what still works, or that 二段階認証 is off (with the codes)."""
    if others:
        after = _("ログインには、引き続き%(methods)sを使えます。", methods=_joined(others))
    elif codes_left:
        after = _(
            "二段階認証はオフになりました。残っていたリカバリーコード（%(n)d個）も"
            "使えなくなりました。",
            n=codes_left,
        )
    else:
        after = _("二段階認証はオフになりました。")
    return done(title, after)


def _joined(kinds: list[str]) -> str:
    return _("、").join(str(METHOD_SHORT[k]) for k in kinds)


@bp.route("/2fa/recovery/regenerate", methods=["GET", "POST"])
def recovery_regenerate() -> ResponseReturnValue:
    here = url_for("settings.recovery_regenerate")
    m = member()
    if not twofactor.has_two_factor(m):
        return done(
            _("リカバリーコード"), _("リカバリーコードは二段階認証を設定すると発行されます。")
        )
    if stale():
        return reauth_dialog(here)
    form = ActionForm()
    if form.validate_on_submit():
        new_codes = recovery.issue(m, sessions.now())
        sessions.end_other_sessions(m)
        audit.record_request("recovery.regenerated")
        notices.send(m, "recovery_regenerated", now=sessions.now(), **notices.request_details())
        return recovery_codes_dialog(new_codes, _("リカバリーコードを再発行しました。"))
    return dialog("settings/_regenerate.html", form=form, action=here)


def announce_enabled(kind: str, *, notice: bool = True) -> None:
    """After a method is turned on: other sessions end, the event is audited (an
    intruder adding his own phone is what an operator looks for), the member is told
    (unless the caller sends a notice of its own)."""
    m = member()
    sessions.mark_reauthenticated(second_step=True)
    sessions.end_other_sessions(m)
    audit.record_request("method.enabled", method=kind)
    if notice:
        notices.send(
            m,
            "method_enabled",
            now=sessions.now(),
            method=METHOD_NAMES[kind],
            **notices.request_details(),
        )


@bp.route("/sessions/end-others", methods=["POST"])
def end_other_sessions() -> ResponseReturnValue:
    """すべての端末からサインアウト: every session of the member ends but this one (a
    forgotten shared PC, a lost phone). Protective, so it asks for no re-authentication."""
    if ActionForm().validate_on_submit():
        sessions.end_other_sessions(member())
        audit.record_request("sessions.ended_others")
        flash(_("ほかのすべての端末からサインアウトしました。"))
    return redirect_to(url_for("settings.index"))
