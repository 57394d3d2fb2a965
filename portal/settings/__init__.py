from flask import Blueprint

bp = Blueprint("settings", __name__, url_prefix="/settings")

from . import app_views, contact_views, passkey_views, profile_views, views  # noqa: E402,F401
