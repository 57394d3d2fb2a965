"""gunicorn.conf.py as gunicorn itself resolves it (its own config loader, the project
folder's conf file, the environment, the command line), and the log lines a real
gunicorn writes with it: the request's id, and JSON with PORTAL_LOG_FORMAT=json."""

from __future__ import annotations

import json
import runpy
import sys
import time
from pathlib import Path

import pytest
import requests
from gunicorn.app.wsgiapp import WSGIApplication
from live_server import run_server

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONF = PROJECT_ROOT / "gunicorn.conf.py"
VARIABLES = (
    "WEB_CONCURRENCY",
    "GUNICORN_WORKERS",
    "GUNICORN_THREADS",
    "GUNICORN_BIND",
    "GUNICORN_TIMEOUT",
    "GUNICORN_GRACEFUL_TIMEOUT",
    "GUNICORN_KEEPALIVE",
    "GUNICORN_CMD_ARGS",
    "PORT",
    "PORTAL_PROXY_COUNT",
    "FORWARDED_ALLOW_IPS",
)


@pytest.fixture
def resolved(monkeypatch):
    """gunicorn's settings for ``gunicorn [args] wsgi:app`` started in the project folder
    with these environment variables (and none of the developer's)."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(PROJECT_ROOT)

    def resolve(*args: str, **env: str):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(sys, "argv", ["gunicorn", *args, "wsgi:app"])
        return WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]").cfg

    return resolve


def test_defaults_for_a_deployment(resolved):
    cfg = resolved()
    cpus = runpy.run_path(str(CONF))["cpu_count"]()
    assert cfg.workers == min(2 * cpus + 1, 12)
    assert cfg.worker_class_str == "gthread" and cfg.threads == 4
    assert cfg.bind == ["127.0.0.1:8000"]
    assert (cfg.timeout, cfg.graceful_timeout, cfg.keepalive) == (30, 30, 5)
    assert cfg.forwarded_allow_ips == []  # no proxy trusted by the portal: none by gunicorn
    assert cfg.logger_class.__name__ == "RedactingLogger"
    assert "request_id=%({x-request-id}o)s" in cfg.access_log_format


def test_the_environment_sizes_and_places_it(resolved):
    cfg = resolved(
        GUNICORN_WORKERS="7",
        GUNICORN_THREADS="8",
        GUNICORN_BIND="0.0.0.0:9000",
        GUNICORN_TIMEOUT="60",
        GUNICORN_KEEPALIVE="75",
    )
    assert (cfg.workers, cfg.threads, cfg.bind) == (7, 8, ["0.0.0.0:9000"])
    assert (cfg.timeout, cfg.keepalive) == (60, 75)


def test_web_concurrency_comes_first_and_port_moves_the_default_bind(resolved):
    cfg = resolved(WEB_CONCURRENCY="3", GUNICORN_WORKERS="7", PORT="8123")
    assert cfg.workers == 3 and cfg.bind == ["127.0.0.1:8123"]


def test_forwarded_headers_are_trusted_only_with_the_portals_proxies(resolved):
    assert resolved(PORTAL_PROXY_COUNT="1").forwarded_allow_ips == ["127.0.0.1", "::1"]
    elsewhere = resolved(PORTAL_PROXY_COUNT="1", FORWARDED_ALLOW_IPS="10.0.0.5")
    assert elsewhere.forwarded_allow_ips == ["10.0.0.5"]


def test_command_line_flags_win(resolved):
    """`make run`'s flags, and the tests' single-threaded workers (sync, not gthread)."""
    cfg = resolved("--bind", "127.0.0.1:5001", "--workers", "2", "--log-level", "warning")
    assert (cfg.bind, cfg.workers, cfg.loglevel) == (["127.0.0.1:5001"], 2, "warning")
    assert resolved("--threads", "1").worker_class_str == "sync"


def test_a_bad_number_stops_it_with_the_variables_name(resolved):
    with pytest.raises(SystemExit, match="GUNICORN_WORKERS must be a whole number"):
        resolved(GUNICORN_WORKERS="many")


# --- a real gunicorn's log ------------------------------------------------------------------


def wait_for_line(server, text: str) -> list[str]:
    """The log's lines once one holds ``text`` (gunicorn writes the access line after
    the answer)."""
    deadline = time.monotonic() + 10
    while text not in server.log():
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{server.log()}"
        time.sleep(0.05)
    return server.log().splitlines()


@pytest.mark.server
def test_the_access_log_names_the_request_id(tmp_path):
    with run_server(tmp_path) as server:
        rid = requests.get(f"{server.url}/login", timeout=10).headers["X-Request-ID"]
        lines = wait_for_line(server, f"request_id={rid}")
    (line,) = [line for line in lines if f"request_id={rid}" in line]
    assert '"GET /login HTTP/1.1" 200' in line


@pytest.mark.server
def test_json_logs_are_one_object_per_line_from_gunicorn_and_the_app(tmp_path):
    token = "Abc-_123" * 6
    with run_server(tmp_path, environment={"PORTAL_LOG_FORMAT": "json"}) as server:
        page = requests.get(f"{server.url}/login", timeout=10)
        requests.get(f"{server.url}/login/reset/{token}", timeout=10)
        rid = page.headers["X-Request-ID"]
        lines = wait_for_line(server, "/login/reset/[redacted]")
    records = [json.loads(line) for line in lines if line.strip()]
    (access,) = [r for r in records if r.get("request_id") == rid]
    assert access["logger"] == "gunicorn.access" and access["message"] == "GET /login HTTP/1.1"
    assert (access["method"], access["path"], access["status"]) == ("GET", "/login", 200)
    assert access["duration_ms"] >= 0 and access["bytes"] > 0
    assert any(
        r["logger"] == "gunicorn.error" and r["message"].startswith("Starting gunicorn")
        for r in records
    )
    # The app's own start-up warnings (production without Redis or mail) too.
    assert any(r["logger"] == "portal" and "REDIS_URL is not set" in r["message"] for r in records)
    assert token not in "\n".join(lines)
