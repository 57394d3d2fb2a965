"""``GET /healthz`` for load balancers and orchestrators: can this process serve?

It asks the database for ``SELECT 1`` and, when ``REDIS_URL`` is set, Redis for
``PING``, and answers 200 with ``{"status": "ok", "database": "ok", "redis": "ok"}``
(``"not configured"`` without Redis), or 503 naming the part that failed
(``"unavailable"``). Nothing else: no versions, host names, error texts or secrets (the
log says which error it was). Anyone may ask, as often as a balancer does: no sign-in,
no session (no cookie is read or set), no CSRF, no rate limit, never cached.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import text

from ..extensions import db, limiter

bp = Blueprint("health", __name__)
limiter.exempt(bp)

OK = "ok"
UNAVAILABLE = "unavailable"
NOT_CONFIGURED = "not configured"
# A Redis that does not answer within this many seconds counts as down: a balancer's
# probe must not hang on it.
REDIS_TIMEOUT = 2


@bp.get("/healthz")
def healthz() -> Response:
    parts = {"database": _database(), "redis": _redis()}
    healthy = UNAVAILABLE not in parts.values()
    response = jsonify({"status": OK if healthy else UNAVAILABLE, **parts})
    response.status_code = 200 if healthy else 503
    response.headers["Cache-Control"] = "no-store"
    return response


def _database() -> str:
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "cannot serve"
        db.session.rollback()
        _log_failure("the database", exc)
        return UNAVAILABLE
    return OK


def _redis() -> str:
    url = current_app.config.get("REDIS_URL")
    if not url:
        return NOT_CONFIGURED
    try:
        _redis_client(url).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "cannot serve"
        _log_failure("Redis", exc)
        return UNAVAILABLE
    return OK


def _redis_client(url: str) -> Any:
    """One client (with its connection pool) per app, made on first use."""
    client = current_app.extensions.get("portal.health_redis")
    if client is None:
        import redis

        if url.startswith("redis+unix://"):  # the limits library's spelling
            url = "unix://" + url[len("redis+unix://") :]
        client = redis.Redis.from_url(
            url, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT
        )
        current_app.extensions["portal.health_redis"] = client
    return client


def _log_failure(part: str, exc: Exception) -> None:
    # The class only: the text may name hosts, and the answer never does.
    current_app.logger.warning("healthz: %s is unavailable (%s)", part, type(exc).__name__)
