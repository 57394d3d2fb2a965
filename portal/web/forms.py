"""The base form and the small forms several blueprints post."""

from __future__ import annotations

from flask import request
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.form import _Auto
from wtforms import BooleanField, HiddenField, PasswordField, StringField
from wtforms.validators import Length

CODE_ATTRS = {
    "autocomplete": "one-time-code",
    "inputmode": "numeric",
    "autocapitalize": "off",
    "spellcheck": "false",
}

FILE_NOT_ALLOWED = _l("この項目にファイルは送信できません。文字で入力してください。")


class PortalForm(FlaskForm):
    """Forms read ``request.form`` only.

    Flask-WTF would also read uploaded files and JSON bodies into the fields, so a
    text field sent as a file part (or a number in JSON) reached validators that
    expect a string and answered 500. A file where text is expected is a field error.
    """

    # Fields that take an uploaded file (read by the view from request.files).
    FILE_FIELDS: tuple[str, ...] = ()

    class Meta(FlaskForm.Meta):
        def wrap_formdata(self, form, formdata):
            if formdata is _Auto:
                return request.form if form.is_submitted() else None
            return formdata

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        for name in request.files:
            field = self._fields.get(name)
            if field is not None and name not in self.FILE_FIELDS:
                field.errors = [*field.errors, str(FILE_NOT_ALLOWED)]
                valid = False
        return valid

    def first_errors(self) -> dict[str, str]:
        """Each failing field's first error, by field name: one message beside a field."""
        return {name: str(field.errors[0]) for name, field in self._fields.items() if field.errors}


class ActionForm(PortalForm):
    """A POST with nothing but the CSRF token."""


class MethodForm(PortalForm):
    method = StringField(validators=[Length(max=8)])


class LanguageForm(PortalForm):
    """The language switch on every page: the language, and the page to return to."""

    language = HiddenField(validators=[Length(max=8)])
    next = HiddenField(validators=[Length(max=2000)])


class ConfirmForm(PortalForm):
    confirm = BooleanField(_l("はい、無効化して問題ありません。"))


class ReauthCodeForm(PortalForm):
    # Which email/SMS method's code is being entered (empty: the app or a recovery code).
    method = HiddenField(validators=[Length(max=8)])
    code = StringField(
        _l("認証コードまたはリカバリーコード"),
        validators=[Length(max=64)],
        render_kw={"autocomplete": "one-time-code", "autocapitalize": "off", "spellcheck": "false"},
    )


class ReauthPasswordForm(PortalForm):
    password = PasswordField(
        _l("パスワード"),
        validators=[Length(max=4096)],
        render_kw={"autocomplete": "current-password"},
    )


class NewPasswordForm(PortalForm):
    """A new password and its confirmation (the password change and the reset link).
    The rules are checked by the view with members.new_password_errors, so every
    field error shows at once."""

    new_password = PasswordField(
        _l("新しいパスワード（12文字以上）"),
        validators=[Length(max=4096)],
        render_kw={"autocomplete": "new-password"},
    )
    new_password_confirm = PasswordField(
        _l("新しいパスワード（確認）"),
        validators=[Length(max=4096)],
        render_kw={"autocomplete": "new-password"},
    )
