"""One id per request, in the ``X-Request-ID`` response header, the access log and the
application's log lines, so one request can be followed through all three.

The id a trusted proxy sends (``X-Request-ID``, e.g. nginx's ``$request_id``) is kept,
so the proxy's log shares it; "trusted" means ``PORTAL_PROXY_COUNT`` is above 0, the
same trust ``ProxyFix`` gives ``X-Forwarded-For``. Without a proxy, or when the value
is not a plain token (it is written into log lines), a random one is made.
"""

from __future__ import annotations

import re
import secrets

from flask import Flask, Response, current_app, g, has_request_context, request

HEADER = "X-Request-ID"
# Nothing that could end a log field or line: no spaces, quotes or control characters.
PLAIN = re.compile(r"[A-Za-z0-9._:+/=-]{1,128}")


def current() -> str | None:
    """This request's id (made on first use), or None outside a request."""
    if not has_request_context():
        return None
    if "request_id" not in g:
        g.request_id = _from_proxy() or secrets.token_hex(16)
    return g.request_id


def _from_proxy() -> str | None:
    if not current_app.config["PORTAL_PROXY_COUNT"]:
        return None
    sent = request.headers.get(HEADER, "")
    return sent if PLAIN.fullmatch(sent) else None


def init_app(app: Flask) -> None:
    @app.after_request
    def echo(response: Response) -> Response:
        response.headers[HEADER] = current()
        return response
