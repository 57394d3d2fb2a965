"""Review of issue 15 (member-area forms): each test failed before its fix."""

from __future__ import annotations

import json

import pytest
from test_member_forms import GOOD, csrf, events, example, make_form, sign_in

from portal.extensions import db
from portal.models import FormSubmission, MemberForm


@pytest.mark.parametrize(
    ("content", "message"),
    [
        # More digits than Python turns into an int: a ValueError, not a JSONDecodeError.
        (
            b'{"menu_order": ' + b"1" * 5000 + b"}",
            "エラー：JSONとして読めません（桁数の多すぎる数値があります）。",
        ),
        # A lone surrogate (\ud800) is valid JSON but no text a database can store.
        (
            json.dumps(example(title="a\ud800b")).encode(),
            "エラー：JSONとして読めません（文字として使えない",
        ),
        (
            json.dumps(example(pages={"input": "<p>\ud800</p>"})).encode(),
            "エラー：JSONとして読めません（文字として使えない",
        ),
    ],
)
def test_cli_import_refuses_json_python_cannot_use_in_one_line(
    app, runner, tmp_path, content, message
):
    path = tmp_path / "form.json"
    path.write_bytes(content)
    result = runner.invoke(args=["forms", "import", str(path)])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(MemberForm.id))) == 0


@pytest.mark.settings(RATELIMIT_ENABLED=True, PORTAL_LIMIT_FORMS="3 per minute")
def test_a_member_cannot_store_drafts_or_submissions_without_bound(app, client):
    """Every valid POST of the input page stores a draft row (up to the form's sizes,
    1 MB a request): a member looping on it filled the database. Now a limit per member
    answers 429, stores nothing more, and is audited once."""
    make_form(app, step_up_minutes=0)
    sign_in(app, client)
    token = csrf(client)
    for _ in range(3):
        response = client.post("/forms/apply", data={"csrf_token": token, **GOOD})
        assert response.status_code == 302
    refused = client.post("/forms/apply", data={"csrf_token": token, **GOOD})
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert "リクエストが多すぎます" in refused.text
    client.post("/forms/apply", data={"csrf_token": token, **GOOD})
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(FormSubmission.id))) == 3
    assert events(app, "request.throttled") == [{"bucket": "form"}]
    # Reading the form is not counted.
    assert client.get("/forms/apply").status_code == 200
