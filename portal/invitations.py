"""Invitations: the single-use link a member who has no password yet (imported by
``members import``) gets to set one, and the one function every sender uses.

An invitation is a password-reset link (portal/password_reset.py: random token, only its
keyed hash stored, single use, voided by a newer link or a password set any way) that
lives PORTAL_INVITE_DAYS days instead of 30 minutes and says "welcome" instead of
"reset". The second step is untouched: an invited member sets up two-step verification
as the policy asks, after the password.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app

from . import members, messages, notify, password_reset
from .extensions import db
from .models import Member


@dataclass(frozen=True)
class Sent:
    """What :func:`send_link` sent: an "invitation" or a "reset" link, how long it
    works, and whether the mail server took the mail."""

    kind: str
    lifetime: timedelta
    mailed: bool

    @property
    def minutes(self) -> int:
        return int(self.lifetime.total_seconds() // 60)

    @property
    def days(self) -> int:
        return self.lifetime.days

    def audit(self) -> tuple[str, dict[str, object]]:
        """The audit event and details of this sending, for whichever door sent it."""
        if self.kind == "invitation":
            return "member.invited", {"mailed": self.mailed, "days": self.days}
        return "admin.password_reset_sent", {"mailed": self.mailed}


def invite_lifetime(days: int | None = None) -> timedelta:
    return timedelta(days=days or current_app.config["PORTAL_INVITE_DAYS"])


def send_link(member: Member, now: datetime, *, requested_by: str, days: int | None = None) -> Sent:
    """Mail ``member`` the link they need: an invitation while they have no password,
    else a password-reset link (sent by an operator when ``requested_by`` names one, as
    the mail then says; "" for パスワードをお忘れの方). Raises ValueError for a member
    without an email address (nowhere to send it)."""
    if not member.email:
        raise ValueError("the member has no email address")
    if members.has_password(member):
        lifetime = password_reset.LIFETIME
        token = password_reset.issue(member, now, requested_by, lifetime)
        subject, text = messages.password_reset_link(
            member, token, password_reset.MINUTES, by_operator=bool(requested_by)
        )
        kind = "reset"
    else:
        lifetime = invite_lifetime(days)
        token = password_reset.issue(member, now, requested_by, lifetime)
        subject, text = messages.invitation(member, token, lifetime.days)
        kind = "invitation"
    try:
        notify.send_email(member.email, subject, text)
    except notify.DeliveryError:
        return Sent(kind, lifetime, mailed=False)
    return Sent(kind, lifetime, mailed=True)


def invite_all(
    member_ids: Iterable[int],
    now: datetime,
    *,
    requested_by: str,
    record: Callable[[Member, Sent], None],
    days: int | None = None,
) -> tuple[int, int]:
    """Invite each of these (just imported) members; ``record`` audits each sending the
    caller's way (the CLI's, or the operator's request). Returns how many mails went
    and how many could not be sent."""
    mailed = failed = 0
    for member_id in member_ids:
        member = db.session.get(Member, member_id)
        if member is None:
            continue  # deleted meanwhile
        sent = send_link(member, now, requested_by=requested_by, days=days)
        record(member, sent)
        mailed += sent.mailed
        failed += not sent.mailed
    return mailed, failed
