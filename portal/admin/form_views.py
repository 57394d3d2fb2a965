"""Member-area forms, the operator's side (issue 15): the list, one editor for a new
and an existing form, 受付の停止・再開, deletion, the JSON export, and each form's
submissions with filters and a CSV export.

The editor works without JavaScript: its field rows are plain inputs with numbered
names (``field-3-label``) and every button (項目を追加, 上へ, 下へ, 削除, 保存する) submits
the same form with its ``op``. The server rebuilds the rows from what was posted,
applies the op and shows the editor again; nothing is stored before 保存する, which
goes through the same :func:`member_forms.parse` as the CLI. With htmx only the
editor is swapped. Every change needs a recent second step, like every admin change.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Response, abort, flash, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import format_datetime, get_timezone
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import and_, func, or_

from .. import audit, member_forms
from ..extensions import db
from ..member_forms import Field, SpecError
from ..models import FormSubmission, Member, MemberForm
from ..queries import BAD_DATE, DATES_REVERSED, audit_filter_from, like_pattern
from ..web.dialogs import dialog
from ..web.htmx import is_htmx, redirect_to, render
from . import bp
from .common import PAGE_SIZE, ask_for_second_step, csv_response, id_arg, stale_operator
from .forms import DeleteFormForm, FormEditorForm, FormOpenForm

# Types whose answers have a length limit the operator may set.
LENGTH_TYPES = ("text", "textarea", "email", "tel", "number")
OP_RE = re.compile(r"(up|down|remove)-(\d{1,2})")
ROW_KEYS = ("name", "label", "type", "max_length", "choices", "help")
# How much of an answer the submissions list shows: a page of 50 rows stays small
# whatever the members typed (the detail page and the CSV have every answer whole).
ANSWER_CHARS = 80


def _form_or_404(form_id: int) -> MemberForm:
    if form_id > 2**63 - 1:
        abort(404)  # larger than any database integer
    form = member_forms.get(form_id)
    if form is None:
        abort(404)
    return form


def _slug_or_404(slug: str) -> MemberForm:
    form = member_forms.find(slug)
    if form is None:
        abort(404)
    return form


def _ask_again(next_url: str) -> Response:
    """The 本人確認 dialog; from the htmx editor it goes into the page's dialog, not in
    place of the editor."""
    response = ask_for_second_step(next_url)
    if is_htmx():
        response.headers["HX-Retarget"] = "#dialog-content"
        response.headers["HX-Reswap"] = "innerHTML"
    return response


# --- the list -------------------------------------------------------------------------


@bp.route("/forms")
def forms_list() -> ResponseReturnValue:
    return render_template(
        "admin/forms.html",
        forms=member_forms.all_forms(),
        counts=member_forms.sent_counts(),
        open_form=FormOpenForm(),
    )


@bp.route("/forms/<int:form_id>/open", methods=["POST"])
def form_open(form_id: int) -> ResponseReturnValue:
    """受付を停止 / 受付を再開. The wanted state is posted, so pressing the button of a
    page that is no longer current changes nothing."""
    form = _form_or_404(form_id)
    back = url_for("admin.forms_list")
    if stale_operator():
        return ask_for_second_step(back)
    posted = FormOpenForm()
    if posted.validate_on_submit() and posted.open.data in ("0", "1"):
        wanted = posted.open.data == "1"
        if form.is_open != wanted:
            member_forms.set_open(form, wanted, by=current_user.login_id)
            audit.record_request(
                "admin.form_saved", slug=form.slug, form_id=form.id, created=False, open=wanted
            )
        if wanted:
            flash(_("フォーム「%(title)s」の受付を再開しました。", title=form.title))
        else:
            flash(_("フォーム「%(title)s」の受付を停止しました。", title=form.title))
    return redirect_to(back)


@bp.route("/forms/<int:form_id>/delete", methods=["GET", "POST"])
def form_delete(form_id: int) -> ResponseReturnValue:
    """A confirmation dialog (htmx swaps it into the page's <dialog>; without JavaScript
    it is a page of its own) saying how many submissions go too, then the deletion."""
    form = _form_or_404(form_id)
    here = url_for("admin.form_delete", form_id=form.id)
    if stale_operator():
        return ask_for_second_step(here)
    posted = DeleteFormForm()
    if posted.validate_on_submit():
        slug, title = form.slug, form.title
        count = member_forms.delete(form)
        audit.record_request("admin.form_deleted", slug=slug, form_id=form_id, submissions=count)
        flash(_("フォーム「%(title)s」を削除しました。", title=title))
        return redirect_to(url_for("admin.forms_list"))
    return dialog(
        "admin/_form_delete.html",
        form=posted,
        action=here,
        member_form=form,
        count=member_forms.sent_count(form),
    )


@bp.route("/forms/<int:form_id>/export.json")
def form_export(form_id: int) -> ResponseReturnValue:
    """The form as ``flask forms export`` prints it (``forms import`` reads it back)."""
    form = _form_or_404(form_id)
    response = Response(member_forms.dumps(form), mimetype="application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="form-{form.slug}.json"'
    response.headers["Cache-Control"] = "no-store"
    return response


# --- the editor -----------------------------------------------------------------------


@dataclass
class Row:
    """One field row of the editor, as typed (strings, so nothing typed is lost)."""

    name: str = ""
    label: str = ""
    type: str = "text"
    required: bool = False
    max_length: str = ""
    choices: str = ""
    help: str = ""

    @classmethod
    def of(cls, f: Field) -> Row:
        return cls(
            name=f.name,
            label=f.label,
            type=f.type,
            required=f.required,
            max_length="" if f.max_length is None else str(f.max_length),
            choices="\n".join(f.choices),
            help=f.help,
        )

    def as_json(self, index: int) -> dict[str, Any]:
        """The field for :func:`member_forms.parse`: a length only for the types that
        take one, choices only for a select (the editor shows both inputs on every
        row, so a changed type never trips over a leftover)."""
        data: dict[str, Any] = {
            "name": self.name.strip(),
            "label": self.label,
            "type": self.type,
            "required": self.required,
            "help": self.help,
        }
        if self.type in LENGTH_TYPES and self.max_length.strip():
            text = unicodedata.normalize("NFKC", self.max_length).strip()
            if not (text.isascii() and text.isdigit() and len(text) <= 6):
                raise SpecError(
                    f"fields[{index}].max_length", _("文字数の上限は数字で入力してください。")
                )
            data["max_length"] = int(text)
        if self.type == "select":
            data["choices"] = [c.strip() for c in self.choices.splitlines() if c.strip()]
        return data


def _posted_rows(values: Mapping[str, str]) -> list[Row]:
    rows = []
    for i in range(member_forms.MAX_FIELDS):
        prefix = f"field-{i}-"
        if prefix + "name" not in values:
            break
        text = {key: (values.get(prefix + key) or "")[:20_000] for key in ROW_KEYS}
        rows.append(Row(**text, required=bool(values.get(prefix + "required"))))
    return rows


def _apply(op: str, rows: list[Row]) -> bool:
    """Apply an editing op to the rows; False when ``op`` means 保存する."""
    if op == "add":
        if len(rows) < member_forms.MAX_FIELDS:
            rows.append(Row())
        return True
    match = OP_RE.fullmatch(op)
    if match is None:
        return False
    kind, index = match.group(1), int(match.group(2))
    if index >= len(rows):
        return True  # a stale page's button: nothing to do
    if kind == "remove":
        rows.pop(index)
    elif kind == "up" and index > 0:
        rows[index - 1], rows[index] = rows[index], rows[index - 1]
    elif kind == "down" and index + 1 < len(rows):
        rows[index + 1], rows[index] = rows[index], rows[index + 1]
    return True


def _spec_data(form: FormEditorForm, rows: list[Row]) -> dict[str, Any]:
    return {
        "slug": form.slug.data or "",
        "title": form.title.data or "",
        "open": bool(form.open.data),
        "require_2fa": form.require_2fa.data or "off",
        "step_up_minutes": form.minutes(),
        "listed": bool(form.listed.data),
        "menu_order": form.order(),
        "pages": {
            "input": form.input_body.data or "",
            "confirm": form.confirm_body.data or "",
            "thanks": form.thanks_body.data or "",
        },
        "fields": [row.as_json(i) for i, row in enumerate(rows)],
    }


PATH_RE = re.compile(r"fields\[(\d+)\](?:\.(\w+))?")
TOP_FIELDS = ("title", "slug", "open", "require_2fa", "step_up_minutes", "listed", "menu_order")


@dataclass
class Problems:
    """Where the editor shows each message: a fixed field, a row's input, the rows as a
    whole, or the top of the form."""

    fields: dict[str, str]
    rows: dict[int, dict[str, str]]
    all_rows: str = ""
    top: str = ""

    def add(self, refused: SpecError) -> None:
        path = refused.path
        if path in TOP_FIELDS:
            self.fields[path] = refused.message
        elif path.startswith("pages."):
            name = path.removeprefix("pages.") + "_body"
            if name in ("input_body", "confirm_body", "thanks_body"):
                self.fields[name] = refused.message
            else:
                self.top = refused.message
        elif match := PATH_RE.match(path):
            key = match.group(2) or ""
            self.rows.setdefault(int(match.group(1)), {})[
                key if key in (*ROW_KEYS, "required") else ""
            ] = refused.message
        elif path == "fields":
            self.all_rows = refused.message
        else:
            self.top = refused.message


def _initial(form: MemberForm | None) -> tuple[FormEditorForm, list[Row]]:
    if form is None:
        spec = None
        data: dict[str, Any] = {"open": True, "require_2fa": "off"}
        rows = [Row()]
    else:
        spec = member_forms.spec_of(form)
        data = {
            "title": spec.title,
            "slug": spec.slug,
            "open": spec.open,
            "require_2fa": spec.require_2fa,
            "step_up_minutes": str(spec.step_up_minutes),
            "listed": spec.listed,
            "menu_order": str(spec.menu_order),
            "input_body": spec.pages.get("input", ""),
            "confirm_body": spec.pages.get("confirm", ""),
            "thanks_body": spec.pages.get("thanks", ""),
        }
        rows = [Row.of(f) for f in spec.fields]
    return FormEditorForm(data=data), rows


def _editor(form: MemberForm | None, here: str) -> ResponseReturnValue:
    if stale_operator():
        return _ask_again(here)
    problems = Problems(fields={}, rows={})
    focus = ""
    if request.method == "GET":
        editor, rows = _initial(form)
    else:
        editor = FormEditorForm()
        rows = _posted_rows(request.form)
        op = (editor.op.data or "").strip()
        if _apply(op, rows):
            focus = _focus_after(op, rows)
        elif editor.validate_on_submit():
            try:
                spec = member_forms.parse(_spec_data(editor, rows))
                saved = member_forms.save(form, spec, by=current_user.login_id)
            except SpecError as refused:
                problems.add(refused)
            else:
                audit.record_request(
                    "admin.form_saved",
                    slug=saved.slug,
                    form_id=saved.id,
                    created=form is None,
                    open=saved.is_open,
                    step_up_minutes=saved.step_up_minutes,
                )
                flash(_("フォーム「%(title)s」を保存しました。", title=saved.title))
                return redirect_to(url_for("admin.forms_list"))
        for name, message in editor.first_errors().items():
            problems.fields.setdefault(name, message)
    context = {
        "form": editor,
        "member_form": form,
        "rows": rows,
        "action": here,
        "problems": problems,
        "errors": problems.fields,
        "focus": focus,
        "types": member_forms.TYPE_NAMES,
        "length_types": LENGTH_TYPES,
        "max_fields": member_forms.MAX_FIELDS,
    }
    status = 400 if problems.fields or problems.rows or problems.all_rows or problems.top else 200
    return render("admin/form_form.html", "admin/_form_editor.html", status, **context)


def _focus_after(op: str, rows: list[Row]) -> str:
    """The id of the control to focus after an op (the moved row's same button, the new
    row's name), so a keyboard user stays where they were."""
    if op == "add":
        return f"field-{len(rows) - 1}-name" if rows else ""
    match = OP_RE.fullmatch(op)
    if match is None:
        return ""
    kind, index = match.group(1), int(match.group(2))
    if kind == "up":
        return f"field-{max(index - 1, 0)}-name"
    if kind == "down":
        return f"field-{min(index + 1, len(rows) - 1)}-name"
    return "add-field"


@bp.route("/forms/new", methods=["GET", "POST"])
def form_new() -> ResponseReturnValue:
    return _editor(None, url_for("admin.form_new"))


@bp.route("/forms/<int:form_id>/edit", methods=["GET", "POST"])
def form_edit(form_id: int) -> ResponseReturnValue:
    form = _form_or_404(form_id)
    return _editor(form, url_for("admin.form_edit", form_id=form.id))


# --- submissions ----------------------------------------------------------------------


@dataclass
class SubmissionFilter:
    q: str = ""
    start: datetime | None = None
    end: datetime | None = None
    stepped_up: str = ""  # "yes" | "no" | ""


def _parse_filter() -> tuple[SubmissionFilter, dict[str, str]]:
    """The filter, and a message per field typed wrongly (dates as the audit log's: days
    in the site's zone, ``to`` included)."""
    dates = {k: request.args.get(k, "") for k in ("from", "to")}
    found, problems = audit_filter_from(dates, ZoneInfo(str(get_timezone())))
    words = {
        BAD_DATE: _("日付は 2026-11-25 の形式で入力してください。"),
        DATES_REVERSED: _("開始日は終了日以前の日付を指定してください。"),
    }
    raw_q = "".join(ch for ch in (request.args.get("q") or "") if ch.isprintable())
    stepped = request.args.get("stepped_up", "")
    flt = SubmissionFilter(
        q=raw_q.strip()[:100],
        start=found.start,
        end=found.end,
        stepped_up=stepped if stepped in ("yes", "no") else "",
    )
    return flt, {name: words[problem] for name, problem in problems.items()}


def _filter_args() -> dict[str, str]:
    """The filter as typed, for the pager links and the export's audit row."""
    return {
        k: request.args[k][:100] for k in ("q", "from", "to", "stepped_up") if request.args.get(k)
    }


def _select(form: MemberForm, flt: SubmissionFilter):
    stmt = db.select(FormSubmission).where(
        FormSubmission.form_id == form.id, FormSubmission.submitted_at.is_not(None)
    )
    if flt.q:
        pattern = like_pattern(flt.q)
        stmt = stmt.where(
            or_(
                func.lower(FormSubmission.login_id).like(pattern, escape="\\"),
                func.lower(FormSubmission.member_name).like(pattern, escape="\\"),
            )
        )
    if flt.start is not None:
        stmt = stmt.where(FormSubmission.submitted_at >= flt.start)
    if flt.end is not None:
        stmt = stmt.where(FormSubmission.submitted_at < flt.end)
    if flt.stepped_up:
        stmt = stmt.where(FormSubmission.stepped_up.is_(flt.stepped_up == "yes"))
    return stmt


def _page(
    form: MemberForm, flt: SubmissionFilter, before: int | None, size: int
) -> tuple[list[FormSubmission], int | None]:
    """Newest sent first; ``before`` is the last row of the previous page (its id), so
    the pages stay put while new submissions arrive."""
    stmt = _select(form, flt)
    if before is not None:
        mark = db.session.get(FormSubmission, before)
        if mark is None or mark.form_id != form.id or mark.submitted_at is None:
            return [], None
        stmt = stmt.where(
            or_(
                FormSubmission.submitted_at < mark.submitted_at,
                and_(
                    FormSubmission.submitted_at == mark.submitted_at,
                    FormSubmission.id < mark.id,
                ),
            )
        )
    stmt = stmt.order_by(FormSubmission.submitted_at.desc(), FormSubmission.id.desc())
    found = list(db.session.scalars(stmt.limit(size + 1)))
    more = len(found) > size
    found = found[:size]
    return found, (found[-1].id if found and more else None)


def _iter(form: MemberForm, flt: SubmissionFilter, batch: int = 500) -> Iterator[FormSubmission]:
    before = None
    while True:
        found, before = _page(form, flt, before, batch)
        yield from found
        if before is None:
            return


def _context(form: MemberForm, flt: SubmissionFilter, errors: dict[str, str]) -> dict:
    rows, next_before = _page(form, flt, id_arg("before"), PAGE_SIZE)
    fields = member_forms.fields_of(form)
    submissions = [
        (s, member_forms.shown_answers(form, member_forms.answers_of(s), fields)) for s in rows
    ]
    return {
        "member_form": form,
        "fields": fields,
        "submissions": submissions,
        "shortened": any(
            len(text) > ANSWER_CHARS for _s, cells in submissions for _f, text in cells
        ),
        "next_before": next_before,
        "args": _filter_args(),
        "errors": errors,
        "answer_chars": ANSWER_CHARS,
        "count": member_forms.sent_count(form),
    }


@bp.route("/forms/<slug>/submissions")
def form_submissions(slug: str) -> ResponseReturnValue:
    form = _slug_or_404(slug)
    flt, errors = _parse_filter()
    return render(
        "admin/form_submissions.html",
        "admin/_form_submissions_results.html",
        **_context(form, flt, errors),
    )


@bp.route("/forms/<slug>/submissions/<int:submission_id>")
def form_submission(slug: str, submission_id: int) -> ResponseReturnValue:
    """One submission in full: the list shortens long answers so that a page of them
    stays small. Answers to fields removed since are shown under their names. A draft,
    or a submission of another form, answers 404 like an unknown id."""
    form = _slug_or_404(slug)
    submission = (
        db.session.get(FormSubmission, submission_id) if submission_id <= 2**63 - 1 else None
    )
    if submission is None or submission.form_id != form.id or submission.submitted_at is None:
        abort(404)
    answers = member_forms.answers_of(submission)
    rows = member_forms.shown_answers(form, answers)
    names = {f.name for f, _value in rows}
    return render_template(
        "admin/form_submission.html",
        member_form=form,
        s=submission,
        rows=rows,
        removed=[(key, value) for key, value in answers.items() if key not in names],
        # The member as they are now (None once deleted): the list keeps who sent it.
        member=db.session.get(Member, submission.member_id) if submission.member_id else None,
        args=_filter_args(),  # the list's filters, for the way back
    )


@bp.route("/forms/<slug>/submissions.csv")
def form_submissions_csv(slug: str) -> ResponseReturnValue:
    """The submissions as CSV: each current field's label, then the answers of fields
    no longer in the form (a replaced form keeps its old submissions). A filter typed
    wrongly exports nothing: the page shows the field errors instead."""
    form = _slug_or_404(slug)
    flt, errors = _parse_filter()
    if errors:
        return render_template("admin/form_submissions.html", **_context(form, flt, errors)), 400
    audit.record_request(
        "admin.export",
        export="form_submissions.csv",
        filters={**_filter_args(), "form": form.slug},
    )
    fields = member_forms.fields_of(form)
    names = {f.name for f in fields}
    extra: list[str] = []
    for submission in _iter(form, flt):
        for key in member_forms.answers_of(submission):
            if key not in names and key not in extra:
                extra.append(key)

    def when(value: datetime | None) -> str:
        return format_datetime(value, "yyyy-MM-dd HH:mm:ss") if value else ""

    def rows() -> Iterator[list[object]]:
        for s in _iter(form, flt):
            answers = member_forms.answers_of(s)
            yield [
                when(s.submitted_at),
                s.login_id,
                s.member_name,
                _("はい") if s.stepped_up else _("いいえ"),
                when(s.second_step_at),
                *(member_forms.shown(f, answers.get(f.name, "")) for f in fields),
                *(answers.get(key, "") for key in extra),
            ]

    header = [
        _("送信日時"),
        _("ログインID"),
        _("名前"),
        _("送信前の二段階認証"),
        _("二段階認証の日時"),
        *(f.label for f in fields),
        *extra,
    ]
    return csv_response(f"{form.slug}-submissions.csv", header, rows())
