"""A policy change reaches every gunicorn worker on its next request: no worker keeps a
copy of the policy. Two sync workers each serve a request before and after the change,
which is made by a third process (``flask policy set``)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import requests
from live_server import PROJECT_ROOT, MemberSpec, run_server, server_environment
from worker_pairs import request_pair

pytestmark = pytest.mark.server

PASSWORD = "correct horse battery staple"
BANNER = "二段階認証が設定されていません。"


def signed_in_cookie(server) -> str:
    with requests.Session() as http:
        page = http.get(f"{server.url}/login", timeout=20)
        token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text)[1]
        response = http.post(
            f"{server.url}/login",
            data={"login_id": "alice", "password": PASSWORD, "csrf_token": token},
            allow_redirects=False,
            timeout=20,
        )
        assert response.status_code == 302, response.text[:300]
        return "; ".join(f"{c.name}={c.value}" for c in http.cookies)


def top_page_on_both_workers(server, cookie: str):
    head = (
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Cookie: {cookie}\r\nConnection: close\r\n"
    ).encode()
    return request_pair(server, head, b"\r\n")


def test_both_workers_see_a_policy_change_on_their_next_request(tmp_path):
    with run_server(tmp_path, [MemberSpec("alice", PASSWORD)], workers=2, threads=1) as server:
        cookie = signed_in_cookie(server)
        before = top_page_on_both_workers(server, cookie)
        assert [a.status for a in before] == [200, 200]
        assert all(BANNER in a.text for a in before)  # recommend: a banner, no block

        env = server_environment(server.database_uri, server.instance_path)
        for field, value in (("grace_days", "0"), ("enforcement", "required")):
            result = subprocess.run(
                [sys.executable, "-m", "flask", "--app", "wsgi", "policy", "set", field, value],
                cwd=PROJECT_ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert result.returncode == 0, result.stderr

        after = top_page_on_both_workers(server, cookie)
        assert {a.pid for a in after} == {a.pid for a in before}  # the same two workers
        for answer in after:
            assert answer.status == 302, (answer.status, answer.text[:300])
            assert answer.headers["Location"].endswith("/settings/2fa/setup")
