"""The migrations build the schema on an empty database and agree with the models, and
each one goes down and up again: on SQLite and, in `make test`'s second pass, on
PostgreSQL (tests/databases.py)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from databases import on_postgresql
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, inspect, text

from portal import create_app
from portal.extensions import db


def migrations_app(url: str):
    return create_app({"TESTING": True, "SECRET_KEY": "k" * 40, "SQLALCHEMY_DATABASE_URI": url})


def differences(url: str) -> list:
    """What autogenerate would still change: nothing when migrations and models agree."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(context, db.metadata)
    finally:
        engine.dispose()


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def sequence_types(url: str) -> set[str]:
    """The types of the id sequences (PostgreSQL's; SQLite has none)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name != "postgresql":
                return set()
            return set(
                conn.scalars(
                    text(
                        "SELECT data_type FROM information_schema.sequences "
                        "WHERE sequence_schema = current_schema()"
                    )
                )
            )
    finally:
        engine.dispose()


def test_upgrade_empty_database_matches_models(database_url):
    app = migrations_app(database_url)
    with app.app_context():
        upgrade()
        assert {"member", "totp_credential", "totp_enrolment", "recovery_code"} <= tables(
            database_url
        )
        assert differences(database_url) == []
        # New ids run up to 2**63 - 1 on PostgreSQL too (SQLite's rowids do).
        assert sequence_types(database_url) == ({"bigint"} if on_postgresql() else set())
        db.engine.dispose()


def test_each_migration_goes_down_and_up_again_and_all_down_to_an_empty_database(database_url):
    """Walking up one revision at a time, each is undone and redone (a downgrade that
    leaves a table, an index or a constraint behind makes the redo fail); at the head the
    schema still matches the models, and downgrading to base leaves only Alembic's own
    table."""
    app = migrations_app(database_url)
    with app.app_context():
        script = ScriptDirectory.from_config(app.extensions["migrate"].migrate.get_config())
        revisions = [rev.revision for rev in reversed(list(script.walk_revisions()))]
        assert len(revisions) > 1
        for previous, revision in zip(["base", *revisions], revisions, strict=False):
            upgrade(revision=revision)
            downgrade(revision=previous)
            upgrade(revision=revision)
        assert differences(database_url) == []
        downgrade(revision="base")
        assert tables(database_url) == {"alembic_version"}
        db.engine.dispose()
