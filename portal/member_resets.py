"""The operator's 無効化 of a member's second step, one way for every door: the admin
page's button (admin/member_views.py) and the admin API (api/views.py). The same
effects, audit row and mails whoever asks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from . import audit, notices, twofactor
from .models import Member


def reset_second_step(
    member: Member,
    *,
    actor: Member | None,
    actor_label: str,
    now: datetime,
    ip: str,
    user_agent: str,
    **detail: Any,
) -> list[str]:
    """Remove every method, recovery code, remembered device and session of ``member``
    (twofactor.reset_all), audit it with ``detail`` in the same transaction, mail the
    member, and for an operator every other operator. Returns the methods removed;
    raises twofactor.NoSecondStep, changing nothing, when there was none (a second
    press, or another operator's reset came first)."""
    methods = twofactor.reset_all(member, now=now, commit=False)
    audit.record(  # commits the reset with its row
        "admin.reset_2fa",
        subject=member,
        actor=actor,
        actor_label=actor_label,
        ip=ip,
        user_agent=user_agent,
        methods=methods,
        **detail,
    )
    notices.send(member, "reset", now=now, ip=ip, user_agent=user_agent)
    if member.is_operator:
        notices.tell_operators_of_reset(
            member, actor=actor, actor_label=actor_label, now=now, ip=ip, user_agent=user_agent
        )
    return methods
