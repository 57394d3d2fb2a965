"""The operator's member pages that are listed on マイページ and in the header menu.

Templates call ``listed_pages()``; the answer is looked up once per request (one
query) and only for a signed-in member. A member held on the set-up page by a
``required`` policy is shown none: until a method is set up, nothing else is offered.
"""

from __future__ import annotations

from flask import Flask, g, request
from flask_login import current_user

from .. import pages, sessions
from ..models import MemberPage
from .enforcement import OPEN_WHILE_ENROLLING, enrolment


def listed_pages() -> list[MemberPage]:
    if not current_user.is_authenticated:
        return []
    if "listed_pages" not in g:
        g.listed_pages = [] if _held_on_set_up() else pages.listed_pages()
    return g.listed_pages


def _held_on_set_up() -> bool:
    # Enforcement already sent a held member from every other page to set-up, so only
    # what it lets through (the set-up pages, sign-in pages, errors) needs the check.
    endpoint = request.endpoint
    let_through = (
        endpoint is None or endpoint in OPEN_WHILE_ENROLLING or endpoint.startswith("auth.")
    )
    return let_through and enrolment(current_user._get_current_object()).forced(sessions.now())


def init_app(app: Flask) -> None:
    @app.context_processor
    def menu_pages() -> dict:
        return {"listed_pages": listed_pages}
