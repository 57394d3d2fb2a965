"""Member pages as members see them: /pages/<slug>, signed-in members only.

There are no public pages: a visitor is sent to sign in (a pending sign-in to its second
step) by flask_login's ``login_required`` before anything is looked up, so keywords are
only ever filled in for a signed-in member, with that member's own values."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from . import pages

bp = Blueprint("pages", __name__, url_prefix="/pages")


@bp.route("/<slug>")
@login_required
def show(slug: str) -> ResponseReturnValue:
    page = pages.find(slug)
    if page is None:
        abort(404)
    body = pages.render_keywords(
        page.body, current_user._get_current_object(), url_for("settings.index")
    )
    return render_template("pages/page.html", page=page, body=body)
