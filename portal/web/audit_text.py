"""Audit events in words for operators: the admin log, the member page and the CSV.

The log stores each event's details as a small JSON object with internal keys
(``{"methods": ["app"]}``); operators read a Japanese sentence instead
(「無効化した方法：認証アプリ」). One wording per event type the code records; keys
without a wording (an event added later) fall back to a readable 「名前: 値」 list,
never raw JSON. Values come from the portal itself (masked addresses, slugs, browser
families from an allow-list, an operator's filter); Jinja escapes them on the page and
the CSV neutralises formulas.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from .. import useragent
from ..audit import EVENTS
from ..i18n import local_time
from ..texts import API_SCOPES

METHOD_NAMES = {
    "app": _l("認証アプリ"),
    "email": _l("メール"),
    "sms": _l("SMS"),
    "passkey": _l("パスキー"),
    "recovery": _l("リカバリーコード"),
}

# What a rate limit counted (the throttle's scope names).
LIMITS = {
    "login-address": _l("同じIPアドレスからのログイン"),
    "login-account": _l("このアカウントへのログインの失敗"),
    "login-account-address": _l("同じIPアドレスからこのアカウントへのログインの失敗"),
    "login-device": _l("このブラウザからこのアカウントへのログインの失敗"),
    "verify": _l("認証コードの入力"),
    "recovery": _l("リカバリーコードの入力"),
    "resend": _l("コードの再送"),
    "reauth": _l("本人確認"),
    "passkey": _l("パスキーだけでのログイン"),
    "passkey-options": _l("パスキーでのログインの開始"),
    "admin": _l("管理画面での操作"),
    "form": _l("フォームの確認・送信"),
    "api": _l("このAPIトークンでの呼び出し"),
    "api-refused": _l("同じIPアドレスからの拒否されたAPIの呼び出し"),
    "reset-account": _l("このアカウントのパスワード再設定の申し込み"),
    "reset-address": _l("同じIPアドレスからのパスワード再設定の申し込み"),
    "reset-token": _l("パスワード再設定のリンクの使用"),
}

EXPORTS = {
    "members.csv": _l("メンバー一覧（members.csv）"),
    "audit.csv": _l("監査ログ（audit.csv）"),
    "members list": _l("メンバー一覧（コマンド）"),
    "form_submissions.csv": _l("フォームの送信内容（CSV）"),
}

FILTERS = {
    "q": _l("検索"),
    "tfa": _l("二段階認証"),
    "method": _l("方法"),
    "member": _l("メンバー"),
    "event": _l("イベント"),
    "from": _l("開始日"),
    "to": _l("終了日"),
    "form": _l("フォーム"),
    "stepped_up": _l("送信前の二段階認証"),
}

POLICY_FIELDS = {
    "enforcement": _l("メンバーへの二段階認証の必須化"),
    "operator_enforcement": _l("管理者への二段階認証の必須化"),
    "grace_days": _l("猶予期間（日数）"),
    "allow_remember_device": _l("コード入力をスキップする端末の記憶"),
    "remember_days": _l("スキップを続ける日数"),
    "trusted_networks": _l("信頼済みネットワーク"),
    "shared_terminal_skip": _l("共用端末でのスキップ"),
    "methods": _l("メンバーが使える方法"),
    "passwordless": _l("パスキーだけでのログイン"),
    "issuer": _l("サービス名"),
    "landing_path": _l("ログイン後に表示するページ"),
}
LEVELS = {"off": _l("求めない"), "recommend": _l("すすめる"), "required": _l("必須")}

# Names for keys in the fallback list (any event).
KEYS = {
    "method": _l("方法"),
    "methods": _l("方法"),
    "label": _l("端末"),
    "device": _l("端末"),
    "terminal": _l("共用端末"),
    "count": _l("件数"),
    "left": _l("残り"),
    "until": _l("期限"),
    "slug": _l("ページ"),
    "page_id": _l("ページ番号"),
    "created": _l("新規作成"),
    "listed": _l("マイページとメニューに表示"),
    "menu_order": _l("表示順"),
    "old": _l("変更前"),
    "new": _l("変更後"),
    "bucket": _l("制限"),
    "known_id": _l("登録済みのログインID"),
    "was_blocked": _l("停止中だった"),
    "export": _l("出力"),
    "filters": _l("条件"),
    "changes": _l("変更"),
    "via": _l("入力されたもの"),
    "kind": _l("種類"),
    "mailed": _l("メール送信"),
    "requested_by": _l("リンクを申し込んだ人"),
    "days": _l("有効期限（日）"),
    "updated": _l("更新"),
    "unchanged": _l("変更なし"),
    "rejected": _l("問題のある行"),
    "name": _l("名前"),
    "key": _l("パスキー番号"),
    "reason": _l("理由"),
    "token": _l("APIトークン"),
    "token_id": _l("APIトークンの番号"),
    "scope": _l("権限"),
    "expires_at": _l("有効期限"),
    "call": _l("呼び出し"),
    "status": _l("応答"),
}

NONE = _l("（なし）")


def join_words(parts: Any) -> str:
    """Items of a list in a sentence: 「、」 in Japanese, ", " in English."""
    return _("、").join(parts)


def method_name(kind: str | None) -> str:
    """「認証アプリ」 for ``app``; an unknown key as it is, nothing for none."""
    if not kind:
        return ""
    return str(METHOD_NAMES.get(kind, kind))


def _methods(value: Any) -> str:
    kinds = value.split(",") if isinstance(value, str) else value
    if not isinstance(kinds, list):
        return _value(value)
    return join_words(method_name(str(k).strip()) for k in kinds if str(k).strip()) or str(NONE)


def _time(value: Any) -> str:
    try:
        return local_time(datetime.fromisoformat(str(value)))
    except ValueError:
        return _value(value)


def _value(value: Any, key: str = "") -> str:
    """Any stored value as plain words: はい/いいえ, lists with 「、」, nested 「名前: 値」."""
    if key in ("method", "methods"):
        return _methods(value)
    if isinstance(value, bool):
        return _("はい") if value else _("いいえ")
    if value is None or value == "":
        return str(NONE)
    if isinstance(value, list):
        return join_words(_value(v) for v in value) or str(NONE)
    if isinstance(value, dict):
        return join_words(f"{_key(k)}: {_value(v, k)}" for k, v in value.items()) or str(NONE)
    return str(value)


def _key(key: str) -> str:
    return str(KEYS.get(key, key))


def _page(slug: Any) -> str:
    return f"/pages/{slug}"


# --- one wording per event: each takes the details it words out of ``d`` -------------


def _password_failed(d: dict) -> str:
    known = d.pop("known_id", None)
    if known is None:
        return ""
    if known:
        return _("登録済みのログインIDで、パスワードが違っていました。")
    return _("登録されていないログインIDでした（入力された文字は記録していません）。")


def _throttled(d: dict) -> str:
    bucket = d.pop("bucket", None)
    if bucket is None:
        return ""
    what = LIMITS.get(bucket)
    if what is None:
        return _("制限：%(what)s", what=_value(bucket))
    return _("%(what)sの回数が上限に達しました。", what=what)


def _locked(d: dict) -> str:
    if "until" not in d:
        return ""
    return _("%(time)s までロックしました。", time=_time(d.pop("until")))


def _unlocked(d: dict) -> str:
    if "was_blocked" not in d:
        return ""
    if d.pop("was_blocked"):
        return _("停止していた二段階認証（管理者の解除待ち）を解除しました。")
    return _("一時的なロックを解除しました。")


def _reset(d: dict) -> str:
    if "methods" not in d:
        return ""
    return _("無効化した方法：%(methods)s", methods=_methods(d.pop("methods")))


def _page_saved(d: dict) -> str:
    d.pop("page_id", None)
    slug = _page(d.pop("slug", ""))
    said = (
        _("ページ %(page)s を作成しました。", page=slug)
        if d.pop("created", False)
        else _("ページ %(page)s を更新しました。", page=slug)
    )
    if "listed" in d:
        order = d.pop("menu_order", None)
        if d.pop("listed"):
            said += _("マイページとメニューに表示（表示順 %(n)s）。", n=_value(order))
        else:
            said += _("マイページとメニューには表示しません。")
    return said


def _form(slug: Any) -> str:
    return f"/forms/{slug}"


def _form_saved(d: dict) -> str:
    d.pop("form_id", None)
    slug = _form(d.pop("slug", ""))
    created = d.pop("created", False)
    said = (
        _("フォーム %(form)s を作成しました。", form=slug)
        if created
        else _("フォーム %(form)s を更新しました。", form=slug)
    )
    if "open" in d:
        said += _("受付中。") if d.pop("open") else _("受付を停止中。")
    if "step_up_minutes" in d:
        minutes = d.pop("step_up_minutes")
        if minutes:
            said += _("送信前に%(n)s分以内の二段階認証が必要。", n=_value(minutes))
    return said


def _form_deleted(d: dict) -> str:
    d.pop("form_id", None)
    said = _("フォーム %(form)s を削除しました。", form=_form(d.pop("slug", "")))
    if "submissions" in d:
        said += _("送信内容%(n)s件も削除しました。", n=_value(d.pop("submissions")))
    return said


def _form_submitted(d: dict) -> str:
    d.pop("submission_id", None)
    said = _("フォーム %(form)s を送信しました。", form=_form(d.pop("slug", "")))
    if d.pop("stepped_up", False):
        said += _("送信前に二段階認証で本人確認しました。")
    return said


def _page_deleted(d: dict) -> str:
    d.pop("page_id", None)
    return _("ページ %(page)s を削除しました。", page=_page(d.pop("slug", "")))


def _export(d: dict) -> str:
    what = d.pop("export", None)
    filters = d.pop("filters", None) or {}
    said = _("%(what)sを出力しました。", what=EXPORTS.get(what, what)) if what else ""
    if not isinstance(filters, dict):
        return said + _("条件：%(filters)s", filters=_value(filters))
    shown = []
    for key, value in filters.items():
        if value in ("", None):
            continue
        if key == "tfa":
            text = {"on": _("設定済み"), "off": _("未設定")}.get(value, _value(value))
        elif key == "method":
            text = method_name(value)
        elif key == "event":
            text = str(EVENTS.get(value, value))
        else:
            text = _value(value)
        shown.append(f"{FILTERS.get(key, key)}: {text}")
    return said + _("条件：%(filters)s", filters=join_words(shown) if shown else _("なし"))


def _policy_value(field: str, value: Any) -> str:
    if field == "methods":
        return _methods(value)
    if field in ("enforcement", "operator_enforcement"):
        return str(LEVELS.get(value, value))
    if field in ("allow_remember_device", "shared_terminal_skip", "passwordless"):
        return {"yes": _("はい"), "no": _("いいえ")}.get(value, _value(value))
    if field == "trusted_networks" and isinstance(value, str):
        return join_words(line.strip() for line in value.splitlines() if line.strip()) or str(NONE)
    return _value(value)


def _policy(d: dict) -> str:
    changes = d.pop("changes", None)
    if not isinstance(changes, dict):
        return _value(changes) if changes is not None else ""
    said = []
    for field, pair in changes.items():
        old, new = pair if isinstance(pair, list) and len(pair) == 2 else (None, pair)
        said.append(
            _(
                "%(field)s：%(old)s → %(new)s",
                field=str(POLICY_FIELDS.get(field, field)),
                old=_policy_value(field, old),
                new=_policy_value(field, new),
            )
        )
    return join_words(said)


def _terminal(d: dict) -> str:
    d.pop("terminal", None)
    return _("端末「%(label)s」", label=useragent.shown(_value(d.pop("label", ""))))


# Why the admin API refused a call (portal/api: the codes of its 401 answers).
API_REFUSALS = {
    "token_missing": _l("トークンなし"),
    "token_malformed": _l("形式が正しくないトークン"),
    "token_invalid": _l("登録されていないトークン"),
    "token_expired": _l("期限切れのトークン"),
    "token_revoked": _l("失効したトークン"),
}


def _token(d: dict) -> str:
    """「名前」（権限） of an API token, from its name and scope."""
    name = _value(d.pop("token", ""))
    if "token_id" in d:  # names can be used again once a token is gone: the id tells
        name = f"{name} #{_value(d.pop('token_id'))}"
    scope = d.pop("scope", None)
    if scope is None:
        return _("「%(name)s」", name=name)
    return _("「%(name)s」（%(scope)s）", name=name, scope=API_SCOPES.get(scope, scope))


def _token_created(d: dict) -> str:
    if "token" not in d:
        return ""
    until = d.pop("expires_at", None)
    token = _token(d)
    if until:
        return _(
            "トークン%(token)sを作成しました（有効期限 %(until)s）。",
            token=token,
            until=_time(until),
        )
    return _("トークン%(token)sを作成しました（無期限）。", token=token)


def _token_revoked(d: dict) -> str:
    return _("トークン%(token)sを失効させました。", token=_token(d)) if "token" in d else ""


def _api_call(d: dict) -> str:
    """An API call: who (the token's name), what (method and path) and the answer."""
    call = d.pop("call", None)
    if call is None:
        return ""
    said = _value(call)
    if "status" in d:
        said = _("%(call)s（%(status)s）", call=said, status=_value(d.pop("status")))
    reason = d.pop("reason", None)
    if reason is not None:
        said += _("：%(reason)s", reason=API_REFUSALS.get(reason, reason))
    if "token" in d:
        said = _("トークン%(token)s：%(call)s", token=_token(d), call=said)
    return said


def _remembered(d: dict) -> str:
    d.pop("device", None)
    return _("端末「%(label)s」", label=useragent.shown(_value(d.pop("label", ""))))


def _forgotten(d: dict) -> str:
    if "count" in d:
        return _("%(n)s台の端末の記憶を解除しました。", n=_value(d.pop("count")))
    if d.pop("device", None) is not None:
        return _("1台の端末の記憶を解除しました。")
    return ""


PASSKEY_REASONS = {
    "gone": _l("確認の有効期限切れ"),
    "invalid": _l("検証できない応答"),
    "unknown": _l("登録されていないパスキー"),
    "cloned": _l("使用回数が減った（複製のおそれ）"),
    "locked": _l("二段階認証のロック中"),
    "not_allowed": _l("パスキーだけでのログインは許可されていません"),
}


def _passkey(d: dict) -> str:
    key, name = d.pop("key", None), d.pop("name", None)
    if "old" in d and "new" in d:
        said = _(
            "パスキーの名前「%(old)s」→「%(new)s」",
            old=_value(d.pop("old")),
            new=_value(d.pop("new")),
        )
    elif name:
        said = _("パスキー「%(name)s」", name=_value(name))
    elif key is not None:
        said = _("パスキー（番号 %(n)s）", n=_value(key))
    else:
        said = ""
    if "reason" in d:
        reason = d.pop("reason")
        said = " ".join(p for p in (said, str(PASSKEY_REASONS.get(reason, _value(reason)))) if p)
    return said


def _recovery_used(d: dict) -> str:
    if "left" not in d:
        return ""
    return _("残りのリカバリーコード：%(n)s個", n=_value(d.pop("left")))


def _contact_changed(d: dict) -> str:
    if "old" not in d and "new" not in d:
        return ""
    return f"{_value(d.pop('old', None))} → {_value(d.pop('new', None))}"


def _reset_requested(d: dict) -> str:
    via = d.pop("via", None)
    said = {
        "email": _("メールアドレスで申し込みがありました。"),
        "login_id": _("ログインIDで申し込みがありました。"),
    }.get(via, "")
    if via is not None and not said:
        d["via"] = via  # unknown: left to the list
    if "mailed" not in d:
        return said
    if d.pop("mailed"):
        return said + _("再設定のリンクをメールで送りました。")
    return said + _(
        "メールは送っていません（該当するメンバーがいないか、メールアドレスがありません）。"
    )


def _link_sent(d: dict) -> str:
    if "mailed" not in d:
        return ""
    if d.pop("mailed"):
        return _("再設定のリンクをメールで送りました。")
    return _("メールを送信できませんでした。")


def _password_reset(d: dict) -> str:
    if "requested_by" not in d:
        return ""
    return _("リンクを申し込んだ人：%(who)s", who=_value(d.pop("requested_by")))


def _change_cancelled(d: dict) -> str:
    said = {
        "email": _("メールアドレスの変更を取り消しました。"),
        "sms": _("電話番号の変更を取り消しました。"),
    }.get(d.get("kind"), "")
    if said:
        d.pop("kind")
    return said


def _imported(d: dict) -> str:
    keys = ("created", "updated", "unchanged", "rejected")
    if not all(key in d for key in keys):
        return ""
    counts = {key: _value(d.pop(key)) for key in keys}
    return _(
        "作成 %(created)s 件、更新 %(updated)s 件、変更なし %(unchanged)s 件、"
        "問題のある行 %(rejected)s 件",
        **counts,
    )


def _invited(d: dict) -> str:
    if "mailed" not in d or "days" not in d:
        return ""
    days = _value(d.pop("days"))
    if d.pop("mailed"):
        return _("パスワード設定のリンク（有効期限%(days)s日）をメールで送りました。", days=days)
    return _("メールを送信できませんでした。")


WORDINGS: dict[str, Callable[[dict], str]] = {
    "members.imported": _imported,
    "member.invited": _invited,
    "signin.password_failed": _password_failed,
    "signin.throttled": _throttled,
    "request.throttled": _throttled,
    "signin.locked": _locked,
    "admin.unlock_2fa": _unlocked,
    "admin.reset_2fa": _reset,
    "admin.page_saved": _page_saved,
    "admin.page_deleted": _page_deleted,
    "admin.form_saved": _form_saved,
    "admin.form_deleted": _form_deleted,
    "form.submitted": _form_submitted,
    "admin.export": _export,
    "admin.policy_changed": _policy,
    "admin.terminal_marked": _terminal,
    "admin.terminal_removed": _terminal,
    "api.token_created": _token_created,
    "api.token_revoked": _token_revoked,
    "api.request": _api_call,
    "api.refused": _api_call,
    "device.remembered": _remembered,
    "passkey.added": _passkey,
    "passkey.renamed": _passkey,
    "passkey.removed": _passkey,
    "passkey.cloned": _passkey,
    "signin.passkey_failed": _passkey,
    "device.forgotten": _forgotten,
    "recovery.used": _recovery_used,
    "profile.email_changed": _contact_changed,
    "profile.phone_changed": _contact_changed,
    "profile.change_cancelled": _change_cancelled,
    "password.reset_requested": _reset_requested,
    "password.reset": _password_reset,
    "admin.password_reset_sent": _link_sent,
}


def detail_text(event: str, detail: str | None) -> str:
    """The stored details of ``event`` as one readable text in the reader's language
    ("" when none)."""
    try:
        loaded = json.loads(detail or "{}")
    except ValueError:
        return detail or ""
    if not isinstance(loaded, dict):
        return _value(loaded)
    rest = dict(loaded)
    wording = WORDINGS.get(event)
    said = wording(rest) if wording else ""
    leftover = join_words(f"{_key(k)}: {_value(v, k)}" for k, v in rest.items())
    return " ".join(part for part in (said, leftover) if part)
