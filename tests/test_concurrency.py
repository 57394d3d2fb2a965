"""One recovery code, submitted at the same moment by many pending sign-ins, signs in
exactly once: against a real gunicorn with several workers and threads, so the
requests really run in parallel on one SQLite file."""

from __future__ import annotations

import re
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests
from live_server import MemberSpec, enrol, run_server

pytestmark = pytest.mark.server

RACERS = 20
PASSWORD = "correct horse battery staple"
TIMEOUT = 30  # seconds, for every HTTP request and the barrier
WRONG_RECOVERY = "リカバリーコードが正しくないか、既に使用されています。"
LOCKED = "認証に続けて失敗したため、一時的にロックしています。"


def csrf_token(html: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert match, "page has no CSRF meta tag"
    return match.group(1)


def location_path(response: requests.Response) -> str:
    return urlsplit(response.headers.get("Location", "")).path


def recovery_state(server, login_id: str) -> tuple[int, int]:
    """(unused recovery codes, used ones) as stored."""
    from portal import members
    from portal.extensions import db
    from portal.models import RecoveryCode
    from portal.twofactor import recovery

    with server.app_context():
        member = members.find(login_id)
        used = db.session.scalar(
            db.select(db.func.count(RecoveryCode.id)).where(
                RecoveryCode.member_id == member.id, RecoveryCode.used_at.is_not(None)
            )
        )
        return recovery.remaining(member), used


def pending_sign_in(base: str, login_id: str) -> tuple[requests.Session, str]:
    """A session that passed the password step, and the CSRF token of its recovery form."""
    http = requests.Session()
    page = http.get(f"{base}/login", timeout=TIMEOUT)
    assert page.status_code == 200, page.status_code
    response = http.post(
        f"{base}/login",
        data={"login_id": login_id, "password": PASSWORD, "csrf_token": csrf_token(page.text)},
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    assert response.status_code == 302, (response.status_code, response.text[:500])
    assert location_path(response) == "/login/verify"
    page = http.get(f"{base}/login/recovery", timeout=TIMEOUT)
    assert page.status_code == 200, page.status_code
    # The session was rebuilt at the password step, so the token comes from this page.
    return http, csrf_token(page.text)


def test_one_recovery_code_signs_in_once_under_parallel_submissions(tmp_path):
    login_id = "racer"
    # Twenty password sign-ins of one account within a second are this test's set-up,
    # not an attack: the per-account password limit is switched off for it.
    with run_server(
        tmp_path,
        [MemberSpec(login_id, PASSWORD)],
        workers=4,
        threads=4,
        environment={"PORTAL_RATELIMIT": "no"},
    ) as server:
        code = enrol(server, login_id)[0]
        barrier = threading.Barrier(RACERS, timeout=TIMEOUT)
        results: list[requests.Response | None] = [None] * RACERS
        sessions: list[requests.Session | None] = [None] * RACERS
        errors: list[BaseException] = []

        def racer(index: int) -> None:
            try:
                http, token = pending_sign_in(server.url, login_id)
                sessions[index] = http
                barrier.wait()
                results[index] = http.post(
                    f"{server.url}/login/recovery",
                    data={"recovery_code": code, "csrf_token": token},
                    allow_redirects=False,
                    timeout=TIMEOUT,
                )
            except BaseException as exc:
                barrier.abort()  # release the others instead of letting them wait
                errors.append(exc)

        threads = [threading.Thread(target=racer, args=(i,)) for i in range(RACERS)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 3 * TIMEOUT
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        assert not any(thread.is_alive() for thread in threads), "a racer did not finish"
        real_errors = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
        assert not real_errors, real_errors
        assert not errors, errors

        statuses = [r.status_code for r in results]
        assert not [s for s in statuses if s >= 500], statuses
        winners = [
            i for i, r in enumerate(results) if r.status_code == 302 and location_path(r) == "/"
        ]
        assert len(winners) == 1, statuses
        for i, response in enumerate(results):
            if i in winners:
                continue
            if response.status_code == 302:
                # Arrived after the winner's success, which ends every sign-in left
                # half-way: back to the password.
                assert location_path(response) == "/login", statuses
                continue
            assert response.status_code in (200, 429), statuses
            # What the member sees: the refusal, or the lock after too many failures.
            expected = WRONG_RECOVERY if response.status_code == 200 else LOCKED
            assert expected in response.text, (response.status_code, response.text[:1000])

        # The winner is signed in; no other session is.
        for i, http in enumerate(sessions):
            page = http.get(f"{server.url}/", allow_redirects=False, timeout=TIMEOUT)
            if i in winners:
                assert page.status_code == 200, page.status_code
                assert "残りのリカバリーコードは9個です。" in page.text
            else:
                assert page.status_code == 302, page.status_code
                assert location_path(page).startswith("/login"), location_path(page)
            http.close()

        assert recovery_state(server, login_id) == (9, 1)
        log = server.log()
        assert "Traceback" not in log, log
