from flask_babel import lazy_gettext as _l
from wtforms import HiddenField, PasswordField, SelectField, StringField
from wtforms.validators import Length

from ..web.forms import CODE_ATTRS, NewPasswordForm, PortalForm


class CodeForm(PortalForm):
    code = StringField(_l("認証コード"), validators=[Length(max=64)], render_kw=CODE_ATTRS)


class ProfileForm(PortalForm):
    name = StringField(_l("氏名"), validators=[Length(max=200)], render_kw={"autocomplete": "name"})
    email = StringField(
        _l("メールアドレス"),
        validators=[Length(max=254)],
        render_kw={"autocomplete": "email", "inputmode": "email", "spellcheck": "false"},
    )
    phone = StringField(
        _l("携帯電話番号"),
        validators=[Length(max=40)],
        render_kw={"autocomplete": "tel", "inputmode": "tel"},
    )
    current_password = PasswordField(
        _l("現在のパスワード（メールアドレス・電話番号を変更するとき）"),
        validators=[Length(max=4096)],
        render_kw={"autocomplete": "current-password"},
    )


class LocaleForm(PortalForm):
    """表示言語とタイムゾーン: the choices come from portal.i18n; the view checks them
    again (a select's value is whatever the browser sends)."""

    language = SelectField(_l("表示言語"), validate_choice=False, choices=[])
    timezone = SelectField(_l("タイムゾーン"), validate_choice=False, choices=[])


class ContactConfirmForm(PortalForm):
    kind = HiddenField(validators=[Length(max=8)])
    code = StringField(_l("確認コード"), validators=[Length(max=64)], render_kw=CODE_ATTRS)


class ContactKindForm(PortalForm):
    """再送 / 取り消す on a pending email or phone change."""

    kind = HiddenField(validators=[Length(max=8)])


class PasswordChangeForm(NewPasswordForm):
    current_password = PasswordField(
        _l("現在のパスワード"),
        validators=[Length(max=4096)],
        render_kw={"autocomplete": "current-password"},
    )


class PasswordStrengthForm(PortalForm):
    new_password = PasswordField(validators=[Length(max=4096)])


class PasskeyNameForm(PortalForm):
    name = StringField(
        _l("パスキーの名前"),
        validators=[Length(max=200)],
        render_kw={"autocomplete": "off", "maxlength": 64},
    )


class PasskeyAnswerForm(PortalForm):
    """The browser's answer to the registration prompt (filled by passkeys.js)."""

    credential = StringField(validators=[Length(max=64 * 1024)])
