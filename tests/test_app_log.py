"""Request ids and the application's log format (PORTAL_LOG_FORMAT): what an operator
reading the log, and a log collector parsing it, get."""

from __future__ import annotations

import json
import logging
import re

import pytest

HEX_ID = re.compile(r"[0-9a-f]{32}")


def add_test_views(app) -> None:
    """A view that logs a warning the way the portal's modules do, and one that crashes."""

    def warns():
        logging.getLogger("portal.notify").warning("mail to %s not sent", "a***@example.com")
        return "ok"

    def crashes():
        raise RuntimeError("boom\nsecond line")

    app.add_url_rule("/test/warns", view_func=warns)
    app.add_url_rule("/test/crashes", view_func=crashes)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # logged and answered 500, as in production


def test_every_response_carries_a_fresh_request_id(client):
    first = client.get("/login").headers["X-Request-ID"]
    second = client.get("/no-such-page").headers["X-Request-ID"]
    assert HEX_ID.fullmatch(first) and HEX_ID.fullmatch(second)
    assert first != second


def test_a_client_cannot_choose_its_request_id_without_a_trusted_proxy(client):
    sent = client.get("/login", headers={"X-Request-ID": "chosen-by-client"})
    assert HEX_ID.fullmatch(sent.headers["X-Request-ID"])


@pytest.mark.settings(PORTAL_PROXY_COUNT=1)
def test_the_trusted_proxys_request_id_is_kept_if_plain(client):
    kept = client.get("/login", headers={"X-Request-ID": "nginx-5f2c9a0b1e"})
    assert kept.headers["X-Request-ID"] == "nginx-5f2c9a0b1e"
    for unsafe in ("two words", 'quote"d', "x" * 129):
        replaced = client.get("/login", headers={"X-Request-ID": unsafe})
        assert HEX_ID.fullmatch(replaced.headers["X-Request-ID"]), unsafe


def test_text_lines_name_the_request(app, client, capsys):
    add_test_views(app)
    rid = client.get("/test/warns").headers["X-Request-ID"]
    line = capsys.readouterr().err.strip()
    assert f"WARNING in portal.notify [{rid}]: mail to a***@example.com not sent" in line


@pytest.mark.settings(PORTAL_LOG_FORMAT="json")
def test_json_lines_are_one_object_each_with_the_request(app, client, capsys):
    add_test_views(app)
    warned = client.get("/test/warns?x=1")
    crashed = client.get("/test/crashes")
    assert crashed.status_code == 500
    lines = capsys.readouterr().err.splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    warning, error = records
    assert warning["level"] == "WARNING" and warning["logger"] == "portal.notify"
    assert warning["message"] == "mail to a***@example.com not sent"
    assert warning["request_id"] == warned.headers["X-Request-ID"]
    assert (warning["method"], warning["path"]) == ("GET", "/test/warns")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", warning["time"])
    # A crash is one line too: its traceback is a field, line breaks escaped.
    assert error["level"] == "ERROR" and error["request_id"] == crashed.headers["X-Request-ID"]
    assert error["message"] == "Exception on /test/crashes [GET]"
    assert "Traceback" in error["exc_info"]
    assert "RuntimeError: boom\nsecond line" in error["exc_info"]


@pytest.mark.settings(PORTAL_LOG_FORMAT="json")
def test_json_lines_redact_a_reset_token_in_the_path(app, client, capsys):
    token = "Abc-_123" * 6

    def crashes(token):
        raise RuntimeError("boom")

    app.add_url_rule("/login/reset/<token>/test", view_func=crashes)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    client.get(f"/login/reset/{token}/test")
    text = capsys.readouterr().err
    assert token not in text
    assert json.loads(text)["path"] == "/login/reset/[redacted]/test"


@pytest.mark.settings(PORTAL_LOG_FORMAT="json")
def test_json_lines_outside_a_request_have_no_request_id(app, capsys):
    app.logger.warning("started")
    record = json.loads(capsys.readouterr().err)
    assert record["request_id"] is None and "method" not in record and "path" not in record
