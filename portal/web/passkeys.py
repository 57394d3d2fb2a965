"""Passkeys as the views see them: the relying party from the configuration, the key
that binds a ceremony to this browser session, and the messages for refusals."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app
from flask_babel import gettext as _

from .. import audit, notices, sessions
from ..config import rp_id_problem
from ..models import Member, Passkey
from ..twofactor import Failure, RelyingParty
from . import policy

DEFAULT_PORTS = {"http": 80, "https": 443}


def relying_party() -> RelyingParty | None:
    """The RP from PORTAL_BASE_URL (never the request's Host header), or None when
    passkeys cannot work there (an IP address, or plain http:// off localhost)."""
    base = current_app.config["PORTAL_BASE_URL"]
    rp_id = current_app.config.get("PORTAL_WEBAUTHN_RP_ID")
    if rp_id_problem(rp_id, base) is not None:
        return None
    parts = urlsplit(base)
    host = (parts.hostname or "").lower()
    port = parts.port
    # The origin a browser reports: scheme and host, with the port only when not default.
    origin = f"{parts.scheme}://{host}" + (
        f":{port}" if port and port != DEFAULT_PORTS.get(parts.scheme) else ""
    )
    return RelyingParty(id=rp_id or host, origin=origin, name=policy.issuer())


def passwordless_allowed() -> bool:
    """パスキーでログイン is offered: passkeys are (policy and address), and the switch is on."""
    return "passkey" in policy.offered() and policy.current().passwordless


def session_key() -> str:
    """The id of this browser session that ceremonies are bound to."""
    return sessions.session_id()


def failure_message(failure: Failure | None) -> str:
    if failure is Failure.GONE:
        return _(
            "パスキーの確認の有効期限が切れたか、別の画面で開始されました。もう一度お試しください。"
        )
    if failure is Failure.UNKNOWN:
        return _("このパスキーは登録されていません。登録済みのパスキーを選んでください。")
    if failure is Failure.CLONED:
        return _(
            "このパスキーは安全のため使えません（複製されたおそれがあります）。"
            "ほかの方法で認証し、パスキーを削除してください。"
        )
    if failure is Failure.DUPLICATE:
        return _("このパスキーは既に登録されています。")
    if failure is Failure.TOO_MANY:
        return _("パスキーは10個まで登録できます。不要なパスキーを削除してから追加してください。")
    return _("パスキーを確認できませんでした。もう一度お試しください。")


def report_clone(member: Member, key: Passkey | None) -> None:
    """A key answered with a sign count that did not grow: audited, and the member told
    (at most once a day: an attacker replaying a copy must not flood the mailbox)."""
    now = sessions.now()
    name = key.name if key is not None else ""
    mailed_lately = audit.happened_since("passkey.cloned", member, now - timedelta(days=1))
    audit.record_request(
        "passkey.cloned",
        subject=member,
        method="passkey",
        key=key.id if key is not None else None,
        name=name,
    )
    if not mailed_lately:
        notices.send(member, "passkey_cloned", now=now, name=name, **notices.request_details())
