"""Member portal with two-step verification."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from . import app_log
from . import config as config_module
from .access_log import RedactingFilter
from .extensions import babel, csrf, db, limiter, login_manager, mail, migrate


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then the environment, then ``config`` (tests' overrides)."""
    instance_path = os.environ.get("PORTAL_INSTANCE_PATH") or None
    app = Flask(__name__, instance_path=instance_path, instance_relative_config=True)
    app.config.update(config_module.DEFAULTS)
    app.config.update(config_module.from_environment(os.environ))
    if config:
        app.config.update(config)
    config_module.finalise(app.config, app.instance_path)
    # A crash on the password-reset link would log its token in the path.
    app.logger.addFilter(RedactingFilter())
    app_log.init_app(app)

    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(app.root_path), "migrations"))
    from .web import uploads

    uploads.init_app(app)  # before the CSRF check, which reads the body
    csrf.init_app(app)
    mail.init_app(app)
    from flask_babel import format_date, format_datetime, get_locale

    from . import i18n, useragent
    from .web import language

    babel.init_app(
        app, locale_selector=language.select_locale, timezone_selector=language.select_timezone
    )
    app.jinja_env.globals.update(
        get_locale=get_locale,
        format_date=format_date,
        format_datetime=format_datetime,
        local_time=i18n.local_time,
        languages=i18n.available,
        browser_label=useragent.shown,
    )
    login_manager.init_app(app)
    limiter.init_app(app)
    if app.config["PORTAL_PROXY_COUNT"]:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # Trust X-Forwarded-For/-Proto from exactly this many proxies in front.
        count = app.config["PORTAL_PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=0)

    from .twofactor import crypto

    crypto.init_app(app)

    from . import errors, security, sessions

    errors.init_app(app)
    security.init_app(app)
    sessions.init_app(app)

    from .web import enforcement, menu, policy

    policy.init_app(app)
    enforcement.init_app(app)
    menu.init_app(app)

    from . import api
    from .admin import bp as admin_bp
    from .auth import bp as auth_bp
    from .forms import bp as forms_bp
    from .health import bp as health_bp
    from .main import bp as main_bp
    from .pages_views import bp as pages_bp
    from .settings import bp as settings_bp

    app.register_blueprint(main_bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(settings_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(pages_bp)
    app.register_blueprint(forms_bp)
    app.register_blueprint(health_bp)
    api.init_app(app)

    from . import cli

    cli.init_app(app)
    if app.config["PORTAL_ENV"] == "production" and not app.testing:
        if not app.config["PORTAL_HTTPS"]:
            app.logger.warning(
                "PORTAL_HTTPS is off: cookies are not marked Secure and HSTS is not sent. "
                "Serve the portal behind TLS and set PORTAL_HTTPS=yes."
            )
        if not app.config["MAIL_SERVER"]:
            app.logger.warning("MAIL_SERVER is not set: no mail (codes, notices) can be sent.")
        elif not (app.config["MAIL_USE_TLS"] or app.config["MAIL_USE_SSL"]) and app.config[
            "MAIL_SERVER"
        ] not in ("localhost", "127.0.0.1", "::1"):
            app.logger.warning(
                "MAIL_USE_TLS and MAIL_USE_SSL are off: codes travel to %s unencrypted.",
                app.config["MAIL_SERVER"],
            )
        if (app.config["PORTAL_SMS_GATEWAY_URL"] or "").startswith("http://"):
            app.logger.warning("PORTAL_SMS_GATEWAY_URL is http://: SMS codes travel unencrypted.")
        if app.config["PORTAL_SMS_BACKEND"] == "console":
            app.logger.warning(
                "PORTAL_SMS_BACKEND is 'console': SMS codes cannot be sent in production."
            )
        if not i18n.compiled("en"):
            app.logger.warning(
                "The English catalogue is not compiled: the portal is Japanese only. "
                "Run: pybabel compile -d portal/translations"
            )
        if app.config["RATELIMIT_STORAGE_URI"].startswith("memory://"):
            app.logger.warning("REDIS_URL is not set: rate limits are counted per worker process.")
    return app


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record) -> None:
    """WAL lets readers run beside a writer; the busy timeout makes concurrent writers
    wait for the lock instead of failing with 'database is locked'."""
    import sqlite3

    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
