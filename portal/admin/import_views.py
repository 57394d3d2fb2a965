"""メンバーの一括取り込み: the CSV import of ``members import`` as an upload, for
operators who do not use a shell. "確認する" checks every line and writes nothing;
"取り込む" writes the good lines (portal/importing.py) and, when asked, mails each new
member an invitation. Both need a recent second step, like every admin change."""

from __future__ import annotations

from flask import render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from .. import audit, importing, invitations, sessions
from ..extensions import db
from ..models import Member
from ..web import uploads
from . import bp
from .common import ask_for_second_step, stale_operator
from .forms import ImportForm

SHOWN_PROBLEMS = 50


@bp.route("/import", methods=["GET", "POST"])
def members_import() -> ResponseReturnValue:
    here = url_for("admin.members_import")
    if stale_operator():
        return ask_for_second_step(here)
    form = ImportForm()
    error = report = None
    dry_run, invited, not_mailed = True, 0, 0
    if form.validate_on_submit():
        upload = request.files.get("file")
        dry_run = form.action.data != "import"
        if upload is None or not upload.filename:
            error = _("CSVファイルを選んでください。")
        else:
            try:
                report = importing.run(
                    upload.stream,
                    now=sessions.now(),
                    update_existing=bool(form.update.data),
                    dry_run=dry_run,
                    keep_created=bool(form.invite.data),
                    allow_operators=False,  # the admin area is given from a shell only
                )
            except importing.FileError as exc:
                db.session.rollback()
                error = str(exc)
        if report is not None and not dry_run:
            audit.record_request(
                "members.imported",
                created=report.created,
                updated=report.updated,
                unchanged=report.unchanged,
                rejected=report.rejected,
            )
            if form.invite.data:
                invited, not_mailed = _invite(report.created_ids)
    return render_template(
        "admin/import.html",
        form=form,
        error=error,
        report=report,
        dry_run=dry_run,
        invited=invited,
        not_mailed=not_mailed,
        shown=SHOWN_PROBLEMS,
        upload_mb=uploads.LIMITS["admin.members_import"] // (1024 * 1024),
    )


def _invite(member_ids: list[int]) -> tuple[int, int]:
    def record(member: Member, sent: invitations.Sent) -> None:
        event, detail = sent.audit()
        audit.record_request(event, subject=member, **detail)

    return invitations.invite_all(
        member_ids, sessions.now(), requested_by=current_user.login_id, record=record
    )
