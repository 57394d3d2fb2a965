"""The policy's enforcement levels, applied on every request.

``recommend``: a member without 2FA sees a banner on every member page (not the admin
area) until they hide it for the session. ``required``: the same during the grace
period, with the days left; after it, the member reaches only the set-up page, its
dialogs, sign-out and static files until a method the policy offers is set up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from flask import Flask, request, session, url_for
from flask_login import current_user

from .. import sessions, twofactor
from ..models import Member
from ..twofactor import policy as rules
from . import policy
from .htmx import redirect_to

BANNER_HIDDEN = "tfa_banner_hidden"
# Set at the first sign-in after an operator's reset: the set-up page says so once.
RESET_NOTICE = "tfa_reset_notice"
# What a member who must set up 2FA first may still reach.
OPEN_WHILE_ENROLLING = {
    "static",
    "settings.setup",
    "settings.totp_setup",
    "settings.contact_setup",
    "settings.contact_send",
    "settings.passkey_setup",
    "settings.passkey_register",
    "settings.reauth",
    "settings.reauth_send",
    "settings.reauth_passkey",
    "health.healthz",  # for load balancers; says nothing about anyone
}


@dataclass(frozen=True)
class Enrolment:
    level: str  # "off" | "recommend" | "required"
    has_two_factor: bool  # a method the policy offers is set up
    deadline: datetime | None  # required: when set-up is forced

    def forced(self, now: datetime) -> bool:
        return (
            not self.has_two_factor
            and self.level == "required"
            and self.deadline is not None
            and now >= self.deadline
        )

    def days_left(self, now: datetime) -> int | None:
        if self.level != "required" or self.deadline is None or now >= self.deadline:
            return None
        return max(1, math.ceil((self.deadline - now).total_seconds() / 86400))


def enrolment(member: Member) -> Enrolment:
    row = policy.current()
    return Enrolment(
        level=rules.level_for(row, member),
        has_two_factor=bool(twofactor.usable_methods(member, policy.offered())),
        deadline=rules.setup_deadline(row, member),
    )


def banner() -> dict | None:
    """The banner for this page, if any: members without 2FA under recommend/required,
    on member pages only, until hidden for the session."""
    if (
        not current_user.is_authenticated
        or session.get(BANNER_HIDDEN)
        or request.blueprint == "admin"
        or request.endpoint == "settings.setup"
    ):
        return None
    state = enrolment(current_user._get_current_object())
    if state.has_two_factor or state.level == "off":
        return None
    return {"days_left": state.days_left(sessions.now()), "required": state.level == "required"}


def init_app(app: Flask) -> None:
    @app.before_request
    def send_to_setup():
        endpoint = request.endpoint
        if (
            endpoint is None
            or endpoint in OPEN_WHILE_ENROLLING
            or endpoint.startswith("auth.")
            or not current_user.is_authenticated
        ):
            return None
        if enrolment(current_user._get_current_object()).forced(sessions.now()):
            return redirect_to(url_for("settings.setup"))
        return None

    @app.context_processor
    def tfa_banner() -> dict:
        return {"tfa_banner": banner}
