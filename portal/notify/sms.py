"""SMS through a pluggable backend: ``console`` (the log, for development) or ``http``.

The ``http`` backend POSTs ``{"to": "+81…", "text": "…"}`` as JSON with a bearer token,
once, with ``PORTAL_SMS_TIMEOUT`` seconds per socket operation. It uses the standard
library so production needs no extra dependency, and it does not follow redirects: a
redirect would either drop the POST body or carry the bearer token to another host.
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from flask import current_app

from .errors import DeliveryError, may_log_content
from .masking import E164, mask_phone

log = logging.getLogger("portal.notify")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # the 3xx then surfaces as an HTTPError, i.e. a failed send


_opener = urllib.request.build_opener(_NoRedirect)


def _fail(to: str, cause: str) -> DeliveryError:
    log.warning("SMS to %s not sent: %s", mask_phone(to), cause)
    return DeliveryError(f"SMS to {mask_phone(to)} not sent: {cause}")


def _post(url: str, token: str, to: str, text: str, timeout: float) -> None:
    if urlsplit(url).scheme not in {"http", "https"}:
        raise _fail(to, "PORTAL_SMS_GATEWAY_URL is not an http(s) URL")
    request = urllib.request.Request(  # noqa: S310 (scheme checked above)
        url,
        data=json.dumps({"to": to, "text": text}).encode("utf-8"),
        method="POST",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        },
    )
    try:
        with _opener.open(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:  # non-2xx; the body may echo the text: unread
        exc.close()
        raise _fail(to, f"gateway answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise _fail(to, f"{type(exc).__name__}: {reason}") from exc
    if not 200 <= status < 300:  # 1xx never gets here; kept for clarity
        raise _fail(to, f"gateway answered HTTP {status}")


def send_sms(to: str, text: str) -> None:
    """Send one SMS to an E.164 number (``+819012345678``) through PORTAL_SMS_BACKEND.

    The console backend logs the text on a developer machine or in tests only; in
    production it refuses, as codes in a production log would be readable by anyone with
    the log. Raises :class:`DeliveryError` when the SMS was not handed over.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    config = app.config
    if not E164.fullmatch(to):
        raise _fail(to, "the destination is not an E.164 number")
    backend = config.get("PORTAL_SMS_BACKEND", "console")
    if backend == "http":
        _post(
            config["PORTAL_SMS_GATEWAY_URL"],
            config["PORTAL_SMS_GATEWAY_TOKEN"],
            to,
            text,
            float(config.get("PORTAL_SMS_TIMEOUT") or 5),
        )
    elif backend == "console":
        if not may_log_content(app):
            raise _fail(to, "PORTAL_SMS_BACKEND=console does not send SMS in production")
        log.warning("SMS (console backend) To: %s Text: %s", to, text)
    else:
        raise _fail(to, f"unknown PORTAL_SMS_BACKEND {backend!r}")
