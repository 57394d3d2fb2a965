"""The policy as this request sees it: read from the database at most once per request
(kept in ``flask.g``; with the member, when the request has one), never cached across
requests, so a change made through one worker or the CLI is seen by every worker and
host on its next request."""

from __future__ import annotations

from flask import Flask, current_app, g, request
from flask_babel import gettext as _
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from .. import pages, sessions
from ..config import DEFAULTS, rp_id_problem
from ..extensions import db
from ..models import Member, Policy
from ..twofactor import policy as rules


def current() -> Policy:
    if sessions.POLICY_KEY not in g:  # else read with the member (sessions._read_member)
        setattr(g, sessions.POLICY_KEY, rules.current(sessions.now()))
    return getattr(g, sessions.POLICY_KEY)


def issuer() -> str:
    """The name in authenticator apps, page titles and mail. The built-in default name
    is said in the reader's language; a name the operator chose is shown as chosen."""
    configured = current().issuer or current_app.config["PORTAL_ISSUER"]
    if configured == DEFAULTS["PORTAL_ISSUER"]:
        return _("会員ページ")
    return configured


def passkeys_possible() -> bool:
    """Whether the server's address allows passkeys at all: not an IP address, and
    https:// or http://localhost (PORTAL_BASE_URL, PORTAL_WEBAUTHN_RP_ID)."""
    config = current_app.config
    return rp_id_problem(config.get("PORTAL_WEBAUTHN_RP_ID"), config["PORTAL_BASE_URL"]) is None


def offered() -> tuple[str, ...]:
    """The methods the policy offers, less passkeys where they cannot work."""
    methods = rules.offered_methods(current())
    if "passkey" in methods and not passkeys_possible():
        methods = tuple(m for m in methods if m != "passkey")
    return methods


def network_mode() -> str | None:
    """ "skip", "always" or None for the client's address. The address is the socket's
    unless PORTAL_PROXY_COUNT trusted proxies say otherwise (ProxyFix), so a forged
    X-Forwarded-For header never reaches this."""
    return rules.network_mode(current(), request.remote_addr)


def spares_second_step(member: Member) -> bool:
    """Whether skips (trusted network, shared terminal, remembered device) may apply:
    never for operators."""
    return not member.is_operator


# Where members may land after sign-in: their own pages, never the admin area.
LANDING_BLUEPRINTS = {"main", "settings", "pages"}


def landing_exists(path: str) -> bool:
    """A local page a signed-in member can open with GET (a member page must exist)."""
    adapter = current_app.url_map.bind("localhost")
    try:
        endpoint, values = adapter.match(path.split("?", 1)[0], method="GET")
    except (HTTPException, RequestRedirect):
        return False
    if endpoint.split(".", 1)[0] not in LANDING_BLUEPRINTS:
        return False
    if endpoint == "pages.show":
        return pages.find(values["slug"]) is not None
    return True


def init_app(app: Flask) -> None:
    def site_name() -> str:
        """The issuer for page titles; an error page must render even when the
        database cannot be read (that may be the error)."""
        try:
            return issuer()
        except SQLAlchemyError:
            db.session.rollback()
            return current_app.config["PORTAL_ISSUER"]

    @app.context_processor
    def names() -> dict:
        return {"site_name": site_name}
