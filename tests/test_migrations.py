"""The migrations build the schema on an empty database and agree with the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import upgrade
from sqlalchemy import create_engine, inspect

from portal import create_app
from portal.extensions import db


def test_upgrade_empty_database_matches_models(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    app = create_app({"TESTING": True, "SECRET_KEY": "k" * 40, "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade()
        engine = create_engine(url)
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            assert {"member", "totp_credential", "totp_enrolment", "recovery_code"} <= tables
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, db.metadata) == []
        engine.dispose()
        db.engine.dispose()
