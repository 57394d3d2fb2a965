from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField
from wtforms.validators import Length

from ..auth.forms import CODE_ATTRS


class CodeForm(FlaskForm):
    code = StringField(_l("認証コード"), validators=[Length(max=64)], render_kw=CODE_ATTRS)


class ReauthCodeForm(FlaskForm):
    code = StringField(
        _l("認証コードまたはリカバリーコード"),
        validators=[Length(max=64)],
        render_kw={"autocomplete": "one-time-code", "autocapitalize": "off", "spellcheck": "false"},
    )


class ReauthPasswordForm(FlaskForm):
    password = PasswordField(
        _l("パスワード"),
        validators=[Length(max=4096)],
        render_kw={"autocomplete": "current-password"},
    )


class ConfirmForm(FlaskForm):
    confirm = BooleanField(_l("はい、無効化して問題ありません。"))


class ActionForm(FlaskForm):
    """A POST with nothing but the CSRF token."""
