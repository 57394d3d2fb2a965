"""The operators' area ("管理画面"): who has 2FA and who has not, resets, the audit log,
the overview and member pages. Operators only; everyone else gets 403."""

from flask import Blueprint, abort
from flask_login import current_user, login_required

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
@login_required
def operators_only() -> None:
    # login_required lets OPTIONS through, so check sign-in here as well.
    if not current_user.is_authenticated or not current_user.is_operator:
        abort(403)


from . import audit_views, member_views, overview_views, page_views  # noqa: E402,F401
