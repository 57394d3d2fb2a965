"""Texts of the codes and mails the portal sends, in the member's language.

Rendered from ``templates/mail/`` under the member's stored language (Japanese unless
they chose another; see :func:`portal.i18n.speaking_to`). Links are built from
PORTAL_BASE_URL, never from the request's Host header (a forged Host would otherwise
put an attacker's link in a genuine mail).
"""

from __future__ import annotations

from datetime import datetime

from flask import current_app, render_template
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from . import i18n
from .models import Member
from .web import policy

PURPOSE_SUBJECTS = {
    "signin": _l("ログイン用の認証コード"),
    "setup": _l("二段階認証の設定用の確認コード"),
    "change": _l("連絡先変更の確認コード"),
}


def subject(issuer: str, text: object) -> str:
    """「【issuer】text」, the way every mail's subject starts with the service's name."""
    return _("【%(issuer)s】%(subject)s", issuer=issuer, subject=str(text))


def _code_message(member: Member, purpose: str, code: str, channel: str) -> tuple[str, str]:
    minutes = current_app.config["PORTAL_OTP_SECONDS"] // 60
    template = "mail/code_sms.txt" if channel == "sms" else "mail/code.txt"
    with i18n.speaking_to(member):
        issuer = policy.issuer()
        text = render_template(
            template,
            issuer=issuer,
            code=code,
            minutes=minutes,
            purpose=purpose,
            base_url=current_app.config["PORTAL_BASE_URL"],
        )
        return subject(issuer, PURPOSE_SUBJECTS[purpose]), text


def signin_code(member: Member, code: str, channel: str) -> tuple[str, str]:
    return _code_message(member, "signin", code, channel)


def setup_code(member: Member, code: str, channel: str) -> tuple[str, str]:
    return _code_message(member, "setup", code, channel)


def change_code(member: Member, code: str, channel: str) -> tuple[str, str]:
    return _code_message(member, "change", code, channel)


def invitation(member: Member, token: str, days: int) -> tuple[str, str]:
    """The invitation mail of a member imported without a password: the single-use link
    to set one, the login ID, and how long the link works."""
    return _link_mail(member, token, "mail/invitation.txt", _l("会員ページへのご招待"), days=days)


def password_reset_link(
    member: Member, token: str, minutes: int, *, by_operator: bool
) -> tuple[str, str]:
    """The パスワードをお忘れの方 mail: the single-use link, how long it works, and what
    to do if the member did not ask."""
    return _link_mail(
        member,
        token,
        "mail/password_reset.txt",
        _l("パスワード再設定のご案内"),
        minutes=minutes,
        by_operator=by_operator,
    )


def _link_mail(
    member: Member, token: str, template: str, title: object, **context: object
) -> tuple[str, str]:
    """A mail carrying a /login/reset link, built from PORTAL_BASE_URL."""
    base_url = current_app.config["PORTAL_BASE_URL"]
    with i18n.speaking_to(member):
        issuer = policy.issuer()
        text = render_template(
            template,
            issuer=issuer,
            member=member,
            link=f"{base_url}/login/reset/{token}",
            base_url=base_url,
            **context,
        )
        return subject(issuer, title), text


def form_receipt(
    member: Member, title: str, rows: list[tuple[str, str]], when: datetime
) -> tuple[str, str]:
    """The receipt of a member-area form: what was sent (label, answer), and when."""
    with i18n.speaking_to(member):
        issuer = policy.issuer()
        text = render_template(
            "mail/form_receipt.txt",
            issuer=issuer,
            member=member,
            title=title,
            rows=rows,
            when=i18n.local_time(when, "mail", zone=i18n.member_timezone(member)),
            base_url=current_app.config["PORTAL_BASE_URL"],
        )
        return subject(issuer, _("「%(title)s」を受け付けました", title=title)), text
