"""Rate limits on password checks: per client address and per account.

Views call :func:`allow` before checking a password, so an over-limit attempt gets the
same form back with a message (htmx swaps it; status 429) and costs no argon2 hash.
"""

from __future__ import annotations

from flask import current_app, request
from limits import parse_many

from .extensions import limiter


def allow(scope: str, rules_key: str, *identifiers: str) -> bool:
    """Count one attempt against every rule in ``config[rules_key]``; False when any
    is exceeded."""
    if not current_app.config["RATELIMIT_ENABLED"]:
        return True
    strategy = limiter.limiter
    allowed = True
    for item in parse_many(current_app.config[rules_key]):
        # Every rule is counted even after one says no, so each window stays honest.
        allowed = strategy.hit(item, scope, *identifiers) and allowed
    return allowed


def client_address() -> str:
    return request.remote_addr or "unknown"
