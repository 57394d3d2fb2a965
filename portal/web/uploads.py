"""Views that take larger uploads than MAX_CONTENT_LENGTH allows everyone else.

The limit must be raised before anything reads the body: Flask-WTF's CSRF check reads
the form in its own ``before_request``, so this one is registered ahead of it (see
``create_app``), by endpoint.
"""

from __future__ import annotations

from flask import Flask, current_app, request

# endpoint -> bytes
LIMITS = {"admin.members_import": 16 * 1024 * 1024}  # about 250,000 lines of members


def init_app(app: Flask) -> None:
    @app.before_request
    def larger_uploads() -> None:
        limit = LIMITS.get(request.endpoint or "")
        if limit is not None:
            request.max_content_length = max(limit, current_app.config["MAX_CONTENT_LENGTH"])
