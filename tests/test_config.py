"""Configuration from the environment, with clear start-up errors."""

from __future__ import annotations

import pytest

from portal import create_app
from portal.config import ConfigError, from_environment, parse_bool


@pytest.fixture
def env(monkeypatch, tmp_path):
    for name in ["SECRET_KEY", "DATABASE_URL", "PORTAL_ENV", "PORTAL_HTTPS", "PORTAL_ISSUER"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path))
    return monkeypatch


@pytest.mark.parametrize("raw", ["1", "true", "yes", "TRUE", " Yes "])
def test_true_values(raw):
    assert parse_bool("PORTAL_HTTPS", raw) is True


@pytest.mark.parametrize("raw", ["0", "false", "no", "NO"])
def test_false_values(raw):
    assert parse_bool("PORTAL_HTTPS", raw) is False


@pytest.mark.parametrize("raw", ["", "maybe", "2", "y e s"])
def test_other_boolean_values_name_the_variable(raw):
    with pytest.raises(ConfigError, match="PORTAL_HTTPS"):
        from_environment({"PORTAL_HTTPS": raw})


def refused_at_start_up(env, message: str, **settings: str) -> None:
    """With ``settings`` in the environment, create_app() stops with a ConfigError
    matching ``message``."""
    for name, value in settings.items():
        env.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        create_app()


def test_missing_secret_key_stops_production_start_up(env):
    refused_at_start_up(env, "SECRET_KEY is not set")


def test_development_generates_one_key_and_reuses_it(env, tmp_path):
    env.setenv("PORTAL_ENV", "development")
    first = create_app().config["SECRET_KEY"]
    second = create_app().config["SECRET_KEY"]
    assert first == second and len(first) >= 40
    key_file = tmp_path / "secret_key"
    assert key_file.read_text().strip() == first
    assert key_file.stat().st_mode & 0o077 == 0


def test_unknown_environment_name_is_refused(env):
    refused_at_start_up(env, "PORTAL_ENV", PORTAL_ENV="staging")


def test_unknown_log_format_is_refused(env):
    refused_at_start_up(env, "PORTAL_LOG_FORMAT must be 'text' or 'json'", PORTAL_LOG_FORMAT="xml")


def test_https_switch_sets_cookies_and_hsts(env):
    env.setenv("SECRET_KEY", "k" * 40)
    env.setenv("PORTAL_HTTPS", "yes")
    app = create_app()
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_NAME"].startswith("__Host-")
    response = app.test_client().get("/login")
    assert "max-age" in response.headers["Strict-Transport-Security"]
    assert "Secure" in response.headers["Set-Cookie"]


def test_plain_http_by_default(env):
    env.setenv("SECRET_KEY", "k" * 40)
    app = create_app()
    assert app.config["SESSION_COOKIE_SECURE"] is False
    response = app.test_client().get("/login")
    assert "Strict-Transport-Security" not in response.headers


def test_database_url_and_issuer_from_environment(env, tmp_path):
    env.setenv("SECRET_KEY", "k" * 40)
    env.setenv("DATABASE_URL", "postgres://u:p@localhost/portal")
    env.setenv("PORTAL_ISSUER", "社員ポータル")
    app = create_app()
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u:p@localhost/portal"
    assert app.config["PORTAL_ISSUER"] == "社員ポータル"


def test_default_database_is_sqlite_in_instance_folder(env, tmp_path):
    env.setenv("SECRET_KEY", "k" * 40)
    app = create_app()
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'portal.db'}"


def test_sqlite_runs_in_wal_mode_with_busy_timeout(tmp_path):
    """A SQLite file on both test passes (the PostgreSQL one too): its settings are
    what is under test."""
    from portal.extensions import db

    url = f"sqlite:///{tmp_path / 'portal.db'}"
    app = create_app({"TESTING": True, "SECRET_KEY": "k" * 40, "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
        db.engine.dispose()


def test_short_secret_key_is_refused(env):
    refused_at_start_up(env, "SECRET_KEY is too short", SECRET_KEY="too-short")


def test_time_zone_from_environment(env):
    env.setenv("SECRET_KEY", "k" * 40)
    env.setenv("PORTAL_TIMEZONE", "Europe/Berlin")
    assert create_app().config["BABEL_DEFAULT_TIMEZONE"] == "Europe/Berlin"
    refused_at_start_up(env, "PORTAL_TIMEZONE", PORTAL_TIMEZONE="Mars/Olympus")


def test_a_short_hmac_key_stops_start_up(env):
    refused_at_start_up(
        env, "PORTAL_HMAC_KEY is too short", SECRET_KEY="k" * 40, PORTAL_HMAC_KEY="short"
    )


def test_production_warns_when_codes_would_travel_unencrypted(env, caplog):
    env.setenv("SECRET_KEY", "k" * 40)
    env.setenv("MAIL_SERVER", "mail.example.com")
    env.setenv("PORTAL_BASE_URL", "https://portal.example.com")
    env.setenv("PORTAL_SMS_BACKEND", "http")
    env.setenv("PORTAL_SMS_GATEWAY_URL", "http://sms.example.com/send")
    env.setenv("PORTAL_SMS_GATEWAY_TOKEN", "t")
    create_app()
    assert "codes travel to mail.example.com unencrypted" in caplog.text
    assert "PORTAL_SMS_GATEWAY_URL is http://" in caplog.text


def test_mail_links_follow_the_port_make_run_serves_on(env):
    """Bug: `PORT=5001 make run` mailed links to :8000."""
    env.setenv("PORTAL_ENV", "development")
    env.delenv("PORTAL_BASE_URL", raising=False)
    env.setenv("PORT", "5001")
    assert create_app().config["PORTAL_BASE_URL"] == "http://localhost:5001"


def test_an_explicit_base_url_wins_over_the_port(env):
    env.setenv("PORTAL_ENV", "development")
    env.setenv("PORT", "5001")
    env.setenv("PORTAL_BASE_URL", "https://portal.example.com")
    assert create_app().config["PORTAL_BASE_URL"] == "https://portal.example.com"


@pytest.mark.parametrize("raw", ["abc", "0", "70000"])
def test_a_bad_port_names_the_variable(raw):
    with pytest.raises(ConfigError, match="PORT"):
        from_environment({"PORT": raw})


def test_passkeys_take_the_rp_id_from_a_named_base_url(env):
    """An IP address cannot be a WebAuthn RP ID: `make run` is opened at localhost."""
    from portal.config import rp_id_problem

    env.setenv("PORTAL_ENV", "development")
    env.delenv("PORTAL_BASE_URL", raising=False)
    env.setenv("PORT", "5001")
    app = create_app()
    assert rp_id_problem(None, app.config["PORTAL_BASE_URL"]) is None
    assert "IP address" in rp_id_problem(None, "http://127.0.0.1:8000")
    assert "https" in rp_id_problem(None, "http://portal.example.com")
    assert rp_id_problem("example.com", "https://portal.example.com") is None
    assert "parent domain" in rp_id_problem("other.example", "https://portal.example.com")
    # A suffix that is not a whole label is no parent domain.
    assert rp_id_problem("ample.com", "https://portal.example.com") is not None


@pytest.mark.parametrize(
    "rp_id, message",
    [
        ("other.example", "neither"),
        ("https://portal.example.com", "must be a domain"),
        ("192.0.2.1", "IP address"),
    ],
)
def test_a_passkey_rp_id_that_cannot_work_stops_the_start(env, rp_id, message):
    refused_at_start_up(
        env,
        message,
        PORTAL_ENV="development",
        PORTAL_BASE_URL="https://portal.example.com",
        PORTAL_WEBAUTHN_RP_ID=rp_id,
    )


def test_a_parent_domain_is_a_valid_rp_id(env):
    env.setenv("PORTAL_ENV", "development")
    env.setenv("PORTAL_BASE_URL", "https://portal.example.com")
    env.setenv("PORTAL_WEBAUTHN_RP_ID", "Example.COM.")
    assert create_app().config["PORTAL_WEBAUTHN_RP_ID"] == "example.com"
