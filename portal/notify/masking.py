"""Masked destinations for pages and logs: enough for a member to recognise their own
address or number, too little to be useful to anyone else."""

from __future__ import annotations

import re

import phonenumbers

E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def mask_email(address: str) -> str:
    """``taro@example.com`` → ``t***@example.com``.

    The first character of the local part, then ``***``; the domain is kept because it
    tells the member which mailbox to look in. Anything without ``@`` becomes ``***``.
    """
    local, at, domain = address.strip().rpartition("@")
    if not at or not domain:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_phone(e164: str) -> str:
    """``+819012345678`` → ``+81 ******5678``.

    Format: ``+`` and the country calling code, a space, one ``*`` for each hidden digit
    of the national number, then its last 4 digits. Input that is not E.164 (``+`` and
    7 to 15 digits) has no country code to keep: it becomes ``*`` for every digit but
    the last 4, or only stars when it has fewer than 8 digits.
    """
    value = e164.strip()
    if E164.fullmatch(value):
        try:
            country = str(phonenumbers.parse(value).country_code)
        except phonenumbers.NumberParseException:
            country = ""
        national = value[1 + len(country) :]
        if country and len(national) > 4:
            return f"+{country} {'*' * (len(national) - 4)}{national[-4:]}"
    digits = re.sub(r"[^0-9]", "", value)
    if len(digits) < 8:
        return "*" * max(len(digits), 4)
    return "*" * (len(digits) - 4) + digits[-4:]


def mask_destination(kind: str, value: str) -> str:
    """Mask a second-step destination: a phone number for ``sms``, else an email."""
    return mask_phone(value) if kind == "sms" else mask_email(value)
