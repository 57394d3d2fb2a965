"""Texts of the codes and notices the portal sends, in Japanese.

Rendered from ``templates/mail/``. Links are built from PORTAL_BASE_URL, never from
the request's Host header (a forged Host would otherwise put an attacker's link in a
genuine mail).
"""

from __future__ import annotations

from flask import current_app, render_template

from .models import Member
from .web import policy

PURPOSE_SUBJECTS = {
    "signin": "ログイン用の認証コード",
    "setup": "二段階認証の設定用の確認コード",
    "change": "連絡先変更の確認コード",
}


def _code_message(purpose: str, code: str, channel: str) -> tuple[str, str]:
    issuer = policy.issuer()
    minutes = current_app.config["PORTAL_OTP_SECONDS"] // 60
    subject = f"【{issuer}】{PURPOSE_SUBJECTS[purpose]}"
    template = "mail/code_sms.txt" if channel == "sms" else "mail/code.txt"
    text = render_template(
        template,
        issuer=issuer,
        code=code,
        minutes=minutes,
        purpose=purpose,
        base_url=current_app.config["PORTAL_BASE_URL"],
    )
    return subject, text


def signin_code(code: str, channel: str) -> tuple[str, str]:
    return _code_message("signin", code, channel)


def setup_code(code: str, channel: str) -> tuple[str, str]:
    return _code_message("setup", code, channel)


def change_code(code: str, channel: str) -> tuple[str, str]:
    return _code_message("change", code, channel)


def password_reset_link(
    member: Member, token: str, minutes: int, *, by_operator: bool
) -> tuple[str, str]:
    """The パスワードをお忘れの方 mail: the single-use link (from PORTAL_BASE_URL), how
    long it works, and what to do if the member did not ask."""
    issuer = policy.issuer()
    base_url = current_app.config["PORTAL_BASE_URL"]
    text = render_template(
        "mail/password_reset.txt",
        issuer=issuer,
        member=member,
        link=f"{base_url}/login/reset/{token}",
        minutes=minutes,
        by_operator=by_operator,
        base_url=base_url,
    )
    return f"【{issuer}】パスワード再設定のご案内", text
