"""gunicorn's access log without パスワードをお忘れの方 tokens.

The mailed link carries its token in the path (``/login/reset/<token>``), and gunicorn
writes every request line, path and referrer to the access log: whoever reads the log
within 30 minutes could set the member's password. This logger writes
``/login/reset/[redacted]`` instead. ``gunicorn.conf.py`` in the project folder selects
it for ``make run`` and the test servers; a reverse proxy's own log needs the same care.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from gunicorn.glogging import Logger

TOKEN_IN_PATH = re.compile(r"(/login/reset/)(?!\[redacted\])[^\s?#\"/]+")


def redact(text: str) -> str:
    return TOKEN_IN_PATH.sub(r"\1[redacted]", text)


class RedactingLogger(Logger):
    """Every value the access log format can name (request line, path, referrer, raw
    headers and environ) is redacted before formatting. With ``PORTAL_LOG_FORMAT=json``
    every line, access log and gunicorn's own messages, is one JSON object
    (``portal/app_log.py``)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        from . import app_log  # it imports this module

        if app_log.log_format(os.environ) == "json":
            for handler in self.error_log.handlers:
                handler.setFormatter(app_log.JsonFormatter())
            for handler in self.access_log.handlers:
                handler.setFormatter(app_log.AccessJsonFormatter())

    def atoms(self, resp: Any, req: Any, environ: dict, request_time: Any) -> dict:
        found = super().atoms(resp, req, environ, request_time)
        return {key: redact(v) if isinstance(v, str) else v for key, v in found.items()}


class RedactingFilter(logging.Filter):
    """The same for the application's own log: Flask logs an unhandled error as
    ``Exception on /login/reset/<token> [GET]``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True
