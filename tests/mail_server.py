"""A real SMTP server for tests (aiosmtpd on 127.0.0.1, a port of its own).

Import the fixture into a test module or conftest with
``from mail_server import smtp_server  # noqa: F401``; with pytest's default "prepend"
import mode the folder of ``tests/conftest.py`` is on ``sys.path``.

``smtp_server.port`` is where to point MAIL_PORT; ``smtp_server.messages`` holds what
arrived, parsed with the ``email`` package (``policy.default``), so ``msg["To"]`` and
``msg["Subject"]`` are decoded strings and :func:`body_text` gives the plain-text body.
``smtp_server.wait_for(n)`` waits (bounded) until n messages have arrived.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, cast

import pytest
from aiosmtpd.controller import Controller

WAIT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Envelope:
    """What the client said in MAIL FROM / RCPT TO (not the headers)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]


class _Recorder:
    """aiosmtpd handler: parse and keep every message, wake whoever waits for it."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[Envelope] = []
        self.changed = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        # Lines end in CRLF on the wire; the email package's default policy uses "\n".
        raw = raw.replace(b"\r\n", b"\n")
        msg = cast(EmailMessage, message_from_bytes(raw, policy=policy.default))
        with self.changed:
            self.messages.append(msg)
            self.envelopes.append(Envelope(envelope.mail_from, tuple(envelope.rcpt_tos)))
            self.changed.notify_all()
        return "250 Message accepted for delivery"


class _Controller(Controller):
    """aiosmtpd's Controller checks the server by connecting to ``self.port``; with port 0
    that is the port the OS picked, so read it from the bound socket first."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SMTPServer:
    """A running SMTP server that records what it receives; as a context manager it
    runs for the block (a fixture of any scope)."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self._recorder = _Recorder()
        self._controller = _Controller(self._recorder, hostname=self.host, port=0)

    @property
    def port(self) -> int:
        return self._controller.port

    @property
    def messages(self) -> list[EmailMessage]:
        return self._recorder.messages

    @property
    def envelopes(self) -> list[Envelope]:
        return self._recorder.envelopes

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        """Stop the server; stopping again (a test that took it down) does nothing."""
        if self._controller._thread is not None:
            self._controller.stop()

    def __enter__(self) -> SMTPServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for(self, count: int = 1, timeout: float = WAIT_TIMEOUT) -> list[EmailMessage]:
        """Wait until at least ``count`` messages arrived; fail the test after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._recorder.changed:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(
                        f"expected {count} mail(s) within {timeout} s, got {len(self.messages)}"
                    )
                self._recorder.changed.wait(left)
            return list(self.messages)


def body_text(msg: EmailMessage) -> str:
    """The decoded plain-text body (of a multipart/alternative too)."""
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None, "message has no text/plain part"
    return cast(EmailMessage, part).get_content()


def body_html(msg: EmailMessage) -> str | None:
    """The decoded HTML alternative, or None when the message has none."""
    part = msg.get_body(preferencelist=("html",))
    return None if part is None else cast(EmailMessage, part).get_content()


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    with SMTPServer() as server:
        yield server
