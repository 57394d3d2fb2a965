"""Mail through Flask-Mail, with a timeout Flask-Mail 0.10 does not have.

Flask-Mail 0.10 opens ``smtplib.SMTP(server, port)`` with no timeout, so an SMTP server
that accepts the connection and then says nothing would hold the request, and the
worker, for ever. :class:`_Connection` opens the same connection with ``MAIL_TIMEOUT``
seconds per socket operation.
"""

from __future__ import annotations

import logging
import smtplib
from email.charset import BASE64, Charset
from email.mime.text import MIMEText
from types import TracebackType
from typing import Any

from flask import current_app
from flask_mail import BadHeaderError, Connection, Message

from .errors import DeliveryError, may_log_content
from .masking import mask_email

log = logging.getLogger("portal.notify")


_UTF8_BASE64 = Charset("utf-8")
_UTF8_BASE64.body_encoding = BASE64


class _Message(Message):
    """Text parts in base64 instead of Flask-Mail's raw 8-bit UTF-8.

    Flask-Mail sends 8-bit bodies without checking that the server offers 8BITMIME, and
    long lines of Japanese text can pass SMTP's 998-byte line limit; base64 arrives intact
    through any relay.
    """

    def _mimetext(self, text: str | None, subtype: str = "plain") -> MIMEText:
        return MIMEText(text or "", _subtype=subtype, _charset=_UTF8_BASE64)  # type: ignore[arg-type]


class _Connection(Connection):
    """Flask-Mail's connection with a socket timeout, which never blocks on QUIT after a
    failure (the server may be the thing that hung)."""

    def __init__(self, state: Any, timeout: float) -> None:
        super().__init__(state)
        self.timeout = timeout

    def configure_host(self) -> smtplib.SMTP | smtplib.SMTP_SSL:
        # Same steps as Flask-Mail 0.10's configure_host, plus the timeout.
        smtp = smtplib.SMTP_SSL if self.mail.use_ssl else smtplib.SMTP
        host = smtp(self.mail.server, self.mail.port, timeout=self.timeout)
        try:
            host.set_debuglevel(int(self.mail.debug))
            if self.mail.use_tls:
                host.starttls()
            if self.mail.username and self.mail.password:
                host.login(self.mail.username, self.mail.password)
        except BaseException:
            host.close()
            raise
        return host

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.host is None:
            return
        try:
            if exc_type is None:
                self.host.quit()
        except OSError:
            pass  # the message was accepted already; a failed QUIT changes nothing
        finally:
            self.host.close()


def _describe(exc: BaseException) -> str:
    """The cause of a failure without anything the server echoed back about the message."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "SMTPRecipientsRefused"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{type(exc).__name__} {exc.smtp_code}"
    if isinstance(exc, BadHeaderError):
        return "a header contains a line break"
    return f"{type(exc).__name__}: {exc}"


def send_email(to: str, subject: str, text: str, html: str | None = None) -> None:
    """Send one mail (plain text, optional HTML alternative, UTF-8) from MAIL_DEFAULT_SENDER.

    Without ``MAIL_SERVER`` the mail is written to the log on a developer machine or in
    tests, so codes can be read from the console; in production it is refused instead.
    Raises :class:`DeliveryError` when the mail was not handed over.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    config = app.config
    if not config.get("MAIL_SERVER"):
        if may_log_content(app):
            log.warning(
                "MAIL NOT SENT (no MAIL_SERVER configured) To: %s Subject: %s\n%s%s",
                to,
                subject,
                text,
                "\n[HTML alternative not shown]" if html else "",
            )
            return
        log.warning("MAIL NOT SENT to %s: MAIL_SERVER is not configured", mask_email(to))
        raise DeliveryError(f"mail to {mask_email(to)} not sent: MAIL_SERVER is not configured")

    message = _Message(
        subject=subject,
        recipients=[to],
        body=text,
        html=html,
        sender=config["MAIL_DEFAULT_SENDER"],
        charset="utf-8",
    )
    timeout = float(config.get("MAIL_TIMEOUT") or 10)
    try:
        with _Connection(app.extensions["mail"], timeout) as connection:
            connection.send(message)
    # OSError covers smtplib's errors; UnicodeError an address Flask-Mail cannot encode
    # (IDNA). Anything else is a bug, but still must not turn an action into a 500.
    except (OSError, BadHeaderError, UnicodeError, ValueError) as exc:
        cause = _describe(exc)
        log.warning("mail to %s not sent: %s", mask_email(to), cause)
        raise DeliveryError(f"mail to {mask_email(to)} not sent: {cause}") from exc
