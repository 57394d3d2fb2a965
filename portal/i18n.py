"""Languages and time zones: which ones the portal speaks, a member's own, and dates
written for a reader.

Japanese is the source language (the message ids are the Japanese texts) and the
default; English comes from ``portal/translations/en``, compiled at install. Without a
compiled catalogue the portal simply stays Japanese, and English is not offered.
No request objects here: the selectors that read the request live in
``portal/web/language.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from babel import dates as babel_dates
from flask import current_app
from flask_babel import force_locale, get_locale, get_timezone
from flask_babel import lazy_gettext as _l

from .models import Member

DEFAULT_LANGUAGE = "ja"
# Each language named in itself: the switch must be readable by whoever needs it.
LANGUAGES = {"ja": "日本語", "en": "English"}
TRANSLATIONS = os.path.join(os.path.dirname(__file__), "translations")

# Dates as readers of each language write them. Japanese keeps the forms the pages
# have always shown; CSV columns stay ISO-like in every language (machines read them).
FORMATS = {
    "ja": {
        "minute": "yyyy/MM/dd HH:mm",
        "second": "yyyy/MM/dd HH:mm:ss",
        "day": "yyyy/MM/dd",
        "mail": "yyyy年M月d日 HH:mm",
        "time": "HH:mm",
        "month_day_time": "M月d日 HH:mm",
    },
    "en": {
        "minute": "MMM d, y, HH:mm",
        "second": "MMM d, y, HH:mm:ss",
        "day": "MMM d, y",
        "mail": "MMMM d, y 'at' HH:mm",
        "time": "HH:mm",
        "month_day_time": "MMM d, HH:mm",
    },
}

LANGUAGE_ERROR = _l("表示言語は一覧から選んでください。")
TIMEZONE_ERROR = _l("タイムゾーンは一覧から選んでください（例：Asia/Tokyo）。")


def compiled(language: str) -> bool:
    """Whether the language's catalogue was compiled (the source language needs none)."""
    if language == DEFAULT_LANGUAGE:
        return True
    return os.path.exists(os.path.join(TRANSLATIONS, language, "LC_MESSAGES", "messages.mo"))


def available() -> dict[str, str]:
    """The languages that can be shown now, each named in itself."""
    return {code: name for code, name in LANGUAGES.items() if compiled(code)}


def check_language(value: str | None) -> str:
    """A language code from a form or cookie, or :class:`ValueError`."""
    code = (value or "").strip().lower()
    if code not in LANGUAGES:
        raise ValueError(str(LANGUAGE_ERROR))
    return code


@lru_cache(maxsize=1)
def zone_names() -> tuple[str, ...]:
    """Every IANA zone the system knows, sorted (the choices on the member-info page)."""
    return tuple(sorted(name for name in available_timezones() if "/" in name or name == "UTC"))


def check_timezone(value: str | None) -> str:
    """An IANA zone name (``Asia/Tokyo``), or :class:`ValueError`. Only names from the
    list: no file paths, no ``localtime``."""
    name = (value or "").strip()
    if name not in zone_names():
        raise ValueError(str(TIMEZONE_ERROR))
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(str(TIMEZONE_ERROR)) from None
    return name


def member_language(member: Member) -> str:
    """The language mail and SMS to the member use: their stored choice, else the default."""
    stored = member.locale
    return stored if stored in LANGUAGES and compiled(stored) else DEFAULT_LANGUAGE


def shell_language(environ: Mapping[str, str] = os.environ) -> str:
    """The language of the operator's shell, for the command-line tools: the first
    language ``LANGUAGE`` lists that the portal speaks, else the one named by the first
    of ``LC_ALL``, ``LC_MESSAGES`` and ``LANG`` that is set (``en_US.UTF-8``: English);
    the default when that names none the portal speaks (``C``, ``POSIX``, unset)."""
    for entry in environ.get("LANGUAGE", "").split(":"):
        if (code := _language_of(entry)) is not None:
            return code
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        if value := environ.get(name):
            return _language_of(value) or DEFAULT_LANGUAGE
    return DEFAULT_LANGUAGE


def _language_of(locale_name: str) -> str | None:
    code = locale_name.split(".")[0].split("@")[0].split("_")[0].split("-")[0].lower()
    return code if code in available() else None


def site_timezone() -> str:
    return current_app.config["BABEL_DEFAULT_TIMEZONE"]


def member_timezone(member: Member) -> str:
    """The member's zone, else the site's (``PORTAL_TIMEZONE``)."""
    stored = member.timezone
    return stored if stored and stored in zone_names() else site_timezone()


@contextmanager
def speaking_to(member: Member) -> Iterator[str]:
    """Render mail and SMS for ``member``: their language while the block runs (the
    request's own language is back afterwards). Yields the language code."""
    language = member_language(member)
    with force_locale(language):
        yield language


def local_time(
    value: datetime | date | None, style: str = "minute", zone: str | None = None
) -> str:
    """``value`` written for the current language, in ``zone`` (default: the reader's
    zone for this request, else the site's). ``style`` is a key of :data:`FORMATS`."""
    if value is None:
        return ""
    locale = get_locale()
    language = locale.language if locale is not None else DEFAULT_LANGUAGE
    pattern = FORMATS.get(language, FORMATS[DEFAULT_LANGUAGE])[style]
    tzinfo = ZoneInfo(zone) if zone else (get_timezone() or ZoneInfo(site_timezone()))
    if not isinstance(value, datetime):
        return babel_dates.format_date(value, pattern, locale=locale or DEFAULT_LANGUAGE)
    return babel_dates.format_datetime(
        value, pattern, tzinfo=tzinfo, locale=locale or DEFAULT_LANGUAGE
    )
