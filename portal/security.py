"""Security headers on every response.

Framing is forbidden everywhere, since the disable dialog is one click away from a
clickjacking attack. The CSP allows no inline script: htmx runs with eval off. Nothing
but static files may be cached.
"""

from __future__ import annotations

from flask import Flask, Response, request

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def init_app(app: Flask) -> None:
    https = app.config["PORTAL_HTTPS"]

    @app.after_request
    def add_headers(response: Response) -> Response:
        if request.endpoint != "static":
            # Every page is someone's: names, addresses, codes, CSRF tokens. Nothing
            # but the static files may sit in a browser's or a proxy's cache.
            response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        response.headers.setdefault(
            "Permissions-Policy", "camera=(), microphone=(), geolocation=()"
        )
        if https:
            response.headers.setdefault(
                "Strict-Transport-Security", "max-age=31536000; includeSubDomains"
            )
        return response
