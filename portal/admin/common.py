"""Helpers for the admin views: freshness for POSTs, CSV streaming, keyset links."""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Iterable, Iterator

from flask import Response, request, stream_with_context

from .. import sessions
from ..web.dialogs import reauth_dialog

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
PAGE_SIZE = 50


def id_arg(name: str) -> int | None:
    """A keyset position from the query string; anything but a plain id is ignored."""
    raw = request.args.get(name, "")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else None


def stale_operator() -> bool:
    """Admin changes need a second step within the last 10 minutes (every operator
    here has one: the blueprint sends the others to set one up)."""
    return not sessions.is_fresh(has_two_factor=True)


def ask_for_second_step(next_url: str) -> Response:
    return reauth_dialog(next_url)


def safe_cell(value: object) -> str:
    """Spreadsheets run cells that start with = + - @ (or tab/CR) as formulas: prefix
    them with ' so an attacker-chosen name cannot become a formula in Excel. Japanese
    Excel also reads the full-width ＝ ＋ － ＠ as formula signs, so the check looks at
    the NFKC form (the cell itself keeps what the member typed)."""
    text = "" if value is None else str(value)
    return "'" + text if unicodedata.normalize("NFKC", text).startswith(FORMULA_STARTS) else text


def csv_response(filename: str, header: list[str], rows: Iterable[list[object]]) -> Response:
    """Stream a UTF-8 CSV with a BOM (so Excel in Japan reads it), row by row."""

    def generate() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        yield "\ufeff"
        writer.writerow([safe_cell(h) for h in header])
        for row in rows:
            writer.writerow([safe_cell(cell) for cell in row])
            if buffer.tell() > 64 * 1024:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    response = Response(stream_with_context(generate()), mimetype="text/csv")
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response
