"""Configuration: every default in one place, then the environment (12-factor).

Each ``PORTAL_*`` variable is read by an explicit parser, because ``from_prefixed_env``
would turn ``PORTAL_HTTPS=no`` into a truthy string. A value that does not parse stops
start-up with a message naming the variable.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

DEFAULTS: dict[str, Any] = {
    "PORTAL_ENV": "production",
    "SECRET_KEY": None,
    "SQLALCHEMY_DATABASE_URI": None,  # filled with the instance-folder SQLite file
    "SQLALCHEMY_ENGINE_OPTIONS": {},
    "PORTAL_ENCRYPTION_KEYS": None,  # list[str] of Fernet keys, newest first
    "PORTAL_HMAC_KEY": None,
    "PORTAL_ISSUER": "会員ページ",
    "PORTAL_HTTPS": False,
    # The port `make run` serves on; mail links follow it when PORTAL_BASE_URL is unset.
    "PORT": 8000,
    "PORTAL_SESSION_HOURS": 12,
    "PORTAL_IDLE_MINUTES": 30,  # a signed-in session left alone this long ends
    # Two-step verification rules (SPEC "Sign-in flow", core issue)
    "PORTAL_PENDING_SECONDS": 5 * 60,
    "PORTAL_REAUTH_SECONDS": 10 * 60,
    "PORTAL_TFA_MAX_FAILURES": 10,
    "PORTAL_TFA_LOCK_SECONDS": 15 * 60,  # the first lock; each further one 4 times longer
    "PORTAL_TFA_LOCK_MAX_SECONDS": 24 * 60 * 60,
    "PORTAL_TFA_BLOCK_FAILURES": 100,  # consecutive failures that lock until an operator acts
    "PORTAL_ENROLMENT_SECONDS": 30 * 60,
    "PORTAL_RECOVERY_LOW": 3,
    # How long an invitation link (members import --invite, the admin's link) works.
    "PORTAL_INVITE_DAYS": 7,
    # argon2-cffi defaults unless a test asks for cheaper ones
    "PORTAL_ARGON2_PARAMS": None,
    # zxcvbn score (0-4) a new password must reach; 3 = about 10^8 guesses or more.
    "PORTAL_PASSWORD_MIN_SCORE": 3,
    "WTF_CSRF_TIME_LIMIT": None,
    # Rate limits (limits' notation, ";" between rules). Shared between workers and
    # hosts only with REDIS_URL; otherwise counted per process. See LIMITS below.
    "REDIS_URL": None,
    "RATELIMIT_ENABLED": True,
    "RATELIMIT_STORAGE_URI": None,
    # Every password check from one client address.
    "PORTAL_LIMIT_LOGIN_ADDRESS": "20 per minute;200 per hour",
    # Failed password checks of one account from one address: the strict bucket.
    "PORTAL_LIMIT_LOGIN_ACCOUNT_ADDRESS": "5 per minute;20 per hour",
    # Failed password checks of one account from anywhere: loose, so strangers can slow
    # but not block the owner; a browser that signed in before is never held by it.
    "PORTAL_LIMIT_LOGIN_ACCOUNT": "20 per minute;100 per hour",
    # Failed password checks from a browser that signed in to the account before.
    "PORTAL_LIMIT_LOGIN_DEVICE": "10 per minute;50 per hour",
    # Second-step POSTs per client address (the member lockout bounds guesses per account).
    "PORTAL_LIMIT_VERIFY": "30 per minute;300 per hour",
    "PORTAL_LIMIT_RECOVERY": "10 per minute;60 per hour",
    "PORTAL_LIMIT_RESEND": "10 per minute;60 per hour",
    # Re-authentication per client address, and password re-checks per member.
    "PORTAL_LIMIT_REAUTH": "30 per minute;300 per hour",
    "PORTAL_LIMIT_REAUTH_PASSWORD": "10 per 15 minutes",
    # Passkey-only sign-in per client address: prompts asked for (every /login visit of
    # a browser with passkey autofill asks for one), and answers checked (a refused
    # answer does not count against any member's lock, so this bounds it).
    "PORTAL_LIMIT_PASSKEY_OPTIONS": "60 per minute;1000 per hour",
    "PORTAL_LIMIT_PASSKEY": "10 per minute;60 per hour",
    # パスワードをお忘れの方: requests per client address, and per typed login ID or
    # address (each one may mail a link; counted whether or not it names a member, so a
    # refusal tells nothing), and opening reset links per client address (guessing).
    "PORTAL_LIMIT_RESET_ADDRESS": "5 per minute;30 per hour",
    "PORTAL_LIMIT_RESET_ACCOUNT": "3 per 15 minutes;10 per day",
    "PORTAL_LIMIT_RESET_TOKEN": "10 per minute;60 per hour",
    # Every admin-area POST per client address.
    "PORTAL_LIMIT_ADMIN": "60 per minute;1000 per hour",
    # Member-area form POSTs (入力, 送信する) per member: each writes a row (issue 15).
    "PORTAL_LIMIT_FORMS": "30 per minute;300 per hour",
    # Admin API (/api/v1/) calls per token, and calls refused for want of a valid token
    # per client address (each refused call is audited, so this bounds the rows too).
    "PORTAL_LIMIT_API": "600 per minute",
    "PORTAL_LIMIT_API_REFUSED": "20 per minute;200 per hour",
    # Request bodies larger than this are refused with 413 before they are read.
    "MAX_CONTENT_LENGTH": 1024 * 1024,
    "PORTAL_PROXY_COUNT": 0,
    # The application's log lines: "text", or "json" (one JSON object per line).
    "PORTAL_LOG_FORMAT": "text",
    # Mail (Flask-Mail). Without MAIL_SERVER, mail is written to the log instead.
    "MAIL_SERVER": None,
    "MAIL_PORT": 25,
    "MAIL_USE_TLS": False,
    "MAIL_USE_SSL": False,
    "MAIL_USERNAME": None,
    "MAIL_PASSWORD": None,
    "MAIL_DEFAULT_SENDER": "no-reply@localhost",
    "MAIL_TIMEOUT": 10,
    # Flask-Mail skips sending whenever TESTING is on; the portal's tests read real mail.
    "MAIL_SUPPRESS_SEND": False,
    # Links in mail are built from this, never from the request's Host header; passkeys
    # take their origin and (unless PORTAL_WEBAUTHN_RP_ID is set) their RP ID from it.
    "PORTAL_BASE_URL": None,
    "PORTAL_WEBAUTHN_RP_ID": None,
    # SMS gateway: "console" (log) or "http" (POST JSON with a bearer token).
    "PORTAL_SMS_BACKEND": "console",
    "PORTAL_SMS_GATEWAY_URL": None,
    "PORTAL_SMS_GATEWAY_TOKEN": None,
    "PORTAL_SMS_TIMEOUT": 5,
    "PORTAL_SMS_COUNTRIES": ["JP"],
    "PORTAL_SMS_DAILY_LIMIT": 1000,
    "PORTAL_SMS_MEMBER_DAILY_LIMIT": 10,
    "PORTAL_EMAIL_MEMBER_DAILY_LIMIT": 20,
    # One-time codes by email/SMS (issue "Email and SMS codes")
    "PORTAL_OTP_SECONDS": 10 * 60,
    "PORTAL_OTP_MAX_TRIES": 5,
    "PORTAL_OTP_RESEND_SECONDS": 60,  # the token lives as long as the session
    "BABEL_DEFAULT_LOCALE": "ja",
    "BABEL_DEFAULT_TIMEZONE": "Asia/Tokyo",
}


class ConfigError(RuntimeError):
    """Raised at start-up for a missing or malformed setting; the message names it."""


def parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be one of 1/true/yes or 0/false/no, not {raw!r}")


def parse_int(name: str, raw: str, minimum: int = 0) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {value}")
    return value


def parse_port(name: str, raw: str) -> int:
    value = parse_int(name, raw, minimum=1)
    if value > 65535:
        raise ConfigError(f"{name} must be a port number (1-65535), not {value}")
    return value


def parse_str(name: str, raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ConfigError(f"{name} is set but empty")
    return value


def parse_list(name: str, raw: str) -> list[str]:
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items:
        raise ConfigError(f"{name} is set but lists nothing")
    return items


def parse_sms_backend(name: str, raw: str) -> str:
    value = raw.strip().lower()
    if value not in {"console", "http"}:
        raise ConfigError(f"{name} must be 'console' or 'http', not {raw!r}")
    return value


def parse_countries(name: str, raw: str) -> list[str]:
    items = [item.upper() for item in parse_list(name, raw)]
    for item in items:
        if len(item) != 2 or not item.isalpha() or not item.isascii():
            raise ConfigError(f"{name} must list ISO country codes such as JP, not {item!r}")
    return items


def parse_base_url(name: str, raw: str) -> str:
    value = parse_str(name, raw).rstrip("/")
    if not (value.startswith("https://") or value.startswith("http://")):
        raise ConfigError(f"{name} must start with https:// or http://, not {raw!r}")
    return value


def parse_rp_id(name: str, raw: str) -> str:
    value = parse_str(name, raw).lower().rstrip(".")
    if "/" in value or ":" in value or " " in value:
        raise ConfigError(f"{name} must be a domain such as example.com, not {raw!r}")
    return value


def rp_id_problem(rp_id: str | None, base_url: str, *, secure_only: bool = True) -> str | None:
    """Why passkeys cannot work with this RP ID and base URL, or None. The RP ID must be
    the base URL's host or a parent domain of it, and never an IP address; browsers
    allow WebAuthn only over https://, or http:// on localhost."""
    import ipaddress
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    rp = rp_id or host
    try:
        ipaddress.ip_address(rp)
        return (
            f"the passkey RP ID cannot be an IP address ({rp}); open the portal at a name, "
            "for example http://localhost:PORT/ in development"
        )
    except ValueError:
        pass
    if host != rp and not host.endswith("." + rp):
        return f"PORTAL_WEBAUTHN_RP_ID {rp!r} is neither {host!r} nor a parent domain of it"
    local = host == "localhost" or host.endswith(".localhost")
    if secure_only and parts.scheme != "https" and not local:
        return "passkeys need https:// (or http://localhost in development)"
    return None


def parse_timezone(name: str, raw: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    value = parse_str(name, raw)
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{name} must be a time zone such as Asia/Tokyo, not {raw!r}") from None
    return value


def parse_log_format(name: str, raw: str) -> str:
    value = raw.strip().lower()
    if value not in {"text", "json"}:
        raise ConfigError(f"{name} must be 'text' or 'json', not {raw!r}")
    return value


def parse_env_name(name: str, raw: str) -> str:
    value = raw.strip().lower()
    if value not in {"development", "production"}:
        raise ConfigError(f"{name} must be 'development' or 'production', not {raw!r}")
    return value


def parse_database_url(name: str, raw: str) -> str:
    value = parse_str(name, raw)
    # Heroku-style URLs name a dialect SQLAlchemy 2 no longer accepts.
    for prefix in ("postgres://", "postgresql://"):
        if value.startswith(prefix):
            # psycopg 3 is the driver the portal ships with; name it explicitly.
            value = "postgresql+psycopg://" + value[len(prefix) :]
    return value


def parse_redis_url(name: str, raw: str) -> str:
    value = parse_str(name, raw)
    if not value.startswith(("redis://", "rediss://", "unix://", "redis+unix://")):
        raise ConfigError(f"{name} must start with redis://, rediss:// or unix://, not {raw!r}")
    return value


def parse_limits(name: str, raw: str) -> str:
    """Rules in limits' notation, e.g. ``20 per minute;200 per hour``."""
    from limits import parse_many

    value = parse_str(name, raw)
    try:
        parse_many(value)
    except ValueError:
        raise ConfigError(
            f"{name} must be rate limits such as '20 per minute;200 per hour', not {raw!r}"
        ) from None
    return value


def parse_score(name: str, raw: str) -> int:
    value = parse_int(name, raw)
    if value > 4:
        raise ConfigError(f"{name} must be a zxcvbn score from 0 to 4, not {value}")
    return value


def int_at_least(minimum: int) -> Callable[[str, str], int]:
    return lambda name, raw: parse_int(name, raw, minimum)


# environment variable -> (config key, parser)
ENVIRONMENT: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "PORTAL_ENV": ("PORTAL_ENV", parse_env_name),
    "SECRET_KEY": ("SECRET_KEY", parse_str),
    "DATABASE_URL": ("SQLALCHEMY_DATABASE_URI", parse_database_url),
    "PORTAL_ENCRYPTION_KEYS": ("PORTAL_ENCRYPTION_KEYS", parse_list),
    "PORTAL_HMAC_KEY": ("PORTAL_HMAC_KEY", parse_str),
    "PORTAL_ISSUER": ("PORTAL_ISSUER", parse_str),
    "PORTAL_HTTPS": ("PORTAL_HTTPS", parse_bool),
    "PORTAL_SESSION_HOURS": ("PORTAL_SESSION_HOURS", int_at_least(1)),
    "PORTAL_IDLE_MINUTES": ("PORTAL_IDLE_MINUTES", int_at_least(1)),
    "PORTAL_PASSWORD_MIN_SCORE": ("PORTAL_PASSWORD_MIN_SCORE", parse_score),
    "PORTAL_INVITE_DAYS": ("PORTAL_INVITE_DAYS", int_at_least(1)),
    "REDIS_URL": ("REDIS_URL", parse_redis_url),
    "PORTAL_TIMEZONE": ("BABEL_DEFAULT_TIMEZONE", parse_timezone),
    "PORTAL_PROXY_COUNT": ("PORTAL_PROXY_COUNT", int_at_least(0)),
    "PORTAL_LOG_FORMAT": ("PORTAL_LOG_FORMAT", parse_log_format),
    "PORTAL_RATELIMIT": ("RATELIMIT_ENABLED", parse_bool),
    "MAX_CONTENT_LENGTH": ("MAX_CONTENT_LENGTH", int_at_least(1024)),
    "MAIL_SERVER": ("MAIL_SERVER", parse_str),
    "MAIL_PORT": ("MAIL_PORT", int_at_least(1)),
    "MAIL_USE_TLS": ("MAIL_USE_TLS", parse_bool),
    "MAIL_USE_SSL": ("MAIL_USE_SSL", parse_bool),
    "MAIL_USERNAME": ("MAIL_USERNAME", parse_str),
    "MAIL_PASSWORD": ("MAIL_PASSWORD", parse_str),
    "MAIL_DEFAULT_SENDER": ("MAIL_DEFAULT_SENDER", parse_str),
    "MAIL_TIMEOUT": ("MAIL_TIMEOUT", int_at_least(1)),
    "PORTAL_BASE_URL": ("PORTAL_BASE_URL", parse_base_url),
    "PORTAL_WEBAUTHN_RP_ID": ("PORTAL_WEBAUTHN_RP_ID", parse_rp_id),
    "PORT": ("PORT", parse_port),
    "PORTAL_SMS_BACKEND": ("PORTAL_SMS_BACKEND", parse_sms_backend),
    "PORTAL_SMS_GATEWAY_URL": ("PORTAL_SMS_GATEWAY_URL", parse_base_url),
    "PORTAL_SMS_GATEWAY_TOKEN": ("PORTAL_SMS_GATEWAY_TOKEN", parse_str),
    "PORTAL_SMS_TIMEOUT": ("PORTAL_SMS_TIMEOUT", int_at_least(1)),
    "PORTAL_SMS_COUNTRIES": ("PORTAL_SMS_COUNTRIES", parse_countries),
    "PORTAL_SMS_DAILY_LIMIT": ("PORTAL_SMS_DAILY_LIMIT", int_at_least(0)),
    "PORTAL_SMS_MEMBER_DAILY_LIMIT": ("PORTAL_SMS_MEMBER_DAILY_LIMIT", int_at_least(0)),
    "PORTAL_EMAIL_MEMBER_DAILY_LIMIT": ("PORTAL_EMAIL_MEMBER_DAILY_LIMIT", int_at_least(0)),
}
LIMITS = [key for key in DEFAULTS if key.startswith("PORTAL_LIMIT_")]
ENVIRONMENT.update({key: (key, parse_limits) for key in LIMITS})


def from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """Parse the variables that are set; unset ones keep their defaults."""
    values: dict[str, Any] = {}
    for variable, (key, parser) in ENVIRONMENT.items():
        raw = environ.get(variable)
        if raw is not None:
            values[key] = parser(variable, raw)
    return values


def development_secret_key(instance_path: str) -> str:
    """One key generated once into the instance folder, so restarts and workers agree.

    The key file is linked into place atomically: when several workers start at once,
    exactly one link succeeds and every worker reads the winner's key.
    """
    folder = Path(instance_path)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "secret_key"
    if not target.exists():
        tmp = folder / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
        try:
            os.link(tmp, target)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return target.read_text().strip()


def limits_storage_uri(redis_url: str | None) -> str:
    """The rate-limit storage for REDIS_URL: redis-py's ``unix://`` socket URLs are
    ``redis+unix://`` to the limits library."""
    if not redis_url:
        return "memory://"
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url[len("unix://") :]
    return redis_url


def finalise(config: dict[str, Any], instance_path: str) -> None:
    """Fill derived values and refuse to start with an unsafe configuration."""
    if not config.get("SECRET_KEY"):
        if config["PORTAL_ENV"] == "development" or config.get("TESTING"):
            config["SECRET_KEY"] = development_secret_key(instance_path)
        else:
            raise ConfigError(
                "SECRET_KEY is not set. Set it to a long random value "
                "(python -c 'import secrets; print(secrets.token_urlsafe(48))'), "
                "or set PORTAL_ENV=development on a developer machine."
            )
    for key in ("SECRET_KEY", "PORTAL_HMAC_KEY"):
        if config.get(key) is not None and len(config[key]) < 32:
            raise ConfigError(f"{key} is too short: use at least 32 random characters")
    if not config.get("SQLALCHEMY_DATABASE_URI"):
        Path(instance_path).mkdir(parents=True, exist_ok=True)
        config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + str(Path(instance_path) / "portal.db")

    production = config["PORTAL_ENV"] == "production" and not config.get("TESTING")
    if config.get("MAIL_SERVER") and production and not config.get("PORTAL_BASE_URL"):
        raise ConfigError(
            "PORTAL_BASE_URL is not set: mail links need the portal's public address "
            "(for example https://portal.example.com)"
        )
    if not config.get("PORTAL_BASE_URL"):
        # `make run` serves on 127.0.0.1:$PORT, opened as localhost: a passkey's RP ID
        # must be a name, never an IP address.
        config["PORTAL_BASE_URL"] = f"http://localhost:{config['PORT']}"
    if config.get("PORTAL_WEBAUTHN_RP_ID"):
        # Set on purpose: a value that cannot work is a mistake to report at start-up.
        base = config["PORTAL_BASE_URL"]
        if problem := rp_id_problem(config["PORTAL_WEBAUTHN_RP_ID"], base, secure_only=False):
            raise ConfigError(problem)
    if config["PORTAL_SMS_BACKEND"] == "http" and not (
        config.get("PORTAL_SMS_GATEWAY_URL") and config.get("PORTAL_SMS_GATEWAY_TOKEN")
    ):
        raise ConfigError(
            "PORTAL_SMS_BACKEND=http needs PORTAL_SMS_GATEWAY_URL and PORTAL_SMS_GATEWAY_TOKEN"
        )
    # One size rule for every body: Werkzeug's separate 500 kB cap on form fields
    # would refuse a long member page that MAX_CONTENT_LENGTH allows.
    config["MAX_FORM_MEMORY_SIZE"] = config["MAX_CONTENT_LENGTH"]
    if not config.get("RATELIMIT_STORAGE_URI"):
        config["RATELIMIT_STORAGE_URI"] = limits_storage_uri(config.get("REDIS_URL"))

    https = bool(config["PORTAL_HTTPS"])
    config["SESSION_COOKIE_SECURE"] = https
    config["SESSION_COOKIE_HTTPONLY"] = True
    config["SESSION_COOKIE_SAMESITE"] = "Lax"
    # __Host- cookies must be Secure, host-only and Path=/; only possible behind TLS.
    config["SESSION_COOKIE_NAME"] = "__Host-portal_session" if https else "portal_session"
    config["PREFERRED_URL_SCHEME"] = "https" if https else "http"
    config["REMEMBER_COOKIE_SECURE"] = https
    # The cookie's lifetime runs from sign-in, not from the last request: a session
    # cannot be kept alive for ever (the server also checks ``auth_at``), and a request
    # answered for a stale cookie never writes that cookie back over a newer one.
    config["SESSION_REFRESH_EACH_REQUEST"] = False
    config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=int(config["PORTAL_SESSION_HOURS"]))
