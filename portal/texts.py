"""UI messages shared by several views (the quoted ones are part of the contract)."""

from __future__ import annotations

from datetime import UTC, datetime

from flask_babel import format_datetime
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from .i18n import local_time
from .twofactor import Refusal, SendRefused, Status

WRONG_CODE = _l("認証コードが正しくありません。")
TOO_MANY = _l("ログインの試行回数が多すぎます。しばらく待ってから再度お試しください。")
MAILBOX_ONLY = _l(
    "パスワードをメールで再設定したため、メールの認証コードではログインできません。"
    "リカバリーコードも残っていないため、管理者に連絡してください。"
)

METHOD_NAMES = {
    "app": _l("認証アプリによる認証"),
    "email": _l("メールによる認証"),
    "sms": _l("SMSによる認証"),
    "passkey": _l("パスキー・セキュリティキーによる認証"),
}
METHOD_SHORT = {
    "app": _l("認証アプリ"),
    "email": _l("メール"),
    "sms": _l("SMS"),
    "passkey": _l("パスキー"),
}


BLOCKED = _l(
    "認証に続けて失敗したため、二段階認証を停止しています。"
    "管理者に連絡して、ロックを解除してもらってください。"
)


def lock_message(until: datetime | None, now: datetime | None = None) -> str:
    """The lock's end in the member's time zone; with the date when it is not today."""
    if until is None:
        return str(BLOCKED)
    now = now or datetime.now(UTC)
    same_day = format_datetime(until, "yyyyMMdd") == format_datetime(now, "yyyyMMdd")
    return _(
        "認証に続けて失敗したため、一時的にロックしています。%(time)s 以降に再度お試しください。",
        time=local_time(until, "time" if same_day else "month_day_time"),
    )


def code_status_message(status: Status | None) -> str:
    if status is Status.USED:
        return _("この認証コードは既に使用されています。新しいコードを送信してください。")
    if status is Status.EXPIRED:
        return _("認証コードの有効期限が切れています。新しいコードを送信してください。")
    if status is Status.EXHAUSTED:
        return _(
            "入力回数の上限に達したため、このコードは無効になりました。新しいコードを送信してください。"
        )
    return str(WRONG_CODE)


def refusal_message(refused: SendRefused, kind: str) -> str | None:
    """Why nothing was sent, as an error; None for the 60-second spacing, which pages
    show as help text with a countdown (``resend_wait``), not as an error."""
    if refused.reason is Refusal.LOCKED:
        return lock_message(refused.until)
    if refused.reason is Refusal.TOO_SOON:
        return None
    if refused.reason in (Refusal.MEMBER_CAP, Refusal.SITE_CAP):
        if kind == "sms":
            return _(
                "本日送信できるSMSの上限に達しました。"
                "別の方法で認証するか、明日以降に再度お試しください。"
            )
        return _(
            "本日送信できるメールの上限に達しました。"
            "別の方法で認証するか、明日以降に再度お試しください。"
        )
    if kind == "sms":
        return _("SMSを送信できませんでした。時間をおいて再度お試しください。")
    return _("メールを送信できませんでした。時間をおいて再度お試しください。")


def resend_wait_message(seconds: int) -> str:
    """The 60-second spacing between codes: help text, counted down by portal.js."""
    return _("あと%(seconds)d秒で再送できます。", seconds=seconds)


def sent_message(kind: str, masked: str) -> str:
    if kind == "sms":
        return _("%(to)s にSMSで認証コードを送信しました。", to=masked)
    return _("%(to)s に認証コードを送信しました。", to=masked)


# The scopes of an admin-API token (portal/api_tokens.py), as operators read them.
API_SCOPES = {
    "read": _l("読み取り"),
    "write": _l("読み取りと操作"),
}
