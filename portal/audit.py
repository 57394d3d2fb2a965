"""The audit log: every security event, append-only.

Views call :func:`record_request`, which fills in who acted and from where; the CLI
calls :func:`record` with ``actor_label="cli"``. Details are a small JSON object and
never hold a password, code or secret.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask import has_request_context, request
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from .extensions import db
from .models import AuditEvent, Member, utcnow

# event -> label shown to operators
EVENTS = {
    "signin.success": _l("ログイン成功"),
    "signin.password_failed": _l("ログイン失敗（パスワード）"),
    "signin.second_step_failed": _l("ログイン失敗（二段階認証）"),
    "signin.code_replayed": _l("使用済みの認証コードの再入力"),
    "signin.locked": _l("二段階認証のロック"),
    "signin.blocked": _l("二段階認証の停止（管理者の解除待ち）"),
    "admin.unlock_2fa": _l("管理者による二段階認証のロック解除"),
    "signin.throttled": _l("ログイン試行の制限"),
    "signin.mailbox_only": _l("ログインの拒否（メール再設定後、メール以外の二段階認証なし）"),
    "request.throttled": _l("操作回数の制限"),
    "signout": _l("ログアウト"),
    "sessions.ended_others": _l("ほかの端末からのサインアウト"),
    "admin.signin": _l("管理者のログイン"),
    "reauth.failed": _l("本人確認の失敗"),
    "method.enabled": _l("二段階認証の設定"),
    "method.disabled": _l("二段階認証の無効化"),
    "app.replaced": _l("認証アプリの変更"),
    "recovery.regenerated": _l("リカバリーコードの再発行"),
    "recovery.used": _l("リカバリーコードの使用"),
    "profile.email_changed": _l("メールアドレスの変更"),
    "profile.phone_changed": _l("電話番号の変更"),
    "profile.change_cancelled": _l("連絡先の変更の取り消し"),
    "password.changed": _l("パスワードの変更"),
    "password.reset_requested": _l("パスワード再設定の申し込み"),
    "password.reset": _l("パスワードの再設定"),
    "admin.password_reset_sent": _l("管理者によるパスワード再設定リンクの送信"),
    "admin.reset_2fa": _l("管理者による二段階認証の無効化"),
    "admin.page_saved": _l("メンバーページの保存"),
    "admin.page_deleted": _l("メンバーページの削除"),
    "admin.operator_granted": _l("管理者権限の付与"),
    "admin.export": _l("個人データのエクスポート"),
    "admin.policy_changed": _l("二段階認証方式の設定の変更"),
    "admin.terminal_marked": _l("共用端末の登録"),
    "admin.terminal_removed": _l("共用端末の登録解除"),
    "passkey.added": _l("パスキーの追加"),
    "passkey.renamed": _l("パスキーの名前の変更"),
    "passkey.removed": _l("パスキーの削除"),
    "passkey.cloned": _l("複製のおそれがあるパスキーの使用"),
    "signin.passkey_failed": _l("ログイン失敗（パスキーのみ）"),
    "device.remembered": _l("端末の記憶"),
    "device.forgotten": _l("端末の記憶の解除"),
}


def record(
    event: str,
    *,
    subject: Member | None = None,
    actor: Member | None = None,
    actor_label: str | None = None,
    method: str | None = None,
    ip: str = "",
    user_agent: str = "",
    subject_label: str | None = None,
    **detail: Any,
) -> None:
    """Add one event and commit it, together with whatever the caller left pending (so
    an action and its audit row land in one transaction)."""
    if event not in EVENTS:
        raise ValueError(f"unknown audit event {event!r}")
    db.session.add(
        AuditEvent(
            created_at=utcnow(),
            event=event,
            actor_id=actor.id if actor is not None else None,
            actor_label=actor_label
            if actor_label is not None
            else (actor.login_id if actor else ""),
            subject_id=subject.id if subject is not None else None,
            subject_label=subject_label
            if subject_label is not None
            else (subject.login_id if subject else ""),
            method=method,
            ip=ip[:45],
            user_agent=user_agent[:300],
            detail=json.dumps(detail, ensure_ascii=False, default=str, sort_keys=True),
        )
    )
    db.session.commit()


def record_request(
    event: str, *, subject: Member | None = None, method: str | None = None, **detail: Any
) -> None:
    """Record an event of the current request: the signed-in member acted (or, before
    sign-in, the subject), from this address and browser."""
    actor = None
    if has_request_context() and current_user and current_user.is_authenticated:
        actor = current_user._get_current_object()
    if actor is None:
        actor = subject
    record(
        event,
        subject=subject if subject is not None else actor,
        actor=actor,
        method=method,
        ip=(request.remote_addr or "") if has_request_context() else "",
        user_agent=(request.user_agent.string or "") if has_request_context() else "",
        **detail,
    )


def happened_since(event: str, subject: Member, since: datetime) -> bool:
    """Whether ``event`` was recorded for ``subject`` after ``since`` (to tell a member
    once about a burst of the same thing)."""
    return (
        db.session.scalar(
            db.select(AuditEvent.id)
            .where(
                AuditEvent.subject_id == subject.id,
                AuditEvent.event == event,
                AuditEvent.created_at > since,
            )
            .limit(1)
        )
        is not None
    )
