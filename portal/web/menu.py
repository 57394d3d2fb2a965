"""The operator's member pages and open forms listed on マイページ and in the header menu.

Templates call ``listed_pages()``, only for a signed-in member. Each worker keeps the
list (slugs and titles) until the pages' version moves on: it is kept in the policy row,
which every signed-in request reads with the member, and every change to a page moves
it in the same transaction (models.py), so a change shows on every worker and host at
their next request without a query per page view. A member held on the set-up page by
a ``required`` policy is shown none: until a method is set up, nothing else is offered.
"""

from __future__ import annotations

from typing import NamedTuple

from flask import Flask, current_app, g, request, url_for
from flask_login import current_user

from .. import member_forms, pages, sessions
from . import policy
from .enforcement import OPEN_WHILE_ENROLLING, enrolment


class Listed(NamedTuple):
    slug: str
    title: str
    url: str
    is_form: bool = False


_KEPT = "portal.listed_pages"  # app.extensions: (pages_version, [Listed, ...])


def listed_pages() -> list[Listed]:
    if not current_user.is_authenticated:
        return []
    if "listed_pages" not in g:
        g.listed_pages = [] if _held_on_set_up() else _kept_listed()
    return g.listed_pages


def _kept_listed() -> list[Listed]:
    version = policy.current().pages_version
    kept = current_app.extensions.get(_KEPT)
    if kept is None or kept[0] != version:
        entries = [
            (p.menu_order, p.title, Listed(p.slug, p.title, url_for("pages.show", slug=p.slug)))
            for p in pages.listed_pages()
        ] + [
            (
                f.menu_order,
                f.title,
                Listed(f.slug, f.title, url_for("forms.show", slug=f.slug), is_form=True),
            )
            for f in member_forms.listed_forms()
        ]
        entries.sort(key=lambda entry: entry[:2])
        kept = (version, [listed for _order, _title, listed in entries])
        current_app.extensions[_KEPT] = kept
    return kept[1]


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
