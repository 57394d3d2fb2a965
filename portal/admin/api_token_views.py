"""APIトークン: the tokens other systems (the help desk's, HR's) use for the admin API
(``/api/v1/``, issue 14). An operator makes one with a name, a scope and an expiry and
sees it once; the list shows who made each, when it was last used and whether it still
works; revoking one stops it at once. Making and revoking need a recent second step,
like every admin change, and are audited."""

from __future__ import annotations

from datetime import timedelta

from flask import abort, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from .. import api_tokens, audit, sessions
from ..models import ApiToken
from ..texts import API_SCOPES
from ..web.dialogs import dialog, done
from ..web.forms import ActionForm
from ..web.htmx import no_store
from . import bp
from .common import ask_for_second_step, stale_operator
from .forms import ApiTokenForm


def _token_or_404(token_id: int) -> ApiToken:
    found = api_tokens.get(token_id)
    if found is None:
        abort(404)
    return found


@bp.route("/api-tokens")
def api_tokens_list() -> ResponseReturnValue:
    now = sessions.now()
    tokens = [(t, api_tokens.state(t, now)) for t in api_tokens.listed()]
    return render_template("admin/api_tokens.html", tokens=tokens, scopes=API_SCOPES)


@bp.route("/api-tokens/new", methods=["GET", "POST"])
def api_token_new() -> ResponseReturnValue:
    here = url_for("admin.api_token_new")
    back = url_for("admin.api_tokens_list")
    if stale_operator():
        return ask_for_second_step(here)
    form = ApiTokenForm()
    if form.validate_on_submit():
        now = sessions.now()
        days = int(form.expires.data) if form.expires.data else None
        try:
            token, row = api_tokens.create(
                form.name.data,
                form.scope.data,
                by=current_user.login_id,
                now=now,
                expires_at=now + timedelta(days=days) if days else None,
                commit=False,
            )
        except api_tokens.NameTaken:
            form.name.errors.append(
                _("この名前のトークンはすでに使われています。別の名前にしてください。")
            )
        else:
            audit.record_request(  # commits the token with its audit row
                "api.token_created",
                token=row.name,
                scope=row.scope,
                expires_at=row.expires_at,
            )
            return no_store(
                dialog(
                    "admin/_api_token_shown.html",
                    token=token,
                    row=row,
                    scopes=API_SCOPES,
                    close_url=back,
                )
            )
    errors = form.first_errors()
    return dialog("admin/_api_token_new.html", form=form, action=here, back=back, errors=errors)


@bp.route("/api-tokens/<int:token_id>/revoke", methods=["GET", "POST"])
def api_token_revoke(token_id: int) -> ResponseReturnValue:
    found = _token_or_404(token_id)
    here = url_for("admin.api_token_revoke", token_id=found.id)
    back = url_for("admin.api_tokens_list")
    title = _("APIトークンの失効")
    if found.revoked_at is not None:
        return done(title, _("このトークンはすでに失効しています。"), close_url=back)
    if stale_operator():
        return ask_for_second_step(here)
    form = ActionForm()
    if form.validate_on_submit():
        if not api_tokens.revoke(found, sessions.now(), commit=False):
            # Another operator's revocation came first: nothing more to record.
            return done(title, _("このトークンはすでに失効しています。"), close_url=back)
        audit.record_request("api.token_revoked", token=found.name, scope=found.scope)
        return done(
            title,
            _("トークン「%(name)s」を失効させました。", name=found.name),
            close_url=back,
        )
    return dialog("admin/_api_token_revoke.html", form=form, action=here, back=back, t=found)
