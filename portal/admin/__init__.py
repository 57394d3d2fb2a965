"""The operators' area ("管理画面"): who has 2FA and who has not, resets, the audit log,
the overview and member pages. Operators only; everyone else gets 403.

The area needs an enrolled second step (OWASP ASVS 4.3.1: multi-factor on
administrative interfaces): an operator without one is sent to set one up first, and
every admin change needs a recent second step, never the password alone.
"""

from flask import Blueprint, abort, flash, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from werkzeug.exceptions import TooManyRequests

from .. import throttle, twofactor, useragent
from ..web import audit_text
from ..web.htmx import redirect_to

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.context_processor
def audit_words() -> dict:
    """Audit events in words on every admin page: method names, details as a sentence,
    browsers as "Chrome / Windows" (never the raw header)."""
    return {
        "method_name": audit_text.method_name,
        "detail_text": audit_text.detail_text,
        "browser_name": lambda header: useragent.shown(useragent.describe(header)),
    }


@bp.before_request
@login_required
def operators_only():
    # login_required lets OPTIONS through, so check sign-in here as well.
    if not current_user.is_authenticated or not current_user.is_operator:
        abort(403)
    if not twofactor.has_two_factor(current_user):
        flash(_("管理画面を使うには、先に二段階認証を設定してください。"), "warning")
        return redirect_to(url_for("settings.index"))
    if request.method == "POST":
        wait = throttle.per_address("PORTAL_LIMIT_ADMIN", "admin", event="request.throttled")
        if wait:
            raise TooManyRequests(retry_after=wait)


from . import (  # noqa: E402,F401
    api_token_views,
    audit_views,
    form_views,
    import_views,
    member_views,
    overview_views,
    page_views,
    policy_views,
    reset_link_views,
)
