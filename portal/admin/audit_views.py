"""The audit log: newest first, filters, CSV export."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from flask import render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import format_datetime, get_timezone
from flask_babel import gettext as _

from .. import audit, useragent
from ..queries import (
    BAD_DATE,
    DATES_REVERSED,
    UNKNOWN_MEMBER,
    AuditFilter,
    audit_filter_from,
    audit_page,
    iter_audit,
)
from ..web import audit_text
from ..web.htmx import render
from . import bp
from .common import PAGE_SIZE, csv_response, id_arg


def _parse_filter() -> tuple[AuditFilter, dict[str, str]]:
    """The filter, and a message per field the operator typed wrongly."""
    flt, problems = audit_filter_from(request.args, ZoneInfo(str(get_timezone())))
    words = {
        UNKNOWN_MEMBER: _("そのログインIDのメンバーはいません。"),
        BAD_DATE: _("日付は 2026-11-25 の形式で入力してください。"),
        DATES_REVERSED: _("開始日は終了日以前の日付を指定してください。"),
    }
    return flt, {name: words[problem] for name, problem in problems.items()}


def _filter_args() -> dict[str, str]:
    """The filter as typed, for the pager links and the export's audit row."""
    return {
        k: request.args[k][:100] for k in ("member", "event", "from", "to") if request.args.get(k)
    }


def _context(flt: AuditFilter, errors: dict[str, str]) -> dict:
    events, next_before = audit_page(flt, id_arg("before"), PAGE_SIZE)
    return {
        "events": events,
        "next_before": next_before,
        "args": _filter_args(),
        "errors": errors,
        "labels": audit.EVENTS,
    }


@bp.route("/audit")
def audit_log() -> ResponseReturnValue:
    flt, errors = _parse_filter()
    return render("admin/audit.html", "admin/_audit_results.html", **_context(flt, errors))


@bp.route("/audit.csv")
def audit_csv() -> ResponseReturnValue:
    """The log as CSV. A filter typed wrongly exports nothing: the page shows the field
    errors instead (an export without the date the operator meant is worse than none)."""
    flt, errors = _parse_filter()
    if errors:
        return render_template("admin/audit.html", **_context(flt, errors))
    audit.record_request("admin.export", export="audit.csv", filters=_filter_args())
    rows = (
        [
            format_datetime(e.created_at, "yyyy-MM-dd HH:mm:ss"),
            e.event,
            str(audit.EVENTS.get(e.event, e.event)),
            e.actor_label,
            e.subject_label,
            audit_text.method_name(e.method),
            e.ip,
            useragent.shown(useragent.describe(e.user_agent)) if e.user_agent else "",
            audit_text.detail_text(e.event, e.detail),
            e.user_agent,  # as sent, for an investigation (safe_cell defuses formulas)
        ]
        for e in iter_audit(flt)
    )
    header = [
        _("日時"),
        _("イベント"),
        _("内容"),
        _("操作した人"),
        _("対象メンバー"),
        _("方法"),
        _("IPアドレス"),
        _("ブラウザ"),
        _("詳細"),
        _("User-Agent（送信されたまま）"),
    ]
    return csv_response("audit.csv", header, rows)
