"""Overview: how many members have 2FA, by method, sign-ins by method, and an
enrolment-over-time chart drawn on the server as SVG (no chart library in the browser)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import render_template
from flask.typing import ResponseReturnValue
from flask_babel import get_timezone
from sqlalchemy import func, select, union_all

from .. import sessions
from ..extensions import db
from ..models import AuditEvent, ContactMethod, Member, Passkey, TotpCredential
from ..queries import METHODS
from ..texts import METHOD_SHORT
from . import bp

CHART_DAYS = 90
HEIGHT, TOP, BOTTOM = 240, 12, 30  # px: the SVG's height, room above and below the plot
LEFT, RIGHT = 0.5, 99.5  # % of the width: the plot (y labels sit above their gridlines)
X_TICKS = 4  # dates labelled under the x axis, first and last included


def _first_methods():
    both = union_all(
        select(TotpCredential.member_id, TotpCredential.created_at),
        select(ContactMethod.member_id, ContactMethod.created_at),
        select(Passkey.member_id, Passkey.created_at),
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


def nice_step(highest: int) -> int:
    """The gap between y gridlines: 1, 2 or 5 times a power of ten, about five lines."""
    rough = max(highest, 1) / 5
    magnitude = 10 ** max(len(str(int(rough))) - 1, 0)
    return next(f * magnitude for f in (1, 2, 5, 10) if f * magnitude >= rough)


def chart_points(series: list[tuple[date, int]]) -> dict:
    """Everything the overview's SVG needs, computed here so the browser runs no chart
    code: the line in a 0–100 box stretched over the plot (so its labels stay at their
    real size on a phone), y gridlines at round numbers, x labels at even dates."""
    highest = max(count for _, count in series)
    step = nice_step(highest)
    top = max(step * -(-highest // step), step)
    last_index = max(len(series) - 1, 1)
    plot = HEIGHT - TOP - BOTTOM
    points = " ".join(
        f"{i * 100 / last_index:.2f},{100 - count * 100 / top:.2f}"
        for i, (_, count) in enumerate(series)
    )
    y_ticks = [
        {"value": value, "y": round(TOP + plot * (1 - value / top), 1)}
        for value in range(0, top + 1, step)
    ]
    x_ticks = []
    for n in range(X_TICKS):
        index = round(n * (len(series) - 1) / (X_TICKS - 1))
        x_ticks.append(
            {
                "day": series[index][0],
                "x": round(LEFT + (RIGHT - LEFT) * index / last_index, 2),
                "anchor": "start" if n == 0 else "end" if n == X_TICKS - 1 else "middle",
            }
        )
    return {
        "points": points,
        "area": f"0,100 {points} 100,100",
        "top": top,
        "y_ticks": y_ticks,
        "x_ticks": x_ticks,
        "first_day": series[0][0],
        "last_day": series[-1][0],
        "first": series[0][1],
        "last": series[-1][1],
        "height": HEIGHT,
        "plot_top": TOP,
        "plot_bottom": TOP + plot,
        "plot_height": plot,
        "left": LEFT,
        "right": RIGHT,
        "days": len(series),
    }


@bp.route("/")
def overview() -> ResponseReturnValue:
    zone = ZoneInfo(str(get_timezone()))
    now = sessions.now()
    total = db.session.scalar(select(func.count(Member.id)))
    series = enrolment_series(now.astimezone(zone).date(), zone)
    with_tfa = series[-1][1]
    by_method = {"app": db.session.scalar(select(func.count(TotpCredential.id)))}
    for kind, count in db.session.execute(
        select(ContactMethod.kind, func.count(ContactMethod.id)).group_by(ContactMethod.kind)
    ):
        by_method[kind] = count
    # Members with at least one passkey, not keys: the cards count members, as the
    # list filtered by method=passkey does.
    by_method["passkey"] = db.session.scalar(select(func.count(func.distinct(Passkey.member_id))))
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
        methods=METHODS,
        method_short=METHOD_SHORT,
    )
