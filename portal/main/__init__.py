"""The member TOP page ("マイページ")."""

from flask import Blueprint, render_template
from flask_login import current_user, login_required

from .. import twofactor

bp = Blueprint("main", __name__)


@bp.route("/")
@login_required
def index():
    return render_template("main/index.html", has_two_factor=twofactor.has_two_factor(current_user))
