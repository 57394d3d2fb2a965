"""入力 → 確認 → サンキュー for a member-area form (issue 15).

Every route needs a signed-in member (checked before any lookup, so a visitor learns
nothing, not even whether a form exists) and answers 404 for an unknown or closed form.
The answers live in a draft row between the input and the confirm page, never in the
cookie; the confirm page's 送信する sends that draft once. When the form asks for a
fresh second step, 送信する opens the 本人確認 dialog instead, and the draft waits;
after it the member is back on the same confirm page.
"""

from __future__ import annotations

import logging
from datetime import datetime

from flask import abort, current_app, flash, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.exceptions import TooManyRequests

from .. import audit, member_forms, messages, notify, sessions, throttle, twofactor
from ..member_forms import Field
from ..models import FormSubmission, MemberForm
from ..web import policy
from ..web.dialogs import member, reauth_dialog
from ..web.forms import ActionForm
from ..web.htmx import redirect_to
from . import bp

log = logging.getLogger(__name__)


@bp.before_request
def signed_in_only() -> ResponseReturnValue | None:
    """Every form route, before anything is looked up (OPTIONS too)."""
    if not current_user.is_authenticated:
        return current_app.login_manager.unauthorized()  # type: ignore[attr-defined]
    if request.method == "POST":
        # Each POST stores a draft or a submission: bounded per member, not only by size.
        key = str(current_user.id)
        if wait := throttle.hit("PORTAL_LIMIT_FORMS", "form", key):
            if throttle.first_refusal("form", key):
                audit.record_request("request.throttled", bucket="form")
            raise TooManyRequests(retry_after=wait)
    return None


def _open_form(slug: str) -> MemberForm:
    form = member_forms.find(slug)
    if form is None or not form.is_open:
        abort(404)
    return form


def _has_two_factor() -> bool:
    return bool(twofactor.usable_methods(member(), policy.offered()))


def _setup_first(form: MemberForm) -> ResponseReturnValue | None:
    """``require_2fa = setup``: a member without 2FA sets it up first, then comes back."""
    if form.require_2fa != "setup" or _has_two_factor():
        return None
    flash(_("「%(title)s」を利用するには、二段階認証の設定が必要です。", title=form.title))
    return redirect_to(url_for("settings.setup", next=url_for("forms.show", slug=form.slug)))


def _settings_url() -> str:
    return url_for("settings.index")


def _own(form: MemberForm, submission_id: int) -> FormSubmission:
    row = member_forms.own_submission(form, member(), submission_id)
    if row is None:
        abort(404)
    return row


@bp.route("/<slug>", methods=["GET", "POST"])
def show(slug: str) -> ResponseReturnValue:
    """入力: blank, or the member's draft again (戻る); a POST checks the answers and
    goes on to 確認."""
    form = _open_form(slug)
    if (held := _setup_first(form)) is not None:
        return held
    fields = member_forms.fields_of(form)
    csrf = ActionForm()
    now = sessions.now()
    draft = _draft_arg(form)
    errors: dict[str, str] = {}
    if csrf.validate_on_submit():
        answers, errors = member_forms.clean_answers(fields, request.form)
        if not errors:
            if not (
                draft is not None
                and member_forms.draft_usable(form, draft, now)
                and member_forms.update_draft(draft, answers)
            ):
                draft = member_forms.start_draft(form, member(), answers, now)
            return redirect_to(url_for("forms.confirm", slug=form.slug, draft_id=draft.id))
    elif draft is not None:  # 戻る: only an unsent draft of the member's is found
        answers = member_forms.answers_of(draft)
    else:
        answers = {}
    return render_template(
        "forms/input.html",
        form=form,
        fields=fields,
        answers=answers,
        errors=errors,
        csrf=csrf,
        draft=draft,
        body=member_forms.render_page(form, "input", member(), _settings_url()),
        warn=form.require_2fa == "warn" and not _has_two_factor(),
    ), (400 if errors else 200)


def _draft_arg(form: MemberForm) -> FormSubmission | None:
    """The draft named by ``?draft=`` (戻る) or the input form's hidden field: only the
    member's own, of this form, not sent."""
    raw = request.values.get("draft", "")
    if not (raw.isascii() and raw.isdigit() and len(raw) < 19):
        return None
    row = member_forms.own_submission(form, member(), int(raw))
    return row if row is not None and row.submitted_at is None else None


def _proof() -> tuple[bool, datetime | None]:
    """Whether the member has a second step, and when this session last proved it (or
    the password, for a member without one)."""
    has = twofactor.has_two_factor(member())
    return has, sessions.proved_at(second_step=has)


@bp.route("/<slug>/confirm/<int:draft_id>", methods=["GET", "POST"])
def confirm(slug: str, draft_id: int) -> ResponseReturnValue:
    """確認: the answers as they will be sent; 送信する (a POST here) sends them once."""
    form = _open_form(slug)
    if (held := _setup_first(form)) is not None:
        return held
    draft = _own(form, draft_id)
    now = sessions.now()
    if draft.submitted_at is not None:
        if request.method == "POST":
            flash(_("この内容は既に送信済みです。"), "error")
        return redirect_to(url_for("forms.thanks", slug=form.slug, submission_id=draft.id))
    if not member_forms.draft_usable(form, draft, now):
        flash(
            _(
                "フォームの内容が変わったか、時間が経ちすぎました。内容を確かめて、もう一度「確認する」を押してください。"
            ),
            "error",
        )
        return redirect_to(url_for("forms.show", slug=form.slug, draft=draft.id))
    has_two_factor, proved = _proof()
    step_up = member_forms.needs_step_up(form, proved, now)
    here = url_for("forms.confirm", slug=form.slug, draft_id=draft.id)
    rows = member_forms.shown_answers(form, member_forms.answers_of(draft))
    csrf = ActionForm()
    if csrf.validate_on_submit():
        if step_up:
            return reauth_dialog(url_for("forms.verified", slug=form.slug, draft_id=draft.id))
        second_step_at = sessions.proved_at(second_step=True)
        stepped_up = form.step_up_minutes > 0 and has_two_factor
        if not member_forms.submit(
            draft, now, second_step_at=second_step_at, stepped_up=stepped_up
        ):
            flash(_("この内容は既に送信済みです。"), "error")
            return redirect_to(url_for("forms.thanks", slug=form.slug, submission_id=draft.id))
        audit.record_request(
            "form.submitted",
            slug=form.slug,
            submission_id=draft.id,
            stepped_up=stepped_up,
        )
        if _send_receipt(form, rows):
            flash(_("受付内容をメールでお送りしました。"))
        return redirect_to(url_for("forms.thanks", slug=form.slug, submission_id=draft.id))
    return render_template(
        "forms/confirm.html",
        form=form,
        rows=rows,
        draft=draft,
        csrf=csrf,
        action=here,
        step_up=step_up,
        body=member_forms.render_page(form, "confirm", member(), _settings_url(), rows),
    )


@bp.route("/<slug>/confirm/<int:draft_id>/verified")
def verified(slug: str, draft_id: int) -> ResponseReturnValue:
    """Where the 本人確認 dialog leads: back to the confirm page (the whole page, also
    from the dialog), the answers still there."""
    form = _open_form(slug)
    draft = _own(form, draft_id)
    _has, proved = _proof()
    if draft.submitted_at is None and not member_forms.needs_step_up(form, proved, sessions.now()):
        flash(_("本人確認が完了しました。内容を確かめて「送信する」を押してください。"))
    return redirect_to(url_for("forms.confirm", slug=form.slug, draft_id=draft.id))


@bp.route("/<slug>/thanks/<int:submission_id>")
def thanks(slug: str, submission_id: int) -> ResponseReturnValue:
    """サンキュー: the member's own sent answers, reloadable."""
    form = _open_form(slug)
    sent = _own(form, submission_id)
    if sent.submitted_at is None:
        return redirect_to(url_for("forms.confirm", slug=form.slug, draft_id=sent.id))
    rows = member_forms.shown_answers(form, member_forms.answers_of(sent))
    return render_template(
        "forms/thanks.html",
        form=form,
        sent=sent,
        body=member_forms.render_page(form, "thanks", member(), _settings_url(), rows),
    )


def _send_receipt(form: MemberForm, rows: list[tuple[Field, str]]) -> bool:
    """The receipt mail with the answers sent; a failed send never undoes the
    submission."""
    m = member()
    if not m.email:
        return False
    listed = [(f.label, text or _("（未入力）")) for f, text in rows]
    title, text = messages.form_receipt(m, form.title, listed, sessions.now())
    try:
        notify.send_email(m.email, title, text)
    except notify.DeliveryError:
        log.warning("receipt of form %s to member %s could not be sent", form.slug, m.login_key)
        return False
    return True
