"""Member information (name, email, phone) and the password.

Changing the email or phone needs the current password and, for a member with 2FA, a
recent second step. A new email address (and a new phone number when SMS is a second
step) only takes over once a code sent to it is entered, so a stolen session cannot
quietly move the second step and notices never go to an unproven address; the old
address is told either way.
"""

from __future__ import annotations

from functools import partial

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import get_locale, refresh
from flask_babel import gettext as _
from markupsafe import Markup

from .. import (
    audit,
    i18n,
    members,
    messages,
    notices,
    password_reset,
    sessions,
    throttle,
    twofactor,
)
from ..extensions import db
from ..texts import TOO_MANY, code_status_message, refusal_message, resend_wait_message
from ..twofactor import SendRefused, Status, otp_codes
from ..web import language as language_switch
from ..web.dialogs import member
from ..web.password_meter import render_meter
from . import bp
from .common import mask
from .forms import (
    ContactConfirmForm,
    ContactKindForm,
    LocaleForm,
    PasswordChangeForm,
    PasswordStrengthForm,
    ProfileForm,
)

FIELD_OF = {"email": "email", "sms": "phone"}
EVENT_OF = {"email": "email_changed", "sms": "phone_changed"}


def needs_proof(kind: str, methods: list[str]) -> bool:
    """A new email address always takes over only once a code sent to it is entered:
    security notices go there, and must never go to an address nobody has proven. A
    new phone number needs it only when SMS is a second step."""
    return kind == "email" or kind in methods


def _as_typed(kind: str, value: str) -> str:
    """A new address as the member wrote it (a phone number in its usual form)."""
    return value if kind == "email" else members.display_phone(value)


def _pending_changes(m) -> list[dict]:
    """Changes waiting for their code. The new address is shown as typed: the member
    just entered it and must be able to spot a typo (the old one stays masked)."""
    now = sessions.now()
    found = []
    for kind in ("email", "sms"):
        purpose = f"change:{kind}"
        target = otp_codes.pending_destination(m, purpose, now)
        if target:
            found.append(
                {
                    "kind": kind,
                    "target": target,
                    "shown": _as_typed(kind, target),
                    "resend_wait": otp_codes.resend_wait(m, purpose, now),
                }
            )
    return found


def _send_change_code(m, kind: str, target: str, *, resend: bool = False) -> bool:
    """Send the code that proves the new address; a refusal becomes a flash."""
    try:
        otp_codes.send(
            m, f"change:{kind}", kind, target, sessions.now(), partial(messages.change_code, m)
        )
    except SendRefused as refused:
        message = refusal_message(refused, kind)
        if message is not None:
            flash(message, "error")
        elif resend:
            flash(resend_wait_message(refused.seconds), "info")
        else:
            # A second change within the minute: the new address was not taken.
            flash(
                _(
                    "確認コードは60秒に1回まで送信できます。"
                    "あと%(seconds)d秒待ってから、もう一度保存してください。",
                    seconds=refused.seconds,
                ),
                "error",
            )
        return False
    return True


def _locale_form(m, formdata=None) -> LocaleForm:
    """The language and time-zone choices, preset to the member's own (or what the page
    is shown in, and the site's zone, before a first choice)."""
    form = LocaleForm(formdata=formdata)
    # Each language named in itself, marked with its own lang for screen readers.
    form.language.choices = [(c, n, {"lang": c}) for c, n in i18n.available().items()]
    form.timezone.choices = [(name, name) for name in i18n.zone_names()]
    if formdata is None:
        form.language.data = m.locale or str(get_locale())
        form.timezone.data = i18n.member_timezone(m)
    return form


def _render_profile(
    form: ProfileForm,
    confirm: ContactConfirmForm | None = None,
    locale_form: LocaleForm | None = None,
    **context,
):
    m = member()
    return render_template(
        "settings/profile.html",
        form=form,
        confirm=confirm or ContactConfirmForm(formdata=None),
        locale_form=locale_form or _locale_form(m),
        pending=_pending_changes(m),
        **context,
    )


def reauth_needed_message(endpoint: str) -> Markup:
    """A field error with a link to re-authenticate and come back to this page."""
    link = url_for("settings.reauth", next=url_for(endpoint))
    return Markup('{} <a href="{}">{}</a>').format(
        _("変更するには、先に二段階認証で本人確認をしてください。"), link, _("本人確認をする")
    )


def _apply(m, kind: str, value: str) -> None:
    """Store the new address and tell the old one. When the address is a second step,
    codes already sent to the old one die and every other session ends, as with any
    other change to the second step."""
    old = getattr(m, FIELD_OF[kind])
    setattr(m, FIELD_OF[kind], value)
    db.session.commit()
    audit.record_request(
        "profile.email_changed" if kind == "email" else "profile.phone_changed",
        old=mask(kind, old) if old else "",
        new=mask(kind, value) if value else "",
    )
    if kind in twofactor.enabled_methods(m):
        otp_codes.discard(m, f"signin:{kind}", f"setup:{kind}")
        sessions.end_other_sessions(m)
    if kind == "email":
        password_reset.void(m)
    if kind == "email" and old:
        notices.send(
            m,
            "email_changed",
            now=sessions.now(),
            to=old,
            new_value=value,
            **notices.request_details(),
        )
    elif kind == "sms":
        notices.send(
            m,
            "phone_changed",
            now=sessions.now(),
            new_value=mask("sms", value) if value else "-",
            **notices.request_details(),
        )


@bp.route("/profile", methods=["GET", "POST"])
def profile() -> ResponseReturnValue:
    m = member()
    form = ProfileForm(obj=None if request.method == "POST" else m)
    if not form.validate_on_submit():
        return _render_profile(form)
    errors: dict[str, str] = {}
    new = {"email": m.email, "sms": m.phone}
    try:
        name = members.check_name(form.name.data or "")
    except members.MemberError as exc:
        errors["name"] = str(exc)
    try:
        new["email"] = members.check_email(form.email.data or "")
    except members.MemberError as exc:
        errors["email"] = str(exc)
    try:
        new["sms"] = members.normalise_phone(form.phone.data or "")
    except members.MemberError as exc:
        errors["phone"] = str(exc)
    methods = twofactor.enabled_methods(m)
    if "sms" in methods and "phone" not in errors and not new["sms"]:
        errors["phone"] = _("SMSによる認証を使っているため、電話番号は空にできません。")
    changed = [k for k in ("email", "sms") if k not in errors and new[k] != getattr(m, FIELD_OF[k])]
    if changed and not errors:
        password = form.current_password.data or ""
        if not password:
            errors["current_password"] = _("現在のパスワードを入力してください。")
        elif throttle.hit("PORTAL_LIMIT_REAUTH_PASSWORD", "reauth-password", str(m.id)):
            errors["current_password"] = str(TOO_MANY)
        elif not members.check_password(m, password):
            errors["current_password"] = _("現在のパスワードが正しくありません。")
        elif not sessions.is_fresh(bool(methods)) and methods:
            errors["current_password"] = reauth_needed_message("settings.profile")
    if errors:
        return _render_profile(form, errors=errors)
    m.name = name
    db.session.commit()
    for kind in changed:
        if needs_proof(kind, methods):
            if _send_change_code(m, kind, new[kind]):
                flash(
                    _(
                        "%(to)s に確認コードを送信しました。コードを入力すると変更が確定します。",
                        to=_as_typed(kind, new[kind]),
                    )
                )
        else:
            _apply(m, kind, new[kind])
            flash(_("連絡先を変更しました。"))
    if not changed:
        flash(_("メンバー情報を保存しました。"))
    return redirect(url_for("settings.profile"))


@bp.route("/profile/language", methods=["POST"])
def profile_locale() -> ResponseReturnValue:
    """表示言語とタイムゾーン: stored on the member, so pages, mail and SMS follow them.
    A value not in the lists is an error beside its field; nothing is stored then."""
    m = member()
    form = _locale_form(m, formdata=request.form)
    if not form.validate_on_submit():  # a file where a choice belongs
        errors = {name: str(found[0]) for name, found in form.errors.items()}
        return _render_profile(
            ProfileForm(formdata=None, obj=m), locale_form=form, locale_errors=errors
        )
    errors: dict[str, str] = {}
    try:
        language = i18n.check_language(form.language.data)
        if language not in i18n.available():
            raise ValueError(str(i18n.LANGUAGE_ERROR))
    except ValueError as exc:
        errors["language"] = str(exc)
    try:
        zone = i18n.check_timezone(form.timezone.data)
    except ValueError as exc:
        errors["timezone"] = str(exc)
    if errors:
        return _render_profile(
            ProfileForm(formdata=None, obj=m), locale_form=form, locale_errors=errors
        )
    m.locale, m.timezone = language, zone
    db.session.commit()
    refresh()  # this answer's flash already in the new language
    flash(_("表示言語とタイムゾーンを保存しました。"))
    response = redirect(url_for("settings.profile"))
    language_switch.remember(response, language)
    return response


@bp.route("/profile/confirm", methods=["POST"])
def profile_confirm() -> ResponseReturnValue:
    """Enter the code sent to the new address: only then does it take over."""
    m = member()
    confirm = ContactConfirmForm()
    kind = confirm.kind.data
    if not confirm.validate_on_submit() or kind not in FIELD_OF:
        return redirect(url_for("settings.profile"))
    if not needs_proof(kind, twofactor.enabled_methods(m)):
        # The method was turned off since: the change no longer needs proving, and a
        # code from then must not apply it. Start again from the form.
        otp_codes.discard(m, f"change:{kind}")
        flash(_("この変更は無効になりました。もう一度、変更内容を保存してください。"), "error")
        return redirect(url_for("settings.profile"))
    status, target = otp_codes.check(m, f"change:{kind}", confirm.code.data, sessions.now())
    if status is Status.OK and target:
        _apply(m, kind, target)
        flash(_("連絡先を変更しました。これからの認証コードは新しい連絡先に送られます。"))
        return redirect(url_for("settings.profile"))
    confirm.code.data = ""
    if status in (Status.USED, Status.EXPIRED) and not any(
        change["kind"] == kind for change in _pending_changes(m)
    ):
        # No change is waiting for a code any more: say why on the page itself.
        flash(code_status_message(status), "error")
        return redirect(url_for("settings.profile"))
    return _render_profile(
        ProfileForm(formdata=None, obj=m),
        confirm=confirm,
        confirm_errors={kind: code_status_message(status)},
    )


def _pending_target(m, form: ContactKindForm) -> tuple[str, str] | None:
    kind = form.kind.data
    if not form.validate_on_submit() or kind not in FIELD_OF:
        return None
    target = otp_codes.pending_destination(m, f"change:{kind}", sessions.now())
    return (kind, target) if target else None


@bp.route("/profile/resend", methods=["POST"])
def profile_resend() -> ResponseReturnValue:
    """再送: the code for a pending change again, to the same new address (60 s apart)."""
    m = member()
    pending = _pending_target(m, ContactKindForm())
    if pending is None:
        flash(_("確認待ちの変更はありません。"), "error")
    elif _send_change_code(m, *pending, resend=True):
        flash(_("%(to)s に確認コードを再送しました。", to=_as_typed(*pending)))
    return redirect(url_for("settings.profile"))


@bp.route("/profile/cancel", methods=["POST"])
def profile_cancel() -> ResponseReturnValue:
    """取り消す: drop a pending change; the current address stays."""
    m = member()
    pending = _pending_target(m, ContactKindForm())
    if pending is not None:
        kind, _target = pending
        otp_codes.discard(m, f"change:{kind}")
        audit.record_request("profile.change_cancelled", kind=kind)
        flash(_("変更を取り消しました。今の連絡先がそのまま使われます。"))
    return redirect(url_for("settings.profile"))


@bp.route("/password", methods=["GET", "POST"])
def password() -> ResponseReturnValue:
    m = member()
    form = PasswordChangeForm()
    errors: dict[str, str] = {}
    if form.validate_on_submit():
        methods = twofactor.enabled_methods(m)
        new = form.new_password.data or ""
        # Every field is checked, so all errors show at once.
        current = form.current_password.data or ""
        if not current:
            errors["current_password"] = _("現在のパスワードを入力してください。")
        elif throttle.hit("PORTAL_LIMIT_REAUTH_PASSWORD", "reauth-password", str(m.id)):
            errors["current_password"] = str(TOO_MANY)
        elif not members.check_password(m, current):
            errors["current_password"] = _("現在のパスワードが正しくありません。")
        elif methods and not sessions.is_fresh(True):
            errors["current_password"] = reauth_needed_message("settings.password")
        errors.update(members.new_password_errors(m, new, form.new_password_confirm.data or ""))
        if not errors:
            members.set_password(m, new)
            otp_codes.discard(m, "change:email", "change:sms")
            audit.record_request("password.changed")
            sessions.end_other_sessions(m)
            notices.send(m, "password_changed", now=sessions.now(), **notices.request_details())
            flash(_("パスワードを変更しました。ほかの端末のログイン状態は解除されました。"))
            return redirect(url_for("settings.password"))
    return render_template("settings/password.html", form=form, errors=errors)


@bp.route("/password/strength", methods=["POST"])
def password_strength() -> ResponseReturnValue:
    """The live strength meter (htmx, as the member types). Judged like the final
    check, with the member's own ID, name and address as known words."""
    m = member()
    form = PasswordStrengthForm()
    password = (form.new_password.data or "") if form.validate_on_submit() else ""
    return render_meter(password, (m.login_id, m.name, m.email))
