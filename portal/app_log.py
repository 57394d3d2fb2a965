"""The application's log: one line per record, as text (the default) or as one JSON
object per line (``PORTAL_LOG_FORMAT=json``, for log collectors), with the request's id.

Records of every ``portal.*`` logger (``app.logger`` is ``portal``) go to the same
stream as before, Flask's ``wsgi_errors_stream``: gunicorn's error log inside a request,
stderr outside one. gunicorn's own lines and its access log follow the same setting
(``portal/access_log.py``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Flask, has_request_context, request
from flask.logging import default_handler, wsgi_errors_stream

from .access_log import redact
from .config import DEFAULTS, parse_log_format
from .web import request_id

TEXT_FORMAT = "[%(asctime)s] %(levelname)s in %(name)s [%(request_id)s]: %(message)s"


class RequestFields(logging.Filter):
    """Adds ``request_id``, ``method`` and ``path`` (reset tokens redacted) to records
    logged while a request is handled; outside one they are None."""

    def filter(self, record: logging.LogRecord) -> bool:
        inside = has_request_context()
        record.request_id = request_id.current() if inside else None
        record.method = request.method if inside else None
        record.path = redact(request.path) if inside else None
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "request_id", None) is None:
            record.request_id = "-"
        return super().format(record)


def json_line(fields: dict[str, Any]) -> str:
    """One line of JSON: ASCII only, so no character in a value (a line separator in a
    message) can split it."""
    return json.dumps(fields, ensure_ascii=True, default=str)


def utc_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, request_id; method, path and status when the record
    has them; a traceback as one string."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "time": utc_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key in ("method", "path", "status"):
            if getattr(record, key, None) is not None:
                fields[key] = getattr(record, key)
        if record.exc_info:
            fields["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            fields["stack_info"] = self.formatStack(record.stack_info)
        return json_line(fields)


class AccessJsonFormatter(logging.Formatter):
    """gunicorn's access log as JSON: its logger passes the access-log atoms (already
    redacted) as the record's arguments; the format string is not used."""

    def format(self, record: logging.LogRecord) -> str:
        atoms: Mapping[str, Any] = record.args  # type: ignore[assignment]

        def given(key: str) -> Any:
            value = atoms[key]  # gunicorn's atoms answer "-" for a missing key
            return None if value in ("-", "") else value

        status = given("s")
        return json_line(
            {
                "time": utc_time(record.created),
                "level": record.levelname,
                "logger": record.name,
                "message": atoms["r"],
                "request_id": given("{x-request-id}o"),
                "method": given("m"),
                "path": given("U"),
                "status": int(status) if str(status).isdigit() else status,
                "bytes": given("B"),
                "duration_ms": round(atoms["D"] / 1000, 1),
                "remote_addr": given("h"),
                "referrer": given("f"),
                "user_agent": given("a"),
            }
        )


def log_format(environ: Mapping[str, str]) -> str:
    """PORTAL_LOG_FORMAT as gunicorn's process sees it (the app reads it from its config)."""
    raw = environ.get("PORTAL_LOG_FORMAT")
    if raw is None:
        return DEFAULTS["PORTAL_LOG_FORMAT"]
    return parse_log_format("PORTAL_LOG_FORMAT", raw)


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


class PortalHandler(logging.StreamHandler):
    """The one handler of the ``portal`` logger (replacing Flask's default handler)."""


def init_app(app: Flask) -> None:
    # The ``portal`` logger is shared by every app of the process (tests make many):
    # the newest app's handler replaces the previous one.
    logger = app.logger
    for handler in list(logger.handlers):
        if handler is default_handler or isinstance(handler, PortalHandler):
            logger.removeHandler(handler)
    handler = PortalHandler(wsgi_errors_stream)  # type: ignore[arg-type]
    handler.addFilter(RequestFields())
    handler.setFormatter(formatter(app.config["PORTAL_LOG_FORMAT"]))
    logger.addHandler(handler)
    request_id.init_app(app)
