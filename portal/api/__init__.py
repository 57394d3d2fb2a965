"""The admin API (``/api/v1/``, issue 14): what the help desk's and the HR system's
programs ask without a browser: who has set up 二段階認証, a member's 2FA status, the
audit log; and with a ``write`` token, the reset (無効化) and a password link.

- A token in ``Authorization: Bearer pt_…`` (made on /admin/api-tokens) is the only
  credential: no session cookie is read or set on /api/ (the session is a null one
  there), so a signed-in operator's browser cannot be made to call it, and there is no
  CSRF token to ask for. No CORS headers either: other sites' pages cannot read it.
- Every call with a valid token is audited once, with the token's name (never the
  token): the action's own event for a change (admin.reset_2fa…), else api.request with
  the answer's status. A call refused for want of a valid token is audited as
  api.refused, at most PORTAL_LIMIT_API_REFUSED times per client address.
- Calls are rate limited per token (PORTAL_LIMIT_API); errors are JSON with stable codes
  (api/errors.py); the OpenAPI 3.1 document is at /api/v1/openapi.json.
"""

from __future__ import annotations

from flask import Blueprint, Flask, g, request
from flask.sessions import SecureCookieSessionInterface

from .. import api_tokens, audit, sessions, throttle
from ..extensions import csrf, db
from ..models import ApiToken
from .errors import PREFIX, ApiError

bp = Blueprint("api", __name__, url_prefix="/api/v1")

UNAUTHENTICATED = {"api.openapi"}  # the description of the API is public
REFUSALS = {
    "token_missing": "No API token: send it as 'Authorization: Bearer <token>'.",
    "token_malformed": "The Authorization header does not hold a well-formed API token.",
    "token_invalid": "The API token is not known.",
    "token_expired": "The API token has expired.",
    "token_revoked": "The API token has been revoked.",
}


class NoSessionOnApi(SecureCookieSessionInterface):
    """The app's cookie session everywhere but on /api/, where every request gets a
    null session: the cookie is not read, and nothing can be stored or sent back."""

    def open_session(self, app, request):
        if request.path.startswith(PREFIX):
            return self.make_null_session(app)
        return super().open_session(app, request)


def init_app(app: Flask) -> None:
    app.session_interface = NoSessionOnApi()
    csrf.exempt(bp)
    app.register_blueprint(bp)


def actor_label(token: ApiToken) -> str:
    """Who acted, in the audit log: the token, by name."""
    return f"api:{token.name}"[:64]


def record(event: str, by: ApiToken | None, **detail) -> None:
    """Audit this call, made with the token ``by`` (commits, with whatever the call left
    pending). The token's id goes with its name: a name can be used again once its
    token is revoked or expired, and the log must still say which token acted."""
    if by is not None:
        detail.setdefault("token_id", by.id)
    audit.record(
        event,
        actor_label=actor_label(by) if by is not None else "",
        ip=request.remote_addr or "",
        user_agent=request.user_agent.string or "",
        call=f"{request.method} {request.path}",
        **detail,
    )
    g.api_audited = True


def _presented() -> tuple[str | None, str]:
    """The token the request presents, or the reason it presents none usable."""
    header = request.headers.get("Authorization")
    if header is None:
        return None, "token_missing"
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not api_tokens.well_formed(token.strip()):
        return None, "token_malformed"
    return token.strip(), ""


def _refuse(reason: str, token: ApiToken | None) -> None:
    wait = throttle.per_address(
        "PORTAL_LIMIT_API_REFUSED", "api-refused", event="request.throttled"
    )
    if wait:
        raise ApiError(
            429,
            "rate_limited",
            "Too many refused calls from this address.",
            {"Retry-After": str(wait)},
        )
    detail = {"token": token.name, "token_id": token.id} if token is not None else {}
    record("api.refused", None, reason=reason, **detail)
    # RFC 6750: a request without credentials gets the scheme alone, no error code.
    challenge = 'Bearer realm="api"'
    if reason != "token_missing":
        challenge += ', error="invalid_token"'
    raise ApiError(401, reason, REFUSALS[reason], {"WWW-Authenticate": challenge})


@bp.before_request
def authenticate() -> None:
    if request.method == "OPTIONS" or request.endpoint in UNAUTHENTICATED:
        return
    now = sessions.now()
    presented, reason = _presented()
    if presented is None:
        _refuse(reason, None)
    token = api_tokens.lookup(presented)
    if token is None:
        _refuse("token_invalid", None)
    state = api_tokens.state(token, now)
    if state != api_tokens.ACTIVE:
        _refuse(f"token_{state}", token)
    wait = throttle.hit("PORTAL_LIMIT_API", "api", str(token.id))
    if wait:
        if throttle.first_refusal("api", str(token.id)):
            record("request.throttled", token, bucket="api", token=token.name)
        raise ApiError(
            429, "rate_limited", "Too many calls with this token.", {"Retry-After": str(wait)}
        )
    api_tokens.touch(token, now)
    g.api_token = token


def current_token() -> ApiToken:
    return g.api_token


def require_write() -> ApiToken:
    token = current_token()
    if token.scope != "write":
        raise ApiError(403, "insufficient_scope", "This needs a token with the write scope.")
    return token


@bp.after_request
def audit_the_call(response):
    """One audit row per call with a valid token: api.request, unless the view recorded
    its action's own event."""
    token = g.get("api_token")
    if token is not None and not g.get("api_audited"):
        if response.status_code >= 500:
            db.session.rollback()  # whatever failed is not committed with the audit row
        record("api.request", token, token=token.name, status=response.status_code)
    return response


from . import views  # noqa: E402,F401
