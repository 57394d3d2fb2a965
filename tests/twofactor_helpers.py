"""Helpers for the two-step verification domain tests: a mailbox and an SMS inbox that
read the codes the member would receive, and members with every method enabled."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyotp
from conftest import NOW, get_member

from portal import members, notify, twofactor
from portal.extensions import db
from portal.models import ContactMethod, Member

CODE_IN_MESSAGE = re.compile(r"認証コード: (\S+?)[（\s]")


@dataclass
class Message:
    channel: str
    to: str
    subject: str
    body: str

    @property
    def code(self) -> str:
        match = CODE_IN_MESSAGE.search(self.body)
        assert match, f"no code in {self.body!r}"
        return match.group(1)


class Inbox:
    """Every mail and SMS the portal hands to :mod:`portal.notify`."""

    def __init__(self):
        self.messages: list[Message] = []
        self.failing = False

    def send_email(self, to, subject, text, html=None):
        if self.failing:
            raise notify.DeliveryError("mail server down")
        self.messages.append(Message("email", to, subject, text))

    def send_sms(self, to, text):
        if self.failing:
            raise notify.DeliveryError("gateway down")
        self.messages.append(Message("sms", to, "", text))

    def last(self, to: str | None = None) -> Message:
        found = [m for m in self.messages if to is None or m.to == to]
        assert found, f"nothing was sent to {to}"
        return found[-1]

    def code(self, to: str | None = None) -> str:
        return self.last(to).code


def install_inbox(monkeypatch) -> Inbox:
    inbox = Inbox()
    monkeypatch.setattr(notify, "send_email", inbox.send_email)
    monkeypatch.setattr(notify, "send_sms", inbox.send_sms)
    return inbox


def enable_contact(m: Member, kind: str, inbox: Inbox, now=NOW) -> list[str] | None:
    """Turn on email or SMS the way the settings page does: send, then type the code."""
    target = twofactor.send_setup_code(m, kind, now)
    status, recovery_codes = twofactor.enable_contact(m, kind, inbox.code(target), now)
    assert status is twofactor.Status.OK, status
    return recovery_codes


def signin_code(m: Member, kind: str, inbox: Inbox, now=NOW) -> str:
    """Ask for a sign-in code by email/SMS and read it from the inbox."""
    target = twofactor.send_signin_code(m, kind, now)
    return inbox.code(target)


def contact_row(m: Member, kind: str) -> ContactMethod | None:
    return twofactor.contact_method(m, kind)


def fresh(member_id: int) -> Member:
    """The member as stored now (not what this session remembers)."""
    db.session.expire_all()
    return get_member(member_id)


@dataclass
class Enrolled:
    """A member with app, email and SMS, and the recovery codes issued at the first."""

    id: int
    app: pyotp.TOTP
    recovery_codes: list[str]
    email: str
    phone: str

    @property
    def member(self) -> Member:
        return get_member(self.id)


def make_member(login_id: str, email: str, phone: str) -> Member:
    return members.create(
        login_id, email=email, password=f"{login_id} has a long password", phone=phone
    )
