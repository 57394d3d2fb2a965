"""Forms check shape only; the domain checks truth and counts tries."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

CODE_ATTRS = {
    "autocomplete": "one-time-code",
    "inputmode": "numeric",
    "autocapitalize": "off",
    "spellcheck": "false",
}


class LoginForm(FlaskForm):
    login_id = StringField(
        _l("ログインID"),
        validators=[DataRequired(_l("ログインIDを入力してください。")), Length(max=256)],
        render_kw={"autocomplete": "username", "autocapitalize": "off", "spellcheck": "false"},
    )
    password = PasswordField(
        _l("パスワード"),
        validators=[DataRequired(_l("パスワードを入力してください。")), Length(max=4096)],
        render_kw={"autocomplete": "current-password"},
    )


class CodeForm(FlaskForm):
    code = StringField(
        _l("認証コード"),
        validators=[Length(max=64)],
        render_kw=CODE_ATTRS | {"maxlength": 64},
    )


class RecoveryForm(FlaskForm):
    recovery_code = StringField(
        _l("リカバリーコード"),
        validators=[Length(max=64)],
        render_kw={"autocomplete": "off", "autocapitalize": "off", "spellcheck": "false"},
    )


class ActionForm(FlaskForm):
    """A POST with nothing but the CSRF token (resend)."""


class MethodForm(FlaskForm):
    method = StringField(validators=[Length(max=8)])
