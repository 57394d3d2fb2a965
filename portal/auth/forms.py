"""Forms check shape only; the domain checks truth and counts tries."""

from flask_babel import lazy_gettext as _l
from flask_babel import lazy_pgettext
from wtforms import BooleanField, PasswordField, StringField
from wtforms.validators import DataRequired, Length

from ..web.forms import CODE_ATTRS, PortalForm


class LoginForm(PortalForm):
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


REMEMBER_LABEL = _l("この端末では次回からコード入力をスキップする")


class CodeForm(PortalForm):
    code = StringField(
        _l("認証コード"),
        validators=[Length(max=64)],
        render_kw=CODE_ATTRS | {"maxlength": 64},
    )
    remember_device = BooleanField(REMEMBER_LABEL)


class RecoveryForm(PortalForm):
    recovery_code = StringField(
        lazy_pgettext("field", "リカバリーコード"),
        validators=[Length(max=64)],
        render_kw={"autocomplete": "off", "autocapitalize": "off", "spellcheck": "false"},
    )
    remember_device = BooleanField(REMEMBER_LABEL)


class ForgotForm(PortalForm):
    """パスワードをお忘れの方: one box for the login ID or the email address."""

    login_id = StringField(
        _l("ログインIDまたはメールアドレス"),
        validators=[
            DataRequired(_l("ログインIDまたはメールアドレスを入力してください。")),
            Length(max=254, message=_l("254文字以内で入力してください。")),
        ],
        render_kw={"autocomplete": "username", "autocapitalize": "off", "spellcheck": "false"},
    )


class PasskeyForm(PortalForm):
    """The browser's answer to the code page's passkey prompt (filled by passkeys.js)."""

    credential = StringField(validators=[DataRequired(), Length(max=64 * 1024)])
    remember_device = BooleanField(REMEMBER_LABEL)


class PasskeyLoginForm(PortalForm):
    """パスキーでログイン: the answer to a passwordless prompt."""

    credential = StringField(validators=[DataRequired(), Length(max=64 * 1024)])
