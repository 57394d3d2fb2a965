"""The audit log: newest first, filters, CSV export."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from flask import render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import format_datetime, get_timezone
from flask_babel import gettext as _

from .. import audit, members, useragent
from ..queries import AuditFilter, audit_page, iter_audit
from ..web import audit_text
from ..web.htmx import render
from . import bp
from .common import PAGE_SIZE, csv_response, id_arg


def _parse_filter() -> tuple[AuditFilter, dict[str, str]]:
    """The filter, and a message per field the operator typed wrongly."""
    errors: dict[str, str] = {}
    zone = ZoneInfo(str(get_timezone()))
    flt = AuditFilter()
    login_id = (request.args.get("member") or "").strip()
    if login_id:
        found = members.find(login_id) if members.LOGIN_ID_RE.fullmatch(login_id) else None
        if found is None:
            errors["member"] = _("そのログインIDのメンバーはいません。")
            flt.member_id = -1  # match nothing rather than everything
        else:
            flt.member_id = found.id
    event = request.args.get("event") or ""
    flt.event = event if event in audit.EVENTS else ""
    for name, attr, shift in (("from", "start", 0), ("to", "end", 1)):
        raw = (request.args.get(name) or "").strip()
        if not raw:
            continue
        try:
            day = datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=zone)
        except ValueError:
            day = None
        if day is None or not 1900 <= day.year <= 9998:
            errors[name] = _("日付は 2026-11-25 の形式で入力してください。")
            continue
        setattr(flt, attr, day + timedelta(days=shift))  # "to" includes that whole day
    if flt.start is not None and flt.end is not None and flt.start >= flt.end:
        errors["from"] = _("開始日は終了日以前の日付を指定してください。")
        flt.end = flt.start  # an empty range: match nothing rather than guess
    return flt, errors


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
