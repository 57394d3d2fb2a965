"""Forms of the admin area."""

from __future__ import annotations

import unicodedata

from flask_babel import lazy_gettext as _l
from wtforms import StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Regexp, ValidationError

from .. import pages
from ..web.forms import PortalForm


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


def _no_control_characters(form: PortalForm, field: StringField) -> None:
    """NUL and other control characters have no place in a title (PostgreSQL refuses NUL)."""
    if any(unicodedata.category(ch) == "Cc" for ch in field.data or ""):
        raise ValidationError(_l("タイトルに使用できない文字が含まれています。"))


class PageForm(PortalForm):
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


class DeletePageForm(PortalForm):
    """The confirmation dialog is the confirmation: the form carries only the CSRF token."""
