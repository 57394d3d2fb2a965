"""Overview: how many members have 2FA, by method, sign-ins by method, and an
enrolment-over-time chart drawn on the server as SVG (no chart library in the browser)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import current_app, render_template
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select, union_all

from .. import sessions
from ..extensions import db
from ..models import AuditEvent, ContactMethod, Member, TotpCredential
from ..texts import METHOD_SHORT
from . import bp

CHART_DAYS = 90
WIDTH, HEIGHT, PAD = 640, 220, 40


def _first_methods():
    both = union_all(
        select(TotpCredential.member_id, TotpCredential.created_at),
        select(ContactMethod.member_id, ContactMethod.created_at),
    ).subquery()
    return (
        select(both.c.member_id, func.min(both.c.created_at).label("first"))
        .group_by(both.c.member_id)
        .subquery()
    )


def enrolment_series(today: date, zone: ZoneInfo) -> list[tuple[date, int]]:
    """Members with 2FA at the end of each of the last CHART_DAYS days (the last value is
    everyone with 2FA now, so the overview needs no separate count)."""
    start = today - timedelta(days=CHART_DAYS - 1)
    start_utc = datetime.combine(start, datetime.min.time(), zone)
    firsts = _first_methods()
    before = db.session.scalar(
        select(func.count()).select_from(firsts).where(firsts.c.first < start_utc)
    )
    per_day: dict[date, int] = {}
    for (first,) in db.session.execute(select(firsts.c.first).where(firsts.c.first >= start_utc)):
        if first.tzinfo is None:  # through a UNION, SQLite may hand back a naive value
            first = first.replace(tzinfo=UTC)
        day = first.astimezone(zone).date()
        per_day[day] = per_day.get(day, 0) + 1
    series, running = [], before or 0
    for offset in range(CHART_DAYS):
        day = start + timedelta(days=offset)
        running += per_day.get(day, 0)
        series.append((day, running))
    return series


def chart_points(series: list[tuple[date, int]]) -> dict:
    top = max([count for _, count in series] + [1])
    step = (WIDTH - 2 * PAD) / max(len(series) - 1, 1)
    points = " ".join(
        f"{PAD + i * step:.1f},{HEIGHT - PAD - (count / top) * (HEIGHT - 2 * PAD):.1f}"
        for i, (_, count) in enumerate(series)
    )
    return {
        "points": points,
        "top": top,
        "first_day": series[0][0],
        "last_day": series[-1][0],
        "last": series[-1][1],
        "width": WIDTH,
        "height": HEIGHT,
        "pad": PAD,
    }


@bp.route("/")
def overview() -> ResponseReturnValue:
    zone = ZoneInfo(current_app.config["BABEL_DEFAULT_TIMEZONE"])
    now = sessions.now()
    total = db.session.scalar(select(func.count(Member.id)))
    series = enrolment_series(now.astimezone(zone).date(), zone)
    with_tfa = series[-1][1]
    by_method = {"app": db.session.scalar(select(func.count(TotpCredential.id)))}
    for kind, count in db.session.execute(
        select(ContactMethod.kind, func.count(ContactMethod.id)).group_by(ContactMethod.kind)
    ):
        by_method[kind] = count
    signins = dict(
        db.session.execute(
            select(AuditEvent.method, func.count(AuditEvent.id))
            .where(
                AuditEvent.event == "signin.success",
                AuditEvent.created_at >= now - timedelta(days=30),
            )
            .group_by(AuditEvent.method)
        ).all()
    )
    return render_template(
        "admin/overview.html",
        total=total,
        with_tfa=with_tfa,
        by_method=by_method,
        signins=signins,
        chart=chart_points(series),
        method_short=METHOD_SHORT,
    )
