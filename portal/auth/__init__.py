from flask import Blueprint

bp = Blueprint("auth", __name__)

from . import reset_views, views  # noqa: E402,F401
