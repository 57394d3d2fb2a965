"""One template, two renderings: the full page, or its partial for an htmx request."""

from __future__ import annotations

from flask import Response, make_response, redirect, render_template, request
from werkzeug.urls import iri_to_uri


def is_htmx() -> bool:
    # A boosted request wants the whole page.
    return bool(request.headers.get("HX-Request")) and not request.headers.get("HX-Boosted")


def render(page: str, partial: str, status: int = 200, **context) -> Response:
    response = make_response(render_template(partial if is_htmx() else page, **context), status)
    response.vary.add("HX-Request")  # same URL, two bodies: tell caches
    return response


def redirect_to(url: str) -> Response:
    """A 302, or for htmx a 200 with ``HX-Redirect`` so the whole page navigates instead
    of the target page being swapped into a form or dialog.

    The header is encoded as a URI, as Werkzeug does for ``Location``: a raw non-ASCII
    ``next`` makes gunicorn drop the whole response after the code was accepted."""
    if is_htmx():
        response = make_response("", 200)
        response.headers["HX-Redirect"] = iri_to_uri(url)
        return response
    return redirect(url)


def no_store(response: Response) -> Response:
    """For responses that show a secret, a QR code or recovery codes."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response
