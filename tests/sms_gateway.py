"""A real HTTP SMS gateway for tests (ThreadingHTTPServer on 127.0.0.1, a port of its own).

Import the fixture into a test module or conftest with
``from sms_gateway import sms_gateway  # noqa: F401``.

``sms_gateway.url`` is where to point PORTAL_SMS_GATEWAY_URL; ``sms_gateway.requests``
holds every POST (path, headers, raw body, parsed JSON). ``sms_gateway.mode`` decides the
answer: ``"ok"`` (200), ``"fail"`` (500) or ``"hang"`` (answers only after
``hang_seconds``, longer than any client timeout used in tests). Stopping the gateway wakes
hanging handlers at once and joins every handler thread, so nothing outlives the test.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

WAIT_TIMEOUT = 5.0


@dataclass(frozen=True)
class GatewayRequest:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        gateway = self.server.gateway
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        gateway._record(GatewayRequest(self.path, dict(self.headers.items()), body))
        mode = gateway.mode
        if mode == "hang":
            gateway._released.wait(gateway.hang_seconds)
        status = 500 if mode == "fail" else 200
        answer = json.dumps({"status": "ok" if status == 200 else "error"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output clean


class _Server(ThreadingHTTPServer):
    # Handler threads are joined by server_close(), so none outlives the fixture.
    daemon_threads = False
    block_on_close = True

    def __init__(self, gateway: SMSGateway) -> None:
        self.gateway = gateway
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout) closes the socket before the late answer.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class SMSGateway:
    """A running gateway that records every POST and answers according to ``mode``; as a
    context manager it runs for the block (a fixture of any scope)."""

    def __init__(self, mode: str = "ok", hang_seconds: float = 10.0) -> None:
        self.mode = mode
        self.hang_seconds = hang_seconds
        self.requests: list[GatewayRequest] = []
        self._changed = threading.Condition()
        self._released = threading.Event()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/send"

    def _record(self, request: GatewayRequest) -> None:
        with self._changed:
            self.requests.append(request)
            self._changed.notify_all()

    def wait_for(self, count: int = 1, timeout: float = WAIT_TIMEOUT) -> list[GatewayRequest]:
        """Wait until at least ``count`` requests arrived; fail the test after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(
                        f"expected {count} SMS within {timeout} s, got {len(self.requests)}"
                    )
                self._changed.wait(left)
            return list(self.requests)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._released.set()  # wake handlers in "hang" mode
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()  # joins the handler threads

    def __enter__(self) -> SMSGateway:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def sms_gateway() -> Iterator[SMSGateway]:
    with SMSGateway() as gateway:
        yield gateway
