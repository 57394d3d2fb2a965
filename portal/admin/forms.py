"""Forms of the admin area."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import TYPE_CHECKING

from flask_babel import lazy_gettext as _l
from flask_babel import lazy_pgettext
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    HiddenField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Regexp, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from .. import member_forms, pages
from ..web.forms import PortalForm

if TYPE_CHECKING:
    from flask_babel.speaklater import LazyString


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


def _plain_text(message):
    """NUL and other control characters have no place in a one-line name (PostgreSQL
    refuses NUL)."""

    def check(form: PortalForm, field: StringField) -> None:
        if any(unicodedata.category(ch) == "Cc" for ch in field.data or ""):
            raise ValidationError(message)

    return check


_no_control_characters = _plain_text(_l("タイトルに使用できない文字が含まれています。"))


def _order_text(value: str | None) -> str | None:
    """Full-width digits typed with a Japanese IME count as digits."""
    return unicodedata.normalize("NFKC", value).strip() if isinstance(value, str) else value


def _whole_number(most: int, message: LazyString) -> Callable[[PortalForm, StringField], None]:
    """A validator: blank means 0; otherwise a whole number from 0 to ``most``."""

    def check(form: PortalForm, field: StringField) -> None:
        text = field.data if isinstance(field.data, str) else str(field.data or "")
        # The length first: int() of thousands of digits raises (Python's digit limit).
        fits = len(text) <= len(str(most))
        if text and not (fits and text.isascii() and text.isdigit() and int(text) <= most):
            raise ValidationError(message)

    return check


_menu_order = _whole_number(pages.MAX_MENU_ORDER, _l("表示順は0〜999の数字で入力してください。"))


def _menu_order_field() -> StringField:
    """表示順, the same on a member page and a form (they share the menu)."""
    return StringField(
        _l("表示順（0〜999、小さい順に表示）"),
        default="0",
        filters=[_order_text],
        validators=[_menu_order],
        render_kw={"inputmode": "numeric", "maxlength": 3, "autocomplete": "off"},
    )


class _InMenu:
    """The menu position of a page or a form posted with :func:`_menu_order_field`."""

    menu_order: StringField

    def order(self) -> int:
        """The validated order as a number (blank: 0)."""
        return int(self.menu_order.data or 0)


class PageForm(_InMenu, PortalForm):
    title = StringField(
        _l("タイトル"),
        filters=[_strip],
        validators=[
            DataRequired(message=_l("タイトルを入力してください。")),
            Length(
                max=pages.MAX_TITLE,
                message=_l("タイトルは%(n)d文字以内で入力してください。", n=pages.MAX_TITLE),
            ),
            _no_control_characters,
        ],
        render_kw={"maxlength": pages.MAX_TITLE, "autocomplete": "off"},
    )
    slug = StringField(
        _l("スラッグ（URLの末尾: /pages/スラッグ）"),
        filters=[_strip],
        validators=[
            DataRequired(message=_l("スラッグを入力してください。")),
            Regexp(
                pages.SLUG_RE.pattern + r"\Z",
                message=_l(
                    "スラッグは1〜64文字の半角英小文字・数字・ハイフン（-）で入力してください。"
                ),
            ),
        ],
        render_kw={
            "maxlength": 64,
            "autocomplete": "off",
            "autocapitalize": "off",
            "spellcheck": "false",
        },
    )
    body = TextAreaField(
        _l("本文（HTML）"),
        validators=[
            Length(
                max=pages.MAX_BODY,
                message=_l("本文は%(n)s文字以内で入力してください。", n="100,000"),
            )
        ],
        # No maxlength: a browser would cut a pasted body short without a word.
        render_kw={"rows": 20, "spellcheck": "false", "maxlength": False},
    )
    listed = BooleanField(_l("マイページとメニューに表示する"))
    menu_order = _menu_order_field()


class DeletePageForm(PortalForm):
    """The confirmation dialog is the confirmation: the form carries only the CSRF token."""


class ApiTokenForm(PortalForm):
    """A new admin-API token: a name to tell it apart, its scope and how long it works."""

    name = StringField(
        _l("名前（使うシステムや担当者。例: 人事システム）"),
        filters=[_strip],
        validators=[
            DataRequired(message=_l("トークンの名前を入力してください。")),
            Length(max=60, message=_l("トークンの名前は60文字以内で入力してください。")),
            _plain_text(_l("トークンの名前に使用できない文字が含まれています。")),
        ],
        render_kw={"maxlength": 60, "autocomplete": "off"},
    )
    scope = SelectField(
        _l("権限"),
        choices=[
            SelectChoice("read", _l("read：読み取りのみ（メンバーの二段階認証の状態、監査ログ）")),
            SelectChoice(
                "write",
                _l("write：読み取りと操作（二段階認証の無効化、パスワード設定のリンクの送信）"),
            ),
        ],
    )
    expires = SelectField(
        _l("有効期限"),
        choices=[
            SelectChoice("30", _l("30日")),
            SelectChoice("90", _l("90日")),
            SelectChoice("365", _l("1年")),
            SelectChoice("", _l("無期限")),
        ],
        default="90",
    )


LEVEL_CHOICES = [
    SelectChoice("off", _l("off：求めない")),
    SelectChoice("recommend", _l("recommend：未設定のメンバーに設定をすすめる（警告を表示）")),
    SelectChoice("required", _l("required：設定を必須にする")),
]


class PolicyForm(PortalForm):
    """二段階認証方式の設定. Shape only: the policy module validates every value."""

    enforcement = SelectField(_l("メンバー"), choices=LEVEL_CHOICES, validate_choice=False)
    operator_enforcement = SelectField(
        lazy_pgettext("policy", "管理者"), choices=LEVEL_CHOICES, validate_choice=False
    )
    grace_days = StringField(
        _l("必須にするまでの猶予期間（日数、0〜365）"),
        render_kw={"inputmode": "numeric", "maxlength": 3, "autocomplete": "off"},
    )
    allow_remember_device = BooleanField(
        _l("「この端末では次回からコード入力をスキップする」を表示する")
    )
    remember_days = StringField(
        _l("スキップを続ける日数（1〜365）"),
        render_kw={"inputmode": "numeric", "maxlength": 3, "autocomplete": "off"},
    )
    trusted_networks = TextAreaField(
        _l("信頼済みネットワーク（1行に「アドレス範囲 skip」または「アドレス範囲 always」）"),
        validators=[Length(max=20_000)],
        render_kw={"rows": 5, "spellcheck": "false", "autocapitalize": "off"},
    )
    shared_terminal_skip = BooleanField(
        _l("共用端末として登録した端末ではコード入力をスキップする")
    )
    methods = SelectMultipleField(
        _l("メンバーが使える方法"),
        choices=[
            SelectChoice("app", _l("認証アプリ")),
            SelectChoice("email", _l("メール")),
            SelectChoice("sms", _l("SMS")),
            SelectChoice("passkey", _l("パスキー・セキュリティキー")),
        ],
        validate_choice=False,
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
    )
    passwordless = BooleanField(_l("パスキーだけでのログインを許可する"))
    issuer = StringField(
        _l("サービス名（認証アプリやページのタイトルに表示。空欄なら既定の名前）"),
        validators=[Length(max=200)],
        render_kw={"maxlength": 100},
    )
    landing_path = StringField(
        _l("ログイン後に表示するページ（例: / や /pages/welcome）"),
        validators=[Length(max=400)],
        render_kw={"maxlength": 200, "spellcheck": "false", "autocapitalize": "off"},
    )


class TerminalForm(PortalForm):
    label = StringField(
        _l("この端末の名前（例: 本社1階 受付PC）"),
        filters=[_strip],
        validators=[
            DataRequired(message=_l("端末の名前を入力してください。")),
            Length(max=80, message=_l("端末の名前は80文字以内で入力してください。")),
            _plain_text(_l("端末の名前に使用できない文字が含まれています。")),
        ],
        render_kw={"maxlength": 80, "autocomplete": "off"},
    )


class ImportForm(PortalForm):
    """A member import: the options, and which button was pressed ("check" or
    "import"). The file is read by the view from request.files."""

    FILE_FIELDS = ("file",)

    file = FileField(_l("CSVファイル"))
    action = HiddenField(validators=[Length(max=8)])
    update = BooleanField(_l("既存のメンバーの氏名・メールアドレス・電話番号を更新する"))
    invite = BooleanField(_l("新しいメンバーに招待メール（パスワード設定のリンク）を送る"))


# --- member-area forms (issue 15) ------------------------------------------------------


# Blank means 0: no fresh second step asked for.
_minutes = _whole_number(1440, _l("分数は0〜1440の数字で入力してください（0は求めない）。"))


def _body(label):
    return TextAreaField(
        label,
        validators=[
            Length(
                max=pages.MAX_BODY,
                message=_l("本文は%(n)s文字以内で入力してください。", n="100,000"),
            )
        ],
        render_kw={"rows": 6, "spellcheck": "false", "maxlength": False},
    )


class FormEditorForm(_InMenu, PortalForm):
    """The form editor's fixed part. Its field rows have numbered names
    (``field-3-label``) and are read by the view; ``op`` is the button pressed: ``save``
    (also when missing), ``add``, ``up-N``, ``down-N`` or ``remove-N``."""

    title = StringField(
        _l("タイトル"),
        filters=[_strip],
        render_kw={"maxlength": pages.MAX_TITLE, "autocomplete": "off"},
    )
    slug = StringField(
        _l("スラッグ（URLの末尾: /forms/スラッグ）"),
        filters=[_strip],
        render_kw={
            "maxlength": 64,
            "autocomplete": "off",
            "autocapitalize": "off",
            "spellcheck": "false",
        },
    )
    open = BooleanField(_l("受付中（メンバーが入力・送信できる）"))
    require_2fa = SelectField(_l("二段階認証"), choices=[], validate_choice=False)
    step_up_minutes = StringField(
        _l("送信前の本人確認（直近の二段階認証から何分以内か。0〜1440、0は求めない）"),
        default="0",
        filters=[_order_text],
        validators=[_minutes],
        render_kw={"inputmode": "numeric", "maxlength": 4, "autocomplete": "off"},
    )
    listed = BooleanField(_l("マイページとメニューに表示する（受付中のときだけ）"))
    menu_order = _menu_order_field()
    input_body = _body(_l("入力ページの本文（HTML）"))
    confirm_body = _body(_l("確認ページの本文（HTML）"))
    thanks_body = _body(_l("サンキューページの本文（HTML）"))
    op = StringField(validators=[Length(max=16)])

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.require_2fa.choices = [
            SelectChoice(key, name) for key, name in member_forms.REQUIRE_NAMES.items()
        ]

    def minutes(self) -> int:
        return int(self.step_up_minutes.data or 0)


class FormOpenForm(PortalForm):
    """受付を停止 / 再開: the state wanted ("1" open, "0" closed), so a second click of a
    stale page changes nothing."""

    open = HiddenField(validators=[Length(max=1)])


class DeleteFormForm(PortalForm):
    """The confirmation dialog is the confirmation: the form carries only the CSRF token."""
