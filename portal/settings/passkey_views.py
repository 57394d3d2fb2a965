"""Passkeys and security keys in settings: add (name, then the browser's prompt), rename
and remove. Every change needs a fresh second step, as for the other methods."""

from __future__ import annotations

from flask import url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from .. import audit, notices, sessions, twofactor
from ..texts import METHOD_NAMES
from ..twofactor import Failure, passkeys, recovery
from ..web import passkeys as passkey_web
from ..web.dialogs import dialog, done, member, reauth_dialog
from ..web.forms import ConfirmForm
from ..web.htmx import no_store
from . import bp
from .common import recovery_codes_dialog, stale, withdrawn
from .forms import PasskeyAnswerForm, PasskeyNameForm
from .views import UNTICKED, announce_enabled, removal_dialog, removed


def _too_many() -> ResponseReturnValue:
    return done(str(METHOD_NAMES["passkey"]), passkey_web.failure_message(Failure.TOO_MANY))


def _prompt(name: str, error: str | None = None) -> ResponseReturnValue:
    """Step 2: the browser's prompt for the key named in step 1 (a fresh challenge)."""
    rp = passkey_web.relying_party()
    options = passkeys.begin_registration(
        member(), name, rp, passkey_web.session_key(), sessions.now()
    )
    return no_store(
        dialog(
            "settings/_passkey_setup.html",
            step="prompt",
            name=passkeys.clean_name(name),
            options=options,
            error=error,
        )
    )


@bp.route("/2fa/passkey/setup", methods=["GET", "POST"])
def passkey_setup() -> ResponseReturnValue:
    """Step 1: name the key. The name is checked before the browser makes the key, so
    no key is ever made that the portal then refuses to keep."""
    here = url_for("settings.passkey_setup")
    m = member()
    if (refused := withdrawn("passkey")) is not None:
        return refused
    if stale():
        return reauth_dialog(here)
    if passkeys.count(m) >= passkeys.MAX_KEYS:
        return _too_many()
    form = PasskeyNameForm()
    error = None
    if form.validate_on_submit():
        error = passkeys.name_error(m, form.name.data)
        if error is None:
            return _prompt(form.name.data)
    elif form.errors:
        error = passkeys.name_error(m, "x" * (passkeys.NAME_MAX + 1))
    if not form.is_submitted():
        form.name.data = _suggested_name(m)
    return dialog("settings/_passkey_setup.html", step="name", form=form, error=error, action=here)


def _suggested_name(m) -> str:
    taken = {key.name for key in passkeys.listed(m)}
    for number in range(1, passkeys.MAX_KEYS + 2):
        name = _("パスキー %(n)d", n=number)
        if name not in taken:
            return name
    return ""


@bp.route("/2fa/passkey/register", methods=["POST"])
def passkey_register() -> ResponseReturnValue:
    """The browser's answer: verified against this session's challenge, then kept."""
    m = member()
    if (refused := withdrawn("passkey")) is not None:
        return refused
    if stale():
        return reauth_dialog(url_for("settings.passkey_setup"))
    form = PasskeyAnswerForm()
    now = sessions.now()
    name = passkeys.pending_name(m, passkey_web.session_key(), now)
    answer = form.credential.data if form.validate_on_submit() else None
    first = "passkey" not in twofactor.enabled_methods(m)
    outcome, new_codes = twofactor.enable_passkey(
        m, answer, now, passkey_web.relying_party(), passkey_web.session_key()
    )
    if isinstance(outcome, Failure):
        if outcome is Failure.TOO_MANY:
            return _too_many()
        if name is None or outcome is Failure.GONE:
            # Nothing to retry with: back to naming the key.
            return dialog(
                "settings/_passkey_setup.html",
                step="name",
                form=PasskeyNameForm(formdata=None, name=name or _suggested_name(m)),
                error=passkey_web.failure_message(outcome),
                action=url_for("settings.passkey_setup"),
            )
        return _prompt(name, passkey_web.failure_message(outcome))
    audit.record_request("passkey.added", method="passkey", key=outcome.id, name=outcome.name)
    if first:
        announce_enabled("passkey", notice=False)
    else:
        sessions.mark_reauthenticated(second_step=True)
        sessions.end_other_sessions(m)
    notices.send(
        m,
        "passkey_added",
        now=now,
        name=outcome.name,
        first=first,
        **notices.request_details(),
    )
    title = _("パスキー「%(name)s」を登録しました。", name=outcome.name)
    if new_codes:
        return recovery_codes_dialog(new_codes, title)
    return done(title, _("次回のログインから、このパスキーで認証できます。"))


def _key_or_answer(endpoint: str, key_id: int):
    """The member's key, or the answer instead: a fresh second step first (every change
    needs one), or "not found" for a key that is gone or another member's."""
    if stale():
        return None, reauth_dialog(url_for(endpoint, key_id=key_id))
    key = passkeys.owned(member(), key_id)
    if key is None:
        return None, done(
            str(METHOD_NAMES["passkey"]),
            _("このパスキーは見つかりません（既に削除されている可能性があります）。"),
        )
    return key, None


@bp.route("/2fa/passkey/<int:key_id>/rename", methods=["GET", "POST"])
def passkey_rename(key_id: int) -> ResponseReturnValue:
    key, answer = _key_or_answer("settings.passkey_rename", key_id)
    if answer is not None:
        return answer
    m = member()
    form = PasskeyNameForm()
    error = None
    if form.validate_on_submit():
        error = passkeys.name_error(m, form.name.data, key_id=key.id)
        if error is None:
            old = key.name
            passkeys.rename(m, key.id, form.name.data)
            audit.record_request(
                "passkey.renamed", method="passkey", key=key.id, old=old, new=key.name
            )
            return done(
                _("名前を変更しました。"),
                _("パスキーの名前を「%(name)s」にしました。", name=key.name),
            )
    elif form.errors:
        error = passkeys.name_error(m, "x" * (passkeys.NAME_MAX + 1))
    if not form.is_submitted():
        form.name.data = key.name
    action = url_for("settings.passkey_rename", key_id=key_id)
    return dialog("settings/_passkey_rename.html", form=form, error=error, action=action, key=key)


@bp.route("/2fa/passkey/<int:key_id>/remove", methods=["GET", "POST"])
def passkey_remove(key_id: int) -> ResponseReturnValue:
    """The confirm dialog of every method: はい、無効化して問題ありません。 → 無効化 → 完了."""
    key, answer = _key_or_answer("settings.passkey_remove", key_id)
    if answer is not None:
        return answer
    m = member()
    keys = passkeys.count(m)
    last_of_all = keys == 1 and twofactor.enabled_methods(m) == ["passkey"]
    codes_left = recovery.remaining(m) if last_of_all else 0
    form = ConfirmForm()
    error = None
    if form.validate_on_submit():
        if form.confirm.data:
            name = twofactor.remove_passkey(m, key.id)
            if name is None:  # removed by a parallel request meanwhile
                return _key_or_answer("settings.passkey_remove", key_id)[1]
            audit.record_request("passkey.removed", method="passkey", key=key_id, name=name)
            if keys == 1:
                audit.record_request("method.disabled", method="passkey")
            return removed(
                _("パスキー「%(name)s」の無効化が完了しました。", name=name),
                codes_left,
                "passkey_removed",
                name=name,
            )
        error = str(UNTICKED)
    return removal_dialog(
        form=form,
        error=error,
        action=url_for("settings.passkey_remove", key_id=key_id),
        method_name=_("パスキー「%(name)s」", name=key.name),
        lead=_(
            "無効化すると、このパスキーではログインできなくなります。"
            "パスキーを保存した端末やパスワード管理ツールからも削除しておくと安心です。"
        ),
        last=last_of_all,
        codes_left=codes_left,
    )
