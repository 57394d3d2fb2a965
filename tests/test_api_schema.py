"""The admin API against its own OpenAPI 3.1 document (issue 14): schemathesis generates
calls to every operation from /api/v1/openapi.json (valid and invalid parameters, with a
write token) and checks each answer: never a server error, a documented status, the
documented content type and headers, and a body that matches the schema.

The app is the test app (``app`` fixture) with members of every kind: with and without
a second step, a locked and a blocked one, an operator, one imported without a password
and one without an address, so the generated login IDs meet real members too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import schemathesis
from conftest import PASSWORD, TEST_CONFIG, enrol_app
from hypothesis import HealthCheck, settings

from portal import api_tokens, create_app, members, sessions
from portal.api.openapi import document
from portal.extensions import db
from portal.models import ContactMethod
from portal.twofactor import recovery

NOW = datetime.now(UTC)


def _seed(app) -> str:
    """The cast, and a write token (every operation is open to it)."""
    with app.app_context():
        made = {
            login_id: members.create(login_id, email=f"{login_id}@example.com", password=PASSWORD)
            for login_id in ("aaa", "bbb", "ccc", "ddd", "eee", "fff")
        }
        enrol_app(made["aaa"])
        db.session.add(ContactMethod(member_id=made["bbb"].id, kind="email", created_at=NOW))
        db.session.commit()
        recovery.issue(made["bbb"], NOW)
        made["ccc"].tfa_locked_until = NOW + timedelta(hours=1)
        made["ddd"].tfa_blocked_at = NOW
        made["eee"].password_hash = members.NO_PASSWORD  # imported, invited by the API
        made["fff"].email = ""
        made["fff"].is_operator = True
        db.session.commit()
        return api_tokens.create("schemathesis", "write", by="boss", now=sessions.now())[0]


def _document() -> dict:
    """The document as the app serves it (schemathesis' pytest integration wants the
    schema when the module loads; the test below checks the app serves this one)."""
    app = create_app(TEST_CONFIG | {"SQLALCHEMY_DATABASE_URI": "sqlite://"})
    with app.app_context():
        return document()


schema = schemathesis.openapi.from_dict(_document())


def test_the_served_document_is_the_one_checked(client):
    answer = client.get("/api/v1/openapi.json")
    assert answer.status_code == 200 and answer.json == _document()
    assert answer.json["openapi"] == "3.1.0"
    assert "Set-Cookie" not in answer.headers


@pytest.fixture
def write_token(app) -> str:
    return _seed(app)


@schema.parametrize()
@settings(
    max_examples=40,  # each operation: about 5 s for all of them
    deadline=None,
    database=None,  # nothing kept between runs: each run draws afresh
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_answer_matches_the_document(case, app, write_token):
    case.operation.schema.app = app  # this test's app, for the checks' own probes too
    case.call_and_validate(
        app=app,
        base_url="http://localhost/api/v1",
        headers={"Authorization": f"Bearer {write_token}"},
    )
