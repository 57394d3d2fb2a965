"""Security notices mailed to the member: what happened, when, from where, and what to
do if it was not them, in the member's language and time zone. A failed send never
blocks the action; it is logged."""

from __future__ import annotations

import logging
from datetime import datetime

from flask import current_app, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from . import i18n, notify, useragent
from .messages import subject
from .models import Member
from .web import policy

log = logging.getLogger(__name__)

SUBJECTS = {
    "method_enabled": _l("二段階認証の方法が追加されました"),
    "method_disabled": _l("二段階認証の方法が無効化されました"),
    "app_replaced": _l("認証アプリが変更されました"),
    "recovery_regenerated": _l("リカバリーコードが再発行されました"),
    "recovery_used": _l("リカバリーコードでログインしました"),
    "email_changed": _l("メールアドレスが変更されました"),
    "phone_changed": _l("電話番号が変更されました"),
    "password_changed": _l("パスワードが変更されました"),
    "password_reset": _l("パスワードが再設定されました"),
    "reset": _l("管理者が二段階認証を無効化しました"),
    "operator_reset": _l("管理者の二段階認証が無効化されました"),
    "tfa_locked": _l("二段階認証のコード入力に続けて失敗しました"),
    "code_replayed": _l("使用済みの認証コードが入力されました"),
    "passkey_added": _l("パスキーが追加されました"),
    "passkey_removed": _l("パスキーが削除されました"),
    "passkey_cloned": _l("複製されたおそれのあるパスキーが使われました"),
    "device_remembered": _l("新しい端末でコード入力のスキップが設定されました"),
    "tfa_blocked": _l("二段階認証を停止しました"),
    "tfa_unlocked": _l("二段階認証のロックが解除されました"),
}


def send(
    member: Member,
    event: str,
    *,
    now: datetime,
    ip: str,
    user_agent: str,
    to: str | None = None,
    **details: object,
) -> bool:
    """Mail a notice to ``to`` (default: the member's current email). Returns whether
    it was handed over; failures are logged, never raised."""
    address = to or member.email
    if not address:
        return False
    zone = i18n.member_timezone(member)
    with i18n.speaking_to(member):
        issuer = policy.issuer()
        when = i18n.local_time(now, "mail", zone=zone)
        if zone != i18n.site_timezone():
            when = _("%(when)s（%(zone)s）", when=when, zone=zone)
        text = render_template(
            "mail/notice.txt",
            event=event,
            member=member,
            issuer=issuer,
            when=when,
            ip=ip or _("不明"),
            browser=useragent.shown(useragent.describe(user_agent)),
            base_url=current_app.config["PORTAL_BASE_URL"],
            **details,
        )
        title = subject(issuer, SUBJECTS[event])
    try:
        notify.send_email(address, title, text)
    except notify.DeliveryError:
        log.warning("notice %s to member %s could not be sent", event, member.login_key)
        return False
    return True


def tell_operators_of_reset(
    subject: Member,
    *,
    actor: Member | None,
    actor_label: str,
    now: datetime,
    ip: str,
    user_agent: str,
) -> int:
    """An operator's 2FA was reset: every other operator hears of it, so a rogue or
    hijacked operator account cannot quietly weaken another one. Returns how many mails
    went out."""
    from .extensions import db

    others = db.session.scalars(
        db.select(Member)
        .where(Member.is_operator.is_(True), Member.id != subject.id)
        .where(Member.id != (actor.id if actor is not None else -1))
        .order_by(Member.id)
    )
    return sum(
        send(
            operator,
            "operator_reset",
            now=now,
            ip=ip,
            user_agent=user_agent,
            target=subject,
            actor_label=actor_label,
        )
        for operator in others
    )


def request_details() -> dict[str, str]:
    """Where the current request came from, for the notice's "from where"."""
    return {
        "ip": request.remote_addr or "",
        "user_agent": (request.user_agent.string or "")[:300],
    }
