"""パスワードをお忘れの方: ask for a link by login ID or email, open it, set a new password.

The answer to a request is the same page whether or not the ID or address names a
member, and the lookup, the link and the mail happen after the answer on a background
thread, so neither the text nor the time it takes tells who is registered. The link's
token appears in one request only: that GET keeps the link's hash in the session and
redirects to ``/login/reset``, and every page of the flow sends
``Referrer-Policy: no-referrer``. The reset changes the password and nothing else: the
member is not signed in, and the next sign-in still asks for the second step.
"""

from __future__ import annotations

from flask import (
    Response,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
)
from flask import url_for as url
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, logout_user

from .. import (
    audit,
    invitations,
    members,
    notices,
    password_reset,
    sessions,
    throttle,
)
from ..models import PasswordReset
from ..texts import TOO_MANY
from ..twofactor import otp_codes
from ..web import background
from ..web.forms import NewPasswordForm
from ..web.password_meter import render_meter
from . import bp
from .forms import ForgotForm

# The session key holding the hash of the link this browser opened (never the token).
RESET_KEY = "password_reset"
MINUTES = password_reset.MINUTES


def _no_referrer(response: Response) -> Response:
    """Pages of the flow never pass their address on (the first one carries the token)."""
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _request_link(typed: str, ip: str, user_agent: str) -> None:
    """Look the typed ID or address up, and mail a link to the one member it names.
    Runs after the answer, off the request's thread (see portal/web/background.py)."""
    named = password_reset.member_for(typed)
    mailed = False
    if named is not None and named.email:
        # A member who never set a password gets the invitation again (days, not
        # minutes): a stranger typing their ID must not cut a pending one short. A failure
        # is logged (masked) by notify; the answer on screen was the same anyway.
        mailed = invitations.send_link(named, sessions.now(), requested_by="").mailed
    # What was typed is never recorded: only the member it names, if any.
    audit.record(
        "password.reset_requested",
        subject=named,
        actor=named,
        ip=ip,
        user_agent=user_agent,
        via="email" if "@" in typed else "login_id",
        mailed=mailed,
    )


def _request_details() -> tuple[str, str]:
    return request.remote_addr or "", request.user_agent.string or ""


def _forgot_throttle(key: str) -> tuple[int, tuple[str, ...]] | None:
    """The wait and the full bucket, or None. The account bucket is keyed by what was
    typed, known or not, so a refusal says nothing about who is registered; it is
    looked at here and counted only for requests that go through."""
    bucket: tuple[str, ...] = ("reset-account", key)
    if (wait := throttle.full("PORTAL_LIMIT_RESET_ACCOUNT", *bucket)) is not None:
        return wait, bucket
    bucket = ("reset-address", throttle.client_address())
    if (wait := throttle.hit("PORTAL_LIMIT_RESET_ADDRESS", *bucket)) is not None:
        return wait, bucket
    return None


@bp.route("/login/forgot", methods=["GET", "POST"])
def forgot() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(url("settings.password"))
    form = ForgotForm()
    error, wait, sent = None, None, False
    if form.validate_on_submit():
        typed = form.login_id.data or ""
        key = typed.strip().lower()
        refused = _forgot_throttle(key)
        if refused is not None:
            wait, bucket = refused
            error = TOO_MANY
            if throttle.first_refusal(*bucket):
                audit.record_request("request.throttled", bucket=bucket[0])
        else:
            throttle.record("PORTAL_LIMIT_RESET_ACCOUNT", "reset-account", key)
            # Nothing is looked up before the answer: its time tells no one who exists.
            background.run_later(_request_link, typed, *_request_details())
            sent = True
    response = make_response(
        render_template("auth/forgot.html", form=form, error=error, sent=sent, minutes=MINUTES),
        429 if wait else 200,
    )
    return throttle.too_many(response, wait) if wait else response


def _invalid_link(wait: int | None = None) -> Response:
    response = make_response(
        render_template(
            "auth/reset_invalid.html", error=TOO_MANY if wait else None, minutes=MINUTES
        )
    )
    if wait:
        throttle.too_many(response, wait)
    return _no_referrer(response)


def _token_throttle() -> int | None:
    """Opening links and posting new passwords, per client address: tokens cannot be
    guessed (256 bits), and trying is still not free."""
    return throttle.per_address(
        "PORTAL_LIMIT_RESET_TOKEN", "reset-token", event="request.throttled"
    )


@bp.route("/login/reset/<token>")
def reset_link(token: str) -> ResponseReturnValue:
    """The mailed link. Opening it changes nothing (mail scanners open links too): it
    only lets this browser show the new-password form."""
    if (wait := _token_throttle()) is not None:
        return _invalid_link(wait)
    reset = password_reset.find(token, sessions.now())
    if reset is None:
        session.pop(RESET_KEY, None)
        return _invalid_link()
    session[RESET_KEY] = reset.token_hash
    return _no_referrer(redirect(url("auth.reset_password")))


def _opened_link() -> PasswordReset | None:
    """The link this browser opened, while it still works."""
    return password_reset.opened(session.get(RESET_KEY, ""), sessions.now())


@bp.route("/login/reset", methods=["GET", "POST"])
def reset_password() -> ResponseReturnValue:
    reset = _opened_link()
    if reset is None:
        session.pop(RESET_KEY, None)
        return _invalid_link()
    m = password_reset.member_of(reset)
    form = NewPasswordForm()
    errors: dict[str, str] = {}
    wait = _token_throttle() if form.is_submitted() else None
    if wait is not None:
        errors["form"] = str(TOO_MANY)
    elif form.validate_on_submit():
        errors = members.new_password_errors(
            m, form.new_password.data or "", form.new_password_confirm.data or ""
        )
        if not errors:
            return _reset(reset, form.new_password.data or "")
    else:
        errors = {name: errs[0] for name, errs in form.errors.items() if errs}
    response = make_response(
        render_template(
            "auth/reset.html",
            form=form,
            errors=errors,
            m=m,
            minutes=MINUTES,
            first=not members.has_password(m),  # an invitation: the first password
        ),
        429 if wait else 200,
    )
    if wait:
        throttle.too_many(response, wait)
    return _no_referrer(response)


def _reset(reset: PasswordReset, new: str) -> Response:
    """Spend the link and set the password: every session of the member ends, their
    remembered devices and other links die, they are mailed, and they sign in afresh
    (second step included)."""
    now = sessions.now()
    m = password_reset.use(reset.token_hash, now)
    if m is None:  # a second tab (or a copy of this session) was faster
        session.pop(RESET_KEY, None)
        return _invalid_link()
    first = not members.has_password(m)
    members.set_password(m, new)
    otp_codes.discard(m, "change:email", "change:sms")
    audit.record_request("password.reset", subject=m, requested_by=reset.requested_by or m.login_id)
    if not first:  # an invited member who just chose a password needs no warning of it
        notices.send(m, "password_reset", now=now, **notices.request_details())
    # This browser is signed in as nobody afterwards, whoever it was before.
    logout_user()
    session.clear()
    if first:
        flash(_("パスワードを設定しました。ログインIDと新しいパスワードでログインしてください。"))
    else:
        flash(_("パスワードを再設定しました。新しいパスワードでログインしてください。"))
    return _no_referrer(redirect(url("auth.login")))


@bp.route("/login/password-strength", methods=["POST"])
def reset_strength() -> ResponseReturnValue:
    """The live strength meter of the reset page, judged with the member's own ID, name
    and address as known words; only for a browser holding a working link."""
    reset = _opened_link()
    form = NewPasswordForm()
    password = (form.new_password.data or "") if form.validate_on_submit() else ""
    if reset is None:
        password = ""
        m = None
    else:
        m = password_reset.member_of(reset)
    inputs = (m.login_id, m.name, m.email) if m is not None else ()
    return _no_referrer(make_response(render_meter(password, inputs)))
