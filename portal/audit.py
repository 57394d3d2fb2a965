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
from flask_babel import lazy_pgettext
from flask_login import current_user

from .extensions import db
from .models import AuditEvent, Member, utcnow

# event -> label shown to operators (a context of its own: "パスワードの変更" names a
# past event here, and a page elsewhere)
EVENTS = {
    "signin.success": lazy_pgettext("audit event", "ログイン成功"),
    "signin.password_failed": lazy_pgettext("audit event", "ログイン失敗（パスワード）"),
    "signin.second_step_failed": lazy_pgettext("audit event", "ログイン失敗（二段階認証）"),
    "signin.code_replayed": lazy_pgettext("audit event", "使用済みの認証コードの再入力"),
    "signin.locked": lazy_pgettext("audit event", "二段階認証のロック"),
    "signin.blocked": lazy_pgettext("audit event", "二段階認証の停止（管理者の解除待ち）"),
    "admin.unlock_2fa": lazy_pgettext("audit event", "管理者による二段階認証のロック解除"),
    "signin.throttled": lazy_pgettext("audit event", "ログイン試行の制限"),
    "signin.mailbox_only": lazy_pgettext(
        "audit event", "ログインの拒否（メール再設定後、メール以外の二段階認証なし）"
    ),
    "request.throttled": lazy_pgettext("audit event", "操作回数の制限"),
    "signout": lazy_pgettext("audit event", "ログアウト"),
    "sessions.ended_others": lazy_pgettext("audit event", "ほかの端末からのサインアウト"),
    "admin.signin": lazy_pgettext("audit event", "管理者のログイン"),
    "reauth.failed": lazy_pgettext("audit event", "本人確認の失敗"),
    "method.enabled": lazy_pgettext("audit event", "二段階認証の設定"),
    "method.disabled": lazy_pgettext("audit event", "二段階認証の無効化"),
    "app.replaced": lazy_pgettext("audit event", "認証アプリの変更"),
    "recovery.regenerated": lazy_pgettext("audit event", "リカバリーコードの再発行"),
    "recovery.used": lazy_pgettext("audit event", "リカバリーコードの使用"),
    "profile.email_changed": lazy_pgettext("audit event", "メールアドレスの変更"),
    "profile.phone_changed": lazy_pgettext("audit event", "電話番号の変更"),
    "profile.change_cancelled": lazy_pgettext("audit event", "連絡先の変更の取り消し"),
    "password.changed": lazy_pgettext("audit event", "パスワードの変更"),
    "password.reset_requested": lazy_pgettext("audit event", "パスワード再設定の申し込み"),
    "password.reset": lazy_pgettext("audit event", "パスワードの再設定"),
    "admin.password_reset_sent": lazy_pgettext(
        "audit event", "管理者によるパスワード再設定リンクの送信"
    ),
    "admin.reset_2fa": lazy_pgettext("audit event", "管理者による二段階認証の無効化"),
    "admin.page_saved": lazy_pgettext("audit event", "メンバーページの保存"),
    "admin.page_deleted": lazy_pgettext("audit event", "メンバーページの削除"),
    "admin.form_saved": lazy_pgettext("audit event", "フォームの保存"),
    "admin.form_deleted": lazy_pgettext("audit event", "フォームの削除"),
    "form.submitted": lazy_pgettext("audit event", "フォームの送信"),
    "admin.operator_granted": lazy_pgettext("audit event", "管理者権限の付与"),
    "admin.export": lazy_pgettext("audit event", "個人データのエクスポート"),
    "admin.policy_changed": lazy_pgettext("audit event", "二段階認証方式の設定の変更"),
    "admin.terminal_marked": lazy_pgettext("audit event", "共用端末の登録"),
    "admin.terminal_removed": lazy_pgettext("audit event", "共用端末の登録解除"),
    "api.token_created": lazy_pgettext("audit event", "APIトークンの作成"),
    "api.token_revoked": lazy_pgettext("audit event", "APIトークンの失効"),
    "api.request": lazy_pgettext("audit event", "APIの呼び出し"),
    "api.refused": lazy_pgettext("audit event", "APIの呼び出しの拒否"),
    "passkey.added": lazy_pgettext("audit event", "パスキーの追加"),
    "passkey.renamed": lazy_pgettext("audit event", "パスキーの名前の変更"),
    "passkey.removed": lazy_pgettext("audit event", "パスキーの削除"),
    "passkey.cloned": lazy_pgettext("audit event", "複製のおそれがあるパスキーの使用"),
    "signin.passkey_failed": lazy_pgettext("audit event", "ログイン失敗（パスキーのみ）"),
    "device.remembered": lazy_pgettext("audit event", "端末の記憶"),
    "device.forgotten": lazy_pgettext("audit event", "端末の記憶の解除"),
    "members.imported": lazy_pgettext("audit event", "メンバーの一括取り込み"),
    "member.invited": lazy_pgettext("audit event", "招待メールの送信"),
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
