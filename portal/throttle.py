"""Rate limits: per client address, per account, per browser that signed in before.

Counters live in Flask-Limiter's storage (Redis with ``REDIS_URL``, so every worker and
host shares them). Views ask before the work and answer an over-limit request with the
form, the portal's message and ``Retry-After`` (see :func:`too_many`), so a refused
password attempt costs no argon2 hash.

Two ways of counting:

- :func:`hit` counts the request, then says whether it was over: for per-address
  buckets, where a burst of parallel requests must not slip past the limit.
- :func:`full` only looks, and :func:`record` counts afterwards: for buckets that count
  *failures* of one account, so requests refused by a limit never count and strangers
  cannot keep an account's bucket full by being refused.
"""

from __future__ import annotations

import math
import time

from flask import Response, current_app, request
from limits import RateLimitItem, parse, parse_many

from .extensions import limiter
from .models import Member

# How long one "throttled" audit row stands for: later refusals of the same bucket
# within it are not written again (a flood of refused requests is one event).
AUDIT_WINDOW = parse("1 per 15 minutes")


def _enabled() -> bool:
    return bool(current_app.config["RATELIMIT_ENABLED"])


def _rules(rules_key: str) -> list[RateLimitItem]:
    return parse_many(current_app.config[rules_key])


def _wait(item: RateLimitItem, *identifiers: str) -> int:
    reset_at = limiter.limiter.get_window_stats(item, *identifiers).reset_time
    return max(1, math.ceil(reset_at - time.time()))


def hit(rules_key: str, *identifiers: str) -> int | None:
    """Count one request against every rule; the seconds to wait if any rule is now
    over, else None."""
    if not _enabled():
        return None
    wait = None
    for item in _rules(rules_key):
        # Every rule is counted even after one says no, so each window stays honest.
        if not limiter.limiter.hit(item, *identifiers):
            wait = max(wait or 0, _wait(item, *identifiers))
    return wait


def full(rules_key: str, *identifiers: str) -> int | None:
    """Without counting: the seconds to wait if a rule is already full, else None."""
    if not _enabled():
        return None
    wait = None
    for item in _rules(rules_key):
        if not limiter.limiter.test(item, *identifiers):
            wait = max(wait or 0, _wait(item, *identifiers))
    return wait


def record(rules_key: str, *identifiers: str) -> None:
    """Count one event (a failure) that already happened."""
    if not _enabled():
        return
    for item in _rules(rules_key):
        limiter.limiter.hit(item, *identifiers)


def first_refusal(*identifiers: str) -> bool:
    """True for the first refusal of a bucket in AUDIT_WINDOW: audit that one only."""
    if not _enabled():
        return True
    return limiter.limiter.hit(AUDIT_WINDOW, "audit-throttled", *identifiers)


def per_address(
    rules_key: str, scope: str, subject: Member | None = None, event: str = "signin.throttled"
) -> int | None:
    """Count one request from this client address; the wait if it is over the limit.
    The first refusal in AUDIT_WINDOW is audited, not every one."""
    address = client_address()
    wait = hit(rules_key, scope, address)
    if wait is not None and first_refusal(scope, address):
        from . import audit

        audit.record_request(event, subject=subject, bucket=scope)
    return wait


def too_many(response: Response, wait: int) -> Response:
    response.status_code = 429
    response.headers["Retry-After"] = str(wait)
    return response


def client_address() -> str:
    return request.remote_addr or "unknown"
