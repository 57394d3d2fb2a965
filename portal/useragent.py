"""A short, trustworthy label for a browser: "Chrome / Windows".

The User-Agent header is chosen by whoever sends the request. Printed raw in a security
notice, an intruder could write "ignore this, scheduled maintenance, see https://…"
into the owner's genuine mail. So only families from these lists are ever shown:
ua-parser's own results may echo attacker text (its generic bot rule captures up to 50
characters of the header), and an allow-list cannot carry a URL or a sentence.
"""

from __future__ import annotations

from functools import lru_cache

from flask_babel import gettext as _

BROWSERS = frozenset(
    {
        "Chrome",
        "Chrome Mobile",
        "Chrome Mobile iOS",
        "Chrome Mobile WebView",
        "Chromium",
        "HeadlessChrome",
        "Edge",
        "Edge Mobile",
        "Firefox",
        "Firefox Mobile",
        "Firefox iOS",
        "Safari",
        "Mobile Safari",
        "Mobile Safari UI/WKWebView",
        "Opera",
        "Opera Mobile",
        "Samsung Internet",
        "IE",
        "Yandex Browser",
        "UC Browser",
        "Vivaldi",
        "Brave",
        "LINE",
        "Line",
        "Facebook",
        "Instagram",
        "DuckDuckGo Mobile",
        "Electron",
    }
)
SYSTEMS = frozenset(
    {
        "Windows",
        "Mac OS X",
        "iOS",
        "iPadOS",
        "Android",
        "Linux",
        "Ubuntu",
        "Fedora",
        "Debian",
        "Chrome OS",
        "FreeBSD",
    }
)
# Stored in device labels and compared as is; readers see it in their language (shown()).
UNKNOWN_BROWSER = "不明なブラウザ"
MAX_HEADER = 1000  # longer headers are not parsed at all


@lru_cache(maxsize=512)
def describe(user_agent: str | None) -> str:
    """ "Chrome / Windows", "Firefox", or 不明なブラウザ; never text from the header."""
    if not user_agent or len(user_agent) > MAX_HEADER:
        return UNKNOWN_BROWSER
    from ua_parser import parse

    result = parse(user_agent)
    browser = result.user_agent.family if result.user_agent else None
    system = result.os.family if result.os else None
    browser = browser if browser in BROWSERS else None
    system = system if system in SYSTEMS else None
    if browser and system:
        return f"{browser} / {system}"
    return browser or (f"{UNKNOWN_BROWSER} / {system}" if system else UNKNOWN_BROWSER)


def shown(label: str) -> str:
    """A label from :func:`describe` (also a stored one) for the reader: the words for an
    unknown browser in their language; the families are names and stay as they are."""
    if UNKNOWN_BROWSER not in label:
        return label
    return label.replace(UNKNOWN_BROWSER, _("不明なブラウザ"))
