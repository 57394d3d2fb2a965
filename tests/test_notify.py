"""The sending layer against real servers: an aiosmtpd SMTP server and a local HTTP
SMS gateway, each on its own port, no mocks."""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Iterator

import pytest
from conftest import TEST_CONFIG
from flask import Flask
from mail_server import SMTPServer, body_html, body_text
from sms_gateway import SMSGateway

from portal import create_app, notify
from portal.extensions import db

SUBJECT = "【会員ポータル】認証コードのお知らせ"
TEXT = "認証コード: 482913\nこのコードは10分間有効です。\n"
HTML = "<p>認証コード: <strong>482913</strong></p>"
SMS_TEXT = "会員ポータルの認証コード: 482913"
PHONE = "+819012345678"


@pytest.fixture(autouse=True)
def _notify_log_enabled() -> None:
    """migrations/env.py calls ``logging.config.fileConfig`` without
    ``disable_existing_loggers=False``, which disables every logger that exists when a
    migration test runs, ``portal.notify`` included; the log assertions here need it."""
    logging.getLogger("portal.notify").disabled = False


def build_app(database_url: str, **overrides) -> Flask:
    """An app like conftest's ``app`` fixture, with the given settings on top."""
    base = {"SQLALCHEMY_DATABASE_URI": database_url, "RATELIMIT_ENABLED": False}
    return create_app(TEST_CONFIG | base | overrides)


@pytest.fixture
def make_app(database_url) -> Iterator:
    apps: list[Flask] = []

    def make(**overrides) -> Flask:
        apps.append(build_app(database_url, **overrides))
        return apps[-1]

    yield make
    for app in apps:
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def app(make_app, smtp_server: SMTPServer, sms_gateway: SMSGateway) -> Flask:  # noqa: F811
    return make_app(
        MAIL_SERVER=smtp_server.host,
        MAIL_PORT=smtp_server.port,
        # Flask-Mail suppresses sending when TESTING is on unless told otherwise.
        MAIL_SUPPRESS_SEND=False,
        MAIL_DEFAULT_SENDER="ポータル <no-reply@portal.example>",
        MAIL_TIMEOUT=1,
        PORTAL_SMS_BACKEND="http",
        PORTAL_SMS_GATEWAY_URL=sms_gateway.url,
        PORTAL_SMS_GATEWAY_TOKEN="t0ken",
        PORTAL_SMS_TIMEOUT=1,
    )


def unused_port() -> int:
    """A port with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "portal.notify")


@contextlib.contextmanager
def fails_quietly(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> Iterator[pytest.ExceptionInfo[notify.DeliveryError]]:
    """In ``app``'s context the block raises DeliveryError, and the code in the text
    never reaches the log."""
    with (
        app.app_context(),
        caplog.at_level(logging.WARNING, logger="portal.notify"),
        pytest.raises(notify.DeliveryError) as failure,
    ):
        yield failure
    assert "482913" not in logged(caplog)


# --- mail ---------------------------------------------------------------------------


def test_japanese_mail_arrives_intact_with_html_alternative(
    app: Flask,
    smtp_server: SMTPServer,  # noqa: F811
) -> None:
    with app.app_context():
        notify.send_email("taro@example.com", SUBJECT, TEXT, html=HTML)

    [msg] = smtp_server.wait_for(1)
    assert msg["To"] == "taro@example.com"
    assert msg["Subject"] == SUBJECT
    assert msg["From"].addresses[0].addr_spec == "no-reply@portal.example"
    assert msg["From"].addresses[0].display_name == "ポータル"
    types = [part.get_content_type() for part in msg.walk()]
    assert "multipart/alternative" in types  # Flask-Mail wraps it in multipart/mixed
    assert body_text(msg) == TEXT
    assert body_html(msg) == HTML
    plain = msg.get_body(preferencelist=("plain",))
    assert plain.get_content_charset() == "utf-8"
    assert plain["Content-Transfer-Encoding"] == "base64"  # safe through any relay
    assert smtp_server.envelopes[0].rcpt_tos == ("taro@example.com",)
    assert smtp_server.envelopes[0].mail_from == "no-reply@portal.example"


def test_plain_mail_has_no_html_part(app: Flask, smtp_server: SMTPServer) -> None:  # noqa: F811
    with app.app_context():
        notify.send_email("hanako@example.jp", "お知らせ", "本文です。")

    [msg] = smtp_server.wait_for(1)
    assert msg.get_content_type() == "text/plain"
    assert body_text(msg) == "本文です。"
    assert body_html(msg) is None


def test_without_mail_server_the_mail_is_logged_not_sent(
    make_app,
    smtp_server: SMTPServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(MAIL_SERVER=None, MAIL_PORT=smtp_server.port, MAIL_SUPPRESS_SEND=False)
    with (
        app.app_context(),
        app.extensions["mail"].record_messages() as outbox,
        caplog.at_level(logging.WARNING, logger="portal.notify"),
    ):
        notify.send_email("taro@example.com", SUBJECT, TEXT, html=HTML)

    text = logged(caplog)
    assert "MAIL NOT SENT (no MAIL_SERVER configured)" in text
    assert "To: taro@example.com" in text
    assert f"Subject: {SUBJECT}" in text
    assert TEXT in text  # developers read codes from the console
    assert outbox == []
    assert smtp_server.messages == []  # sending is synchronous: it would be here by now


def test_without_mail_server_in_production_nothing_is_logged_but_an_error(
    make_app, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(TESTING=False, PORTAL_ENV="production", MAIL_SERVER=None)
    with fails_quietly(app, caplog) as failure:
        notify.send_email("taro@example.com", SUBJECT, TEXT)

    assert "482913" not in str(failure.value)
    assert "t***@example.com" in logged(caplog)


def test_smtp_server_down_raises_delivery_error(make_app, caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(
        MAIL_SERVER="127.0.0.1", MAIL_PORT=unused_port(), MAIL_SUPPRESS_SEND=False, MAIL_TIMEOUT=1
    )
    with fails_quietly(app, caplog) as failure:
        notify.send_email("taro@example.com", SUBJECT, TEXT)

    assert "t***@example.com" in str(failure.value)
    assert "482913" not in str(failure.value)


def test_silent_smtp_server_times_out(make_app) -> None:
    # A listening socket that is never accepted: the connection opens, no greeting comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        app = make_app(
            MAIL_SERVER="127.0.0.1",
            MAIL_PORT=silent.getsockname()[1],
            MAIL_SUPPRESS_SEND=False,
            MAIL_TIMEOUT=1,
        )
        start = time.monotonic()
        with app.app_context(), pytest.raises(notify.DeliveryError):
            notify.send_email("taro@example.com", SUBJECT, TEXT)
        elapsed = time.monotonic() - start

    assert 0.9 <= elapsed < 5  # MAIL_TIMEOUT=1: far from hanging, with room for a busy machine


# --- SMS ----------------------------------------------------------------------------


def test_http_backend_posts_json_with_bearer_token(
    app: Flask,
    sms_gateway: SMSGateway,  # noqa: F811
) -> None:
    with app.app_context():
        notify.send_sms(PHONE, SMS_TEXT)

    [request] = sms_gateway.requests  # sent synchronously, exactly once
    assert request.path == "/send"
    assert request.json == {"to": PHONE, "text": SMS_TEXT}
    assert request.headers["Authorization"] == "Bearer t0ken"
    assert request.headers["Content-Type"] == "application/json"


def test_gateway_error_raises_and_never_logs_the_text(
    app: Flask,
    sms_gateway: SMSGateway,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    sms_gateway.mode = "fail"
    with (
        app.app_context(),
        caplog.at_level(logging.DEBUG),
        pytest.raises(notify.DeliveryError) as failure,
    ):
        notify.send_sms(PHONE, SMS_TEXT)

    assert len(sms_gateway.requests) == 1  # one attempt, no retry
    assert "500" in str(failure.value)
    everything = "\n".join(r.getMessage() for r in caplog.records)
    for secret in ("482913", SMS_TEXT):
        assert secret not in str(failure.value)
        assert secret not in everything
    assert "+81 ******5678" in logged(caplog)
    assert PHONE not in logged(caplog)


def test_hanging_gateway_times_out_after_one_attempt(
    app: Flask,
    sms_gateway: SMSGateway,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    sms_gateway.mode = "hang"
    start = time.monotonic()
    with fails_quietly(app, caplog):
        notify.send_sms(PHONE, SMS_TEXT)
    elapsed = time.monotonic() - start

    assert 0.9 <= elapsed < 5  # PORTAL_SMS_TIMEOUT=1, plus room for a busy machine
    assert len(sms_gateway.requests) == 1


def test_unreachable_gateway_raises(make_app, caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(
        PORTAL_SMS_BACKEND="http",
        PORTAL_SMS_GATEWAY_URL=f"http://127.0.0.1:{unused_port()}/send",
        PORTAL_SMS_GATEWAY_TOKEN="t0ken",
        PORTAL_SMS_TIMEOUT=1,
    )
    with fails_quietly(app, caplog):
        notify.send_sms(PHONE, SMS_TEXT)


def test_destination_must_be_e164(app: Flask, sms_gateway: SMSGateway) -> None:  # noqa: F811
    with app.app_context(), pytest.raises(notify.DeliveryError):
        notify.send_sms("090-1234-5678", SMS_TEXT)
    assert sms_gateway.requests == []


def test_console_backend_logs_the_text(make_app, caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(PORTAL_SMS_BACKEND="console")
    with app.app_context(), caplog.at_level(logging.WARNING, logger="portal.notify"):
        notify.send_sms(PHONE, SMS_TEXT)
    assert f"SMS (console backend) To: {PHONE} Text: {SMS_TEXT}" in logged(caplog)


def test_console_backend_refuses_in_production(make_app, caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(TESTING=False, PORTAL_ENV="production", PORTAL_SMS_BACKEND="console")
    with fails_quietly(app, caplog):
        notify.send_sms(PHONE, SMS_TEXT)


# --- masking ------------------------------------------------------------------------


# What each masking function shows of a value.
MASKED = {
    notify.mask_email: {
        "taro@example.com": "t***@example.com",
        "a@example.jp": "a***@example.jp",
        "first.last+tag@mail.example.co.jp": "f***@mail.example.co.jp",
        "not-an-address": "***",
        "": "***",
    },
    notify.mask_phone: {
        "+819012345678": "+81 ******5678",
        "+14155550100": "+1 ******0100",
        "+447911123456": "+44 ******3456",
        "+35312345678": "+353 ****5678",
        "09012345678": "*******5678",
        "12345": "*****",
        "": "****",
    },
}


@pytest.mark.parametrize(
    ("mask", "raw", "masked"),
    [(mask, raw, masked) for mask, table in MASKED.items() for raw, masked in table.items()],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_masking(mask, raw: str, masked: str) -> None:
    assert mask(raw) == masked
