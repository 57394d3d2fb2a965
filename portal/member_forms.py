"""Member-area forms (申込フォーム, 予約; the guide's FAQ Q4 and issue 15).

A form is one JSON structure, the same for the admin editor, the CLI and the tests::

    {"slug": "apply", "title": "お申し込み", "open": true,
     "require_2fa": "off" | "warn" | "setup", "step_up_minutes": 0,
     "listed": false, "menu_order": 0,
     "pages": {"input": "<p>…</p>", "confirm": "<p>…</p>", "thanks": "<p>…</p>"},
     "fields": [{"name": "course", "label": "コース", "type": "select",
                 "required": true, "max_length": 200, "choices": ["A", "B"], "help": "…"}]}

:func:`parse` checks all of it and says the first problem with its path
(``fields[2].type``), so the CLI prints one line and the editor marks one field. Page
bodies are sanitised with the member pages' allow-list; ``%form:FIELD%`` is kept, like
the member keywords, and filled in (escaped) on the confirm and thank-you pages only.

A member's answers are a draft at the confirm step (a row with no ``submitted_at``) and
are sent by one guarded UPDATE: a second POST of the same confirm page finds the row
sent and stores nothing. No request objects here: the views pass in the member, the
time and how fresh the session's second step is.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup, escape
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from . import pages
from .extensions import db
from .models import FormSubmission, Member, MemberForm, utcnow

TYPES = ("text", "textarea", "email", "tel", "number", "date", "select", "checkbox")
REQUIRE_2FA = ("off", "warn", "setup")
PAGES = ("input", "confirm", "thanks")
FIELD_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
FORM_KEYWORD_RE = re.compile(r"%form:([a-z][a-z0-9_]{0,31})%")
KEYWORDS_RE = re.compile(pages.KEYWORD_RE.pattern + "|" + FORM_KEYWORD_RE.pattern)
MAX_FIELDS = 50
MAX_CHOICES = 100
MAX_CHOICE = 200
MAX_LABEL = 200
MAX_HELP = 500
MAX_STEP_UP = 1440  # a day
# Longest answer each type takes: the default when the form gives none, and the ceiling.
DEFAULT_LENGTH = {"text": 200, "textarea": 2000}
MAX_LENGTH = {"text": 1000, "textarea": 10000, "email": 254, "tel": 30, "number": 30, "date": 10}
MAX_SELECT = 200
DRAFT_HOURS = 24  # a confirm step not sent within this is forgotten
MAX_FILE = 1_000_000  # bytes of a form's JSON (three bodies of at most 100,000 characters)

EMAIL_RE = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s.]+")
TEL_RE = re.compile(r"\+?[0-9][0-9\- ()]{3,28}")
NUMBER_RE = re.compile(r"-?[0-9]+(\.[0-9]+)?")

TYPE_NAMES = {
    "text": _l("1行テキスト"),
    "textarea": _l("複数行テキスト"),
    "email": _l("メールアドレス"),
    "tel": _l("電話番号"),
    "number": _l("数値"),
    "date": _l("日付"),
    "select": _l("選択肢"),
    "checkbox": _l("チェックボックス"),
}
REQUIRE_NAMES = {
    "off": _l("求めない"),
    "warn": _l("未設定の会員にお知らせを表示する"),
    "setup": _l("未設定の会員は設定してから入力する"),
}
CHECKED = "1"


class SpecError(ValueError):
    """The form cannot be saved as given: ``path`` says where (``title``,
    ``fields[2].type``, ``pages.thanks``), the message says what is wrong."""

    def __init__(self, path: str, message: object) -> None:
        super().__init__(f"{path}: {message}" if path else str(message))
        self.path = path
        self.message = str(message)


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    type: str
    required: bool = False
    max_length: int | None = None
    choices: tuple[str, ...] = ()
    help: str = ""

    @property
    def limit(self) -> int:
        """The longest answer taken."""
        if self.type == "select":
            return MAX_SELECT
        if self.type == "checkbox":
            return 1
        return self.max_length or DEFAULT_LENGTH.get(self.type) or MAX_LENGTH[self.type]

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "label": self.label, "type": self.type}
        data["required"] = self.required
        if self.max_length is not None:
            data["max_length"] = self.max_length
        if self.choices:
            data["choices"] = list(self.choices)
        if self.help:
            data["help"] = self.help
        return data


@dataclass(frozen=True)
class Spec:
    slug: str
    title: str
    open: bool = True
    require_2fa: str = "off"
    step_up_minutes: int = 0
    listed: bool = False
    menu_order: int = 0
    pages: dict[str, str] = field(default_factory=lambda: dict.fromkeys(PAGES, ""))
    fields: tuple[Field, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "title": self.title,
            "open": self.open,
            "require_2fa": self.require_2fa,
            "step_up_minutes": self.step_up_minutes,
            "listed": self.listed,
            "menu_order": self.menu_order,
            "pages": {name: self.pages.get(name, "") for name in PAGES},
            "fields": [f.as_json() for f in self.fields],
        }


# --- reading a form's JSON ------------------------------------------------------------


def loads(text: str) -> Spec:
    """A form from JSON text; :class:`SpecError` when it is not JSON or not a form."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(
            "", _("JSONとして読めません（%(line)d行目）：%(why)s", line=exc.lineno, why=exc.msg)
        ) from None
    except RecursionError:
        raise SpecError("", _("JSONとして読めません（入れ子が深すぎます）。")) from None
    except ValueError:  # an integer of more digits than Python converts
        raise SpecError("", _("JSONとして読めません（桁数の多すぎる数値があります）。")) from None
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # \ud800 and the like: valid JSON, but no text to store
        raise SpecError(
            "", _("JSONとして読めません（文字として使えない \\uD800〜\\uDFFF があります）。")
        ) from None
    return parse(data)


def _text(data: Mapping, key: str, path: str, *, limit: int, required: bool) -> str:
    value = data.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise SpecError(path, _("文字列で指定してください。"))
    value = value.strip()
    if required and not value:
        raise SpecError(path, _("入力してください。"))
    if len(value) > limit:
        raise SpecError(path, _("%(max)d文字以内で指定してください。", max=limit))
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise SpecError(path, _("制御文字は使えません。"))
    return value


def _bool(data: Mapping, key: str, path: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise SpecError(path, _("true または false で指定してください。"))
    return value


def _int(data: Mapping, key: str, path: str, *, low: int, high: int, default: int | None) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SpecError(path, _("%(low)d〜%(high)dの整数で指定してください。", low=low, high=high))
    return value


def _one_of(values: tuple[str, ...]) -> str:
    return _("%(values)s のいずれかで指定してください。", values=" / ".join(values))


def _known_keys(data: Mapping, allowed: tuple[str, ...], path: str) -> None:
    for key in data:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            raise SpecError(
                where,
                _("不明な項目です（指定できる項目：%(keys)s）。", keys=", ".join(allowed)),
            )


FORM_KEYS = (
    "slug",
    "title",
    "open",
    "require_2fa",
    "step_up_minutes",
    "listed",
    "menu_order",
    "pages",
    "fields",
)
FIELD_KEYS = ("name", "label", "type", "required", "max_length", "choices", "help")


def parse(data: object) -> Spec:
    """A checked :class:`Spec` from decoded JSON (or the editor's dict); page bodies
    sanitised. Raises :class:`SpecError` at the first problem."""
    if not isinstance(data, dict):
        raise SpecError("", _("フォームはJSONのオブジェクト（{…}）で指定してください。"))
    _known_keys(data, FORM_KEYS, "")
    slug = data.get("slug")
    if not isinstance(slug, str) or not pages.valid_slug(slug):
        raise SpecError("slug", pages.SLUG_INVALID)
    title = _text(data, "title", "title", limit=pages.MAX_TITLE, required=True)
    require = data.get("require_2fa", "off")
    if require not in REQUIRE_2FA:
        raise SpecError("require_2fa", _one_of(REQUIRE_2FA))
    fields = _fields(data.get("fields", []))
    names = {f.name for f in fields}
    bodies = _pages(data.get("pages", {}), names)
    return Spec(
        slug=slug,
        title=title,
        open=_bool(data, "open", "open", True),
        require_2fa=require,
        step_up_minutes=_int(
            data, "step_up_minutes", "step_up_minutes", low=0, high=MAX_STEP_UP, default=0
        ),
        listed=_bool(data, "listed", "listed", False),
        menu_order=_int(
            data, "menu_order", "menu_order", low=0, high=pages.MAX_MENU_ORDER, default=0
        ),
        pages=bodies,
        fields=fields,
    )


def _fields(raw: object) -> tuple[Field, ...]:
    if not isinstance(raw, list):
        raise SpecError("fields", _("項目はリスト（[…]）で指定してください。"))
    if not raw:
        raise SpecError("fields", _("項目を1つ以上追加してください。"))
    if len(raw) > MAX_FIELDS:
        raise SpecError("fields", _("項目は%(max)d個までです。", max=MAX_FIELDS))
    seen: set[str] = set()
    fields = []
    for index, item in enumerate(raw):
        path = f"fields[{index}]"
        if not isinstance(item, dict):
            raise SpecError(path, _("項目はJSONのオブジェクト（{…}）で指定してください。"))
        _known_keys(item, FIELD_KEYS, path)
        name = item.get("name")
        if not isinstance(name, str) or not FIELD_NAME_RE.fullmatch(name):
            raise SpecError(
                f"{path}.name",
                _("項目名は半角英小文字で始まる32文字以内の英小文字・数字・_で指定してください。"),
            )
        if name in seen:
            raise SpecError(f"{path}.name", _("項目名「%(name)s」が重複しています。", name=name))
        seen.add(name)
        label = _text(item, "label", f"{path}.label", limit=MAX_LABEL, required=True)
        kind = item.get("type")
        if kind not in TYPES:
            raise SpecError(f"{path}.type", _one_of(TYPES))
        max_length = None
        if item.get("max_length") is not None:
            if kind not in DEFAULT_LENGTH and kind not in ("tel", "number", "email"):
                raise SpecError(
                    f"{path}.max_length", _("この種類の項目には文字数の上限を指定できません。")
                )
            max_length = _int(
                item, "max_length", f"{path}.max_length", low=1, high=MAX_LENGTH[kind], default=None
            )
        choices = _choices(item.get("choices"), kind, f"{path}.choices")
        fields.append(
            Field(
                name=name,
                label=label,
                type=kind,
                required=_bool(item, "required", f"{path}.required", False),
                max_length=max_length,
                choices=choices,
                help=_text(item, "help", f"{path}.help", limit=MAX_HELP, required=False),
            )
        )
    return tuple(fields)


def _choices(raw: object, kind: str, path: str) -> tuple[str, ...]:
    if kind != "select":
        if raw not in (None, []):
            raise SpecError(path, _("選択肢は種類が select の項目にだけ指定できます。"))
        return ()
    if not isinstance(raw, list) or not raw:
        raise SpecError(path, _("選択肢を1つ以上指定してください。"))
    if len(raw) > MAX_CHOICES:
        raise SpecError(path, _("選択肢は%(max)d個までです。", max=MAX_CHOICES))
    choices: list[str] = []
    for index, choice in enumerate(raw):
        value = _text({"c": choice}, "c", f"{path}[{index}]", limit=MAX_CHOICE, required=True)
        if value in choices:
            raise SpecError(
                f"{path}[{index}]", _("選択肢「%(choice)s」が重複しています。", choice=value)
            )
        choices.append(value)
    return tuple(choices)


def _pages(raw: object, names: set[str]) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise SpecError("pages", _("ページはJSONのオブジェクト（{…}）で指定してください。"))
    _known_keys(raw, PAGES, "pages")
    bodies = {}
    for page in PAGES:
        path = f"pages.{page}"
        body = raw.get(page, "")
        if body is None:
            body = ""
        if not isinstance(body, str):
            raise SpecError(path, _("文字列で指定してください。"))
        if len(body) > pages.MAX_BODY:
            raise SpecError(path, _("%(max)d文字以内で指定してください。", max=pages.MAX_BODY))
        for match in FORM_KEYWORD_RE.finditer(body):
            if page == "input":
                raise SpecError(
                    path,
                    _(
                        "入力ページでは %(keyword)s は使えません"
                        "（確認ページとサンキューページで使えます）。",
                        keyword=match.group(0),
                    ),
                )
            if match.group(1) not in names:
                raise SpecError(path, _("%(keyword)s の項目がありません。", keyword=match.group(0)))
        bodies[page] = pages.sanitise(body, KEYWORDS_RE)
    return bodies


# --- stored forms -----------------------------------------------------------------------


def spec_of(form: MemberForm) -> Spec:
    """The stored form as a :class:`Spec` (rows are only written through :func:`save`)."""
    return Spec(
        slug=form.slug,
        title=form.title,
        open=form.is_open,
        require_2fa=form.require_2fa if form.require_2fa in REQUIRE_2FA else "off",
        step_up_minutes=form.step_up_minutes,
        listed=form.listed,
        menu_order=form.menu_order,
        pages={"input": form.input_body, "confirm": form.confirm_body, "thanks": form.thanks_body},
        fields=fields_of(form),
    )


def fields_of(form: MemberForm) -> tuple[Field, ...]:
    return tuple(
        Field(**{**item, "choices": tuple(item.get("choices", ()))})
        for item in json.loads(form.fields or "[]")
    )


def find(slug: str) -> MemberForm | None:
    if not pages.valid_slug(slug):
        return None
    return db.session.scalar(db.select(MemberForm).where(MemberForm.slug == slug))


def get(form_id: int) -> MemberForm | None:
    return db.session.get(MemberForm, form_id)


def all_forms() -> list[MemberForm]:
    return list(
        db.session.scalars(
            db.select(MemberForm).order_by(MemberForm.updated_at.desc(), MemberForm.id.desc())
        )
    )


def listed_forms() -> list[MemberForm]:
    """Open forms listed on マイページ and in the menu, in their order."""
    return list(
        db.session.scalars(
            db.select(MemberForm)
            .where(MemberForm.listed.is_(True), MemberForm.is_open.is_(True))
            .order_by(MemberForm.menu_order, MemberForm.title, MemberForm.id)
        )
    )


def sent_count(form: MemberForm) -> int:
    """How many submissions this form has (sent ones, not drafts)."""
    return db.session.scalar(
        db.select(db.func.count())
        .select_from(FormSubmission)
        .where(FormSubmission.form_id == form.id, FormSubmission.submitted_at.is_not(None))
    )


def sent_counts() -> dict[int, int]:
    """How many submissions each form has (sent ones, not drafts)."""
    rows = db.session.execute(
        db.select(FormSubmission.form_id, db.func.count())
        .where(FormSubmission.submitted_at.is_not(None))
        .group_by(FormSubmission.form_id)
    )
    return {form_id: count for form_id, count in rows}


def save(form: MemberForm | None, spec: Spec, *, by: str) -> MemberForm:
    """Create (``form`` None) or replace a form; its submissions stay. The slug must be
    free (:class:`SpecError` at ``slug`` otherwise, also when another save won the race)."""
    query = db.select(MemberForm.id).where(MemberForm.slug == spec.slug)
    if form is not None:
        query = query.where(MemberForm.id != form.id)
    if db.session.scalar(query) is not None:
        raise SpecError("slug", pages.SLUG_TAKEN)
    now = utcnow()
    if form is None:
        form = MemberForm(created_at=now, version=0)
        db.session.add(form)
    form.slug = spec.slug
    form.title = spec.title
    form.is_open = spec.open
    form.require_2fa = spec.require_2fa
    form.step_up_minutes = spec.step_up_minutes
    form.listed = spec.listed
    form.menu_order = spec.menu_order
    form.input_body = spec.pages.get("input", "")
    form.confirm_body = spec.pages.get("confirm", "")
    form.thanks_body = spec.pages.get("thanks", "")
    form.fields = json.dumps([f.as_json() for f in spec.fields], ensure_ascii=False)
    form.version = (form.version or 0) + 1
    form.updated_at = now
    form.updated_by = by[:64]
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise SpecError("slug", pages.SLUG_TAKEN) from None
    return form


def import_spec(spec: Spec, *, by: str) -> tuple[MemberForm, bool]:
    """Create the form, or replace the one with the same slug. Returns it and whether
    it was new."""
    existing = find(spec.slug)
    return save(existing, spec, by=by), existing is None


def set_open(form: MemberForm, is_open: bool, *, by: str) -> None:
    form.is_open = is_open
    form.updated_at = utcnow()
    form.updated_by = by[:64]
    db.session.commit()


def delete(form: MemberForm) -> int:
    """Delete the form and its submissions; returns how many were sent."""
    count = sent_count(form)
    db.session.delete(form)
    db.session.commit()
    return count


def dumps(form: MemberForm) -> str:
    return json.dumps(spec_of(form).as_json(), ensure_ascii=False, indent=2) + "\n"


# --- answers --------------------------------------------------------------------------


def input_name(f: Field) -> str:
    """The HTML input's name (prefixed, so no field can be called csrf_token)."""
    return f"f_{f.name}"


def _single_line(value: str) -> str:
    return " ".join(value.split())


def clean_answers(
    fields: tuple[Field, ...], raw: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """The answers as they will be stored, and an error message per field name.
    ``raw`` maps :func:`input_name` to what the browser sent."""
    answers: dict[str, str] = {}
    errors: dict[str, str] = {}
    for f in fields:
        value = raw.get(input_name(f)) or ""
        value = "".join(c for c in value if c in "\n\t" or unicodedata.category(c) != "Cc")
        if f.type == "textarea":
            value = value.replace("\r\n", "\n").strip()
        elif f.type == "checkbox":
            value = CHECKED if value else ""
        elif f.type == "select":
            value = value.strip()
        else:
            value = _single_line(value)
            if f.type in ("email", "tel", "number", "date"):
                value = unicodedata.normalize("NFKC", value).replace("ー", "-")
        answers[f.name] = value
        if error := _answer_error(f, value):
            errors[f.name] = error
    return answers, errors


def _answer_error(f: Field, value: str) -> str | None:
    label = f.label
    if not value:
        if not f.required:
            return None
        if f.type == "select":
            return _("「%(label)s」を選択してください。", label=label)
        if f.type == "checkbox":
            return _("「%(label)s」にチェックを入れてください。", label=label)
        return _("「%(label)s」を入力してください。", label=label)
    if f.type == "select":
        if value not in f.choices:
            return _("「%(label)s」は選択肢から選んでください。", label=label)
        return None
    if len(value) > f.limit:
        return _("「%(label)s」は%(max)d文字以内で入力してください。", label=label, max=f.limit)
    if f.type == "email" and not EMAIL_RE.fullmatch(value):
        return _("「%(label)s」はメールアドレスの形式で入力してください。", label=label)
    if f.type == "tel" and not TEL_RE.fullmatch(value):
        return _("「%(label)s」は半角数字とハイフンで入力してください。", label=label)
    if f.type == "number" and not NUMBER_RE.fullmatch(value):
        return _("「%(label)s」は半角数字で入力してください。", label=label)
    if f.type == "date":
        try:
            date.fromisoformat(value)
        except ValueError:
            return _("「%(label)s」は日付（例：2026-12-01）で入力してください。", label=label)
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return _("「%(label)s」は日付（例：2026-12-01）で入力してください。", label=label)
    return None


def shown(f: Field, value: str) -> str:
    """An answer as the member and the operator read it."""
    if f.type == "checkbox":
        return _("はい") if value == CHECKED else _("いいえ")
    return value


def answers_of(submission: FormSubmission) -> dict[str, str]:
    try:
        data = json.loads(submission.answers or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def shown_answers(
    form: MemberForm, answers: Mapping[str, str], fields: Sequence[Field] | None = None
) -> list[tuple[Field, str]]:
    """Each field of the form with its answer as people read it (:func:`shown`): the
    confirm page's list, its ``%form:…%`` keywords, the receipt mail and the operator's
    list (which reads ``fields`` once for a page of rows)."""
    fields = fields_of(form) if fields is None else fields
    return [(f, shown(f, answers.get(f.name, ""))) for f in fields]


def render_page(
    form: MemberForm,
    page: str,
    member: Member,
    settings_url: str,
    rows: list[tuple[Field, str]] | None = None,
) -> Markup:
    """One of the form's three bodies for ``member``: the member keywords always, the
    answers (``rows`` from :func:`shown_answers`; escaped, multi-line ones with their
    line breaks) on confirm and thanks."""
    body = {"input": form.input_body, "confirm": form.confirm_body, "thanks": form.thanks_body}[
        page
    ]
    values = pages.member_values(member, settings_url)
    if page != "input" and rows is not None:
        for f, text in rows:
            values[f"%form:{f.name}%"] = str(escape(text)).replace("\n", "<br>")
    return pages.fill(body, values)


# --- drafts and submissions ---------------------------------------------------------


def start_draft(
    form: MemberForm, member: Member, answers: dict[str, str], now: datetime
) -> FormSubmission:
    """The confirm step: the answers kept as a draft of this member's. The form's drafts
    older than :data:`DRAFT_HOURS` (anyone's, never sent) go at the same time: found
    through the (form, sent) index, so abandoned drafts do not pile up."""
    db.session.execute(
        db.delete(FormSubmission).where(
            FormSubmission.form_id == form.id,
            FormSubmission.submitted_at.is_(None),
            FormSubmission.created_at < now - timedelta(hours=DRAFT_HOURS),
        )
    )
    draft = FormSubmission(
        form_id=form.id,
        member_id=member.id,
        login_id=member.login_id,
        member_name=(member.name or "")[:200],
        answers=json.dumps(answers, ensure_ascii=False),
        form_version=form.version,
        created_at=now,
    )
    db.session.add(draft)
    db.session.commit()
    return draft


def update_draft(draft: FormSubmission, answers: dict[str, str]) -> bool:
    """戻る, changed, 確認する again: the same draft with the new answers. False when
    it was sent meanwhile (another tab): a sent submission never changes."""
    result = db.session.execute(
        update(FormSubmission)
        .where(FormSubmission.id == draft.id, FormSubmission.submitted_at.is_(None))
        .values(answers=json.dumps(answers, ensure_ascii=False))
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    db.session.expire(draft)
    return result.rowcount == 1


def own_submission(form: MemberForm, member: Member, submission_id: int) -> FormSubmission | None:
    """The member's own draft or submission of this form (another member's is None)."""
    if submission_id > 2**63 - 1:
        return None
    row = db.session.get(FormSubmission, submission_id)
    if row is None or row.form_id != form.id or row.member_id != member.id:
        return None
    return row


def draft_usable(form: MemberForm, draft: FormSubmission, now: datetime) -> bool:
    """Still a draft of the form as it is now, and young enough."""
    return (
        draft.submitted_at is None
        and draft.form_version == form.version
        and draft.created_at > now - timedelta(hours=DRAFT_HOURS)
    )


def needs_step_up(form: MemberForm, proof_at: datetime | None, now: datetime) -> bool:
    """Whether sending needs a fresh proof first: the form asks for one within
    ``step_up_minutes`` and the session's last one (``proof_at``) is older."""
    if form.step_up_minutes <= 0:
        return False
    return proof_at is None or now - proof_at > timedelta(minutes=form.step_up_minutes)


def submit(
    draft: FormSubmission,
    now: datetime,
    *,
    second_step_at: datetime | None,
    stepped_up: bool,
) -> bool:
    """Send the draft, once: False when it was already sent (a double POST, another
    tab), and then nothing is written."""
    result = db.session.execute(
        update(FormSubmission)
        .where(FormSubmission.id == draft.id, FormSubmission.submitted_at.is_(None))
        .values(submitted_at=now, second_step_at=second_step_at, stepped_up=stepped_up)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    db.session.expire(draft)
    return result.rowcount == 1
