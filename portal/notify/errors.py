"""The one exception callers of :mod:`portal.notify` need to handle."""

from __future__ import annotations

from flask import Flask


class DeliveryError(Exception):
    """A mail or SMS could not be handed over to the SMTP server or the SMS gateway.

    The message names the masked destination and the cause, never the text sent.
    """


def may_log_content(app: Flask) -> bool:
    """Whether a message body may go to the log: only on a developer machine or in tests.

    Codes in a production log would let anyone who reads the log sign in as the member.
    """
    return app.config.get("PORTAL_ENV") == "development" or app.testing
