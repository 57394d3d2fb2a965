"""The admin API's errors: JSON with a stable code on every /api/ path, never an HTML page.

``{"error": {"code": "token_expired", "message": "The token has expired."}}``: the code is
for programs (it never changes), the message for the people who read their logs
(English, like the codes). portal/errors.py hands every error on an /api/ path here,
routing errors (404, 405) and server errors (500) included, which no blueprint handler
would see.
"""

from __future__ import annotations

from flask import Response, jsonify, request
from werkzeug.exceptions import HTTPException

PREFIX = "/api/"

# The code and message of a status when the view gave none of its own.
DEFAULTS = {
    400: ("bad_request", "The request could not be understood."),
    401: ("unauthorized", "A valid API token is needed."),
    403: ("forbidden", "The token may not do this."),
    404: ("not_found", "There is nothing at this address."),
    405: ("method_not_allowed", "This method is not allowed here."),
    409: ("conflict", "The request conflicts with the current state."),
    413: ("too_large", "The request is too large."),
    422: ("invalid_parameter", "A parameter has an invalid value."),
    429: ("rate_limited", "Too many requests: wait before trying again."),
    500: ("internal_error", "The server could not complete the request."),
    503: ("unavailable", "The service is unavailable: try again later."),
}
# Headers an error keeps from its exception (a 405's Allow, a 429's Retry-After).
KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


class ApiError(HTTPException):
    """An API answer other than success, with its stable code."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(description=message)
        self.code = status
        self.api_code = code
        self.extra_headers = headers or {}

    def get_headers(self, environ=None, scope=None) -> list[tuple[str, str]]:
        return [*super().get_headers(environ, scope), *self.extra_headers.items()]


def wanted() -> bool:
    """Whether the current request is the API's (its answers are JSON, whatever failed)."""
    return request.path.startswith(PREFIX)


def response(exc: HTTPException | None, status: int | None = None) -> Response:
    status = status or (exc.code if exc is not None and exc.code else 500)
    code, message = DEFAULTS.get(status, ("error", "The request failed."))
    if isinstance(exc, ApiError):
        code, message = exc.api_code, exc.description or message
    answer = jsonify({"error": {"code": code, "message": message}})
    answer.status_code = status
    if exc is not None:
        for name, value in exc.get_headers():
            if name in KEPT_HEADERS:
                answer.headers[name] = value
    return answer
