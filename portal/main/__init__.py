"""The member TOP page ("マイページ") and the language switch."""

from flask import Blueprint, redirect, render_template
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from .. import i18n, twofactor
from ..extensions import db
from ..web import language as switch
from ..web.forms import LanguageForm

bp = Blueprint("main", __name__)


@bp.route("/")
@login_required
def index():
    return render_template("main/index.html", has_two_factor=twofactor.has_two_factor(current_user))


@bp.route("/language", methods=["POST"])
def set_language() -> ResponseReturnValue:
    """The switch on every page, for visitors too: a cookie for this browser and, for
    a signed-in member, the member's language (mail and SMS follow it). Anything but a
    known language changes nothing; the answer is always a way back to the page."""
    form = LanguageForm()
    back = switch.back_to(form.next.data)
    if not form.validate_on_submit():
        return redirect(back)
    try:
        chosen = i18n.check_language(form.language.data)
    except ValueError:
        return redirect(back)
    if chosen not in i18n.available():
        return redirect(back)
    if current_user.is_authenticated and current_user.locale != chosen:
        current_user.locale = chosen
        db.session.commit()
    response = redirect(back)
    switch.remember(response, chosen)
    return response
