"""Sending mail and SMS behind one small interface, so views never talk to SMTP or a
gateway directly and tests can point both at real local servers.

Both senders make exactly one attempt and raise :class:`DeliveryError` when the message
was not handed over; the caller decides what the member sees. Error messages and log
lines name the (masked) destination and the failure, never the text, because the text
carries one-time codes.
"""

from __future__ import annotations

from .errors import DeliveryError
from .mail import send_email
from .masking import mask_destination, mask_email, mask_phone
from .sms import send_sms

__all__ = [
    "DeliveryError",
    "mask_destination",
    "mask_email",
    "mask_phone",
    "send_email",
    "send_sms",
]
