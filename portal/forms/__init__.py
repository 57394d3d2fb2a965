"""Member-area forms as members fill them in: /forms/<slug>, signed-in members only."""

from flask import Blueprint

bp = Blueprint("forms", __name__, url_prefix="/forms")

from . import views  # noqa: E402,F401  (routes register on bp)
