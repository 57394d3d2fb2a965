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
from limits.storage import RedisStorage
from limits.strategies import FixedWindowRateLimiter

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
    items = _rules(rules_key)
    # Every rule is counted even after one says no, so each window stays honest.
    for item, within in zip(items, _count_all(items, identifiers), strict=True):
        if not within:
            wait = max(wait or 0, _wait(item, *identifiers))
    return wait


def full(rules_key: str, *identifiers: str) -> int | None:
    """Without counting: the seconds to wait if a rule is already full, else None."""
    found = first_full([(rules_key, identifiers)])
    return found[0] if found is not None else None


def first_full(buckets: list[tuple[str, tuple[str, ...]]]) -> tuple[int, tuple[str, ...]] | None:
    """Without counting: the first of ``buckets`` (rules key, identifiers) with a full
    rule, as (seconds to wait, identifiers); None when none is full. With Redis, all of
    them are read in one round trip."""
    if not _enabled():
        return None
    rules = [(n, item) for n, (key, _) in enumerate(buckets) for item in _rules(key)]
    full_now = _full_all([(item, buckets[n][1]) for n, item in rules])
    for n, (_, identifiers) in enumerate(buckets):
        waits = [
            _wait(item, *identifiers)
            for (m, item), is_full in zip(rules, full_now, strict=True)
            if m == n and is_full
        ]
        if waits:
            return max(waits), identifiers
    return None


def record(rules_key: str, *identifiers: str) -> None:
    """Count one event (a failure) that already happened."""
    if not _enabled():
        return
    _count_all(_rules(rules_key), identifiers)


# --- one round trip to Redis for all the rules of a check --------------------------------
# With REDIS_URL every rule used to cost a round trip (a bucket has two or three rules,
# and the password step checks three buckets). The fixed-window counters limits keeps in
# Redis are read with one MGET and counted with one pipeline of its own increment script;
# any other storage (memory://, a Redis cluster) goes through limits rule by rule.


def _redis() -> RedisStorage | None:
    strategy = limiter.limiter
    if type(strategy) is FixedWindowRateLimiter and type(strategy.storage) is RedisStorage:
        return strategy.storage
    return None


def _count_all(items: list[RateLimitItem], identifiers: tuple[str, ...]) -> list[bool]:
    """Count one hit on every rule; for each, whether it is still within its limit."""
    storage = _redis()
    if storage is None or len(items) < 2:
        return [limiter.limiter.hit(item, *identifiers) for item in items]
    pipe = storage.get_connection().pipeline(transaction=False)
    for item in items:
        key = storage.prefixed_key(item.key_for(*identifiers))
        pipe.evalsha(storage.lua_incr_expire.sha, 1, key, item.get_expiry(), 1)
    from redis.exceptions import NoScriptError  # only with REDIS_URL: redis is installed

    try:
        counts = pipe.execute()
    except NoScriptError:
        # The server lost its scripts (a restart or SCRIPT FLUSH): nothing was counted,
        # and limits loads the script again on its way.
        return [limiter.limiter.hit(item, *identifiers) for item in items]
    return [int(count) <= item.amount for count, item in zip(counts, items, strict=True)]


def _full_all(pairs: list[tuple[RateLimitItem, tuple[str, ...]]]) -> list[bool]:
    """For each (rule, identifiers): whether the rule is already full."""
    storage = _redis()
    if storage is None or len(pairs) < 2:
        return [not limiter.limiter.test(item, *identifiers) for item, identifiers in pairs]
    keys = [storage.prefixed_key(item.key_for(*identifiers)) for item, identifiers in pairs]
    counts = storage.get_connection(True).mget(keys)
    return [int(count or 0) >= item.amount for count, (item, _) in zip(counts, pairs, strict=True)]


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
