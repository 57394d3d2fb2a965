"""The audit log: newest first, filters, CSV export."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from flask import current_app, request
from flask.typing import ResponseReturnValue
from flask_babel import format_datetime
from flask_babel import gettext as _

from .. import audit, members
from ..web.htmx import render
from . import bp
from .common import PAGE_SIZE, csv_response, id_arg
from .queries import AuditFilter, audit_page, iter_audit


def _parse_filter() -> tuple[AuditFilter, dict[str, str]]:
    """The filter, and a message per field the operator typed wrongly."""
    errors: dict[str, str] = {}
    zone = ZoneInfo(current_app.config["BABEL_DEFAULT_TIMEZONE"])
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
    return flt, errors


def _filter_args() -> dict[str, str]:
    """The filter as typed, for the pager links and the export's audit row."""
    return {
        k: request.args[k][:100] for k in ("member", "event", "from", "to") if request.args.get(k)
    }


@bp.route("/audit")
def audit_log() -> ResponseReturnValue:
    flt, errors = _parse_filter()
    events, next_before = audit_page(flt, id_arg("before"), PAGE_SIZE)
    args = _filter_args()
    return render(
        "admin/audit.html",
        "admin/_audit_table.html",
        events=events,
        next_before=next_before,
        args=args,
        errors=errors,
        labels=audit.EVENTS,
        json=json,
    )


@bp.route("/audit.csv")
def audit_csv() -> ResponseReturnValue:
    flt, _errors = _parse_filter()
    audit.record_request("admin.export", export="audit.csv", filters=_filter_args())
    rows = (
        [
            format_datetime(e.created_at, "yyyy-MM-dd HH:mm:ss"),
            e.event,
            str(audit.EVENTS.get(e.event, e.event)),
            e.actor_label,
            e.subject_label,
            e.method or "",
            e.ip,
            e.user_agent,
            e.detail,
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
    ]
    return csv_response("audit.csv", header, rows)
