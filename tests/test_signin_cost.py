"""What one sign-in costs the database, held to the figures of bench/signin.py
(bench/README.md): a change that adds a query or a commit to every member's morning
shows up here, not only in the next benchmark run."""

from __future__ import annotations

import pytest
from conftest import PASSWORD
from sqlalchemy import event

from portal import members
from portal.extensions import db

# The whole flow: GET /login, POST the password, GET and POST the app code, GET /.
BUDGET = {"statements": 8, "writes": 3, "commits": 1}
STEPS = [
    ("GET", "/login", None),
    ("POST", "/login", "password"),
    ("GET", "/login/verify", None),
    ("POST", "/login/verify", "code"),
    ("GET", "/", None),
]


@pytest.fixture
def counted(app):
    counts = {"statements": 0, "writes": 0, "commits": 0}

    def statement(conn, cursor, sql, parameters, context, executemany):
        counts["statements"] += 1
        if sql.lstrip().split(None, 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
            counts["writes"] += 1

    def commit(conn):
        counts["commits"] += 1

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    yield counts
    event.remove(engine, "before_cursor_execute", statement)
    event.remove(engine, "commit", commit)


def test_a_sign_in_with_the_app_stays_within_its_database_budget(
    app, client, member_with_totp, counted, monkeypatch
):
    _, totp_obj, _ = member_with_totp
    # A worker that has served before: the policy row exists (a new site's first visit
    # makes it) and the menu's listed pages are kept (another member's TOP page).
    with app.app_context():
        members.create("bob", email="bob@example.com", password=PASSWORD)
    other = app.test_client()
    other.post("/login", data={"login_id": "bob", "password": PASSWORD})
    assert "ログアウト" in other.get("/").text
    counted.update(statements=0, writes=0, commits=0)
    for method, path, field in STEPS:
        data = None
        if field == "password":
            data = {"login_id": "alice", "password": PASSWORD}
        elif field == "code":
            data = {"code": totp_obj.now()}
        response = client.open(path, method=method, data=data)
        assert response.status_code in (200, 302), (path, response.status_code)
    assert "ログアウト" in response.text  # signed in: the TOP page
    assert all(counted[key] <= limit for key, limit in BUDGET.items()), counted
