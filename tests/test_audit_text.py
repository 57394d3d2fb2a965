"""Audit events in words (issue 10, bug 10): every event the code records reads as
Japanese for operators, never as internal keys or JSON; browsers as "Chrome / Windows"."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from portal import useragent
from portal.audit import EVENTS
from portal.web.audit_text import KEYS, WORDINGS, detail_text, method_name

PORTAL = Path(__file__).resolve().parent.parent / "portal"
# record()/record_request() parameters that are columns, not details.
COLUMNS = {"subject", "actor", "actor_label", "method", "ip", "user_agent", "subject_label"}


def text(event: str, **detail) -> str:
    return detail_text(event, json.dumps(detail, ensure_ascii=False, default=str))


@pytest.fixture(autouse=True)
def _babel(app):
    with app.test_request_context():  # dates in the portal's time zone, lazy strings
        yield


@pytest.mark.parametrize(
    ("event", "detail", "said"),
    [
        ("admin.reset_2fa", {"methods": ["app", "sms"]}, "無効化した方法：認証アプリ、SMS"),
        ("admin.reset_2fa", {"methods": []}, "無効化した方法：（なし）"),
        (
            "signin.password_failed",
            {"known_id": True},
            "登録済みのログインIDで、パスワードが違っていました。",
        ),
        (
            "signin.password_failed",
            {"known_id": False},
            "登録されていないログインIDでした（入力された文字は記録していません）。",
        ),
        (
            "signin.throttled",
            {"bucket": "login-address"},
            "同じIPアドレスからのログインの回数が上限に達しました。",
        ),
        ("request.throttled", {"bucket": "admin"}, "管理画面での操作の回数が上限に達しました。"),
        ("request.throttled", {"bucket": "mystery"}, "制限：mystery"),
        (
            "signin.locked",
            {"until": "2026-03-01 01:30:00+00:00"},
            "2026/03/01 10:30 までロックしました。",  # Tokyo time
        ),
        (
            "admin.unlock_2fa",
            {"was_blocked": True},
            "停止していた二段階認証（管理者の解除待ち）を解除しました。",
        ),
        ("admin.unlock_2fa", {"was_blocked": False}, "一時的なロックを解除しました。"),
        (
            "admin.page_saved",
            {"slug": "faq", "page_id": 3, "created": True},
            "ページ /pages/faq を作成しました。",
        ),
        (
            "admin.page_saved",
            {"slug": "faq", "page_id": 3, "created": False, "listed": True, "menu_order": 5},
            "ページ /pages/faq を更新しました。マイページとメニューに表示（表示順 5）。",
        ),
        (
            "admin.page_saved",
            {"slug": "faq", "page_id": 3, "created": False, "listed": False, "menu_order": 0},
            "ページ /pages/faq を更新しました。マイページとメニューには表示しません。",
        ),
        ("admin.page_deleted", {"slug": "faq", "page_id": 3}, "ページ /pages/faq を削除しました。"),
        (
            "admin.export",
            {"export": "members.csv", "filters": {"tfa": "off", "method": "sms", "q": "田中"}},
            "メンバー一覧（members.csv）を出力しました。"
            "条件：二段階認証: 未設定、方法: SMS、検索: 田中",
        ),
        (
            "admin.export",
            {"export": "audit.csv", "filters": {"event": "signin.success", "from": "2026-01-01"}},
            "監査ログ（audit.csv）を出力しました。条件：イベント: ログイン成功、開始日: 2026-01-01",
        ),
        (
            "admin.export",
            {"export": "members list", "filters": {"tfa": ""}},
            "メンバー一覧（コマンド）を出力しました。条件：なし",
        ),
        (
            "admin.policy_changed",
            {
                "changes": {
                    "enforcement": ["recommend", "required"],
                    "methods": ["app,email,sms", "app"],
                    "allow_remember_device": ["yes", "no"],
                    "trusted_networks": ["", "192.0.2.0/24 skip\n10.0.0.1/32 always"],
                }
            },
            "メンバーへの二段階認証の必須化：すすめる → 必須、"
            "メンバーが使える方法：認証アプリ、メール、SMS → 認証アプリ、"
            "コード入力をスキップする端末の記憶：はい → いいえ、"
            "信頼済みネットワーク：（なし） → 192.0.2.0/24 skip、10.0.0.1/32 always",
        ),
        ("admin.terminal_marked", {"terminal": 4, "label": "受付PC"}, "端末「受付PC」"),
        ("admin.terminal_removed", {"terminal": 4, "label": "受付PC"}, "端末「受付PC」"),
        (
            "device.remembered",
            {"device": 9, "label": "Chrome / Windows"},
            "端末「Chrome / Windows」",
        ),
        ("device.forgotten", {"device": 9}, "1台の端末の記憶を解除しました。"),
        ("device.forgotten", {"count": 3}, "3台の端末の記憶を解除しました。"),
        ("recovery.used", {"left": 7}, "残りのリカバリーコード：7個"),
        (
            "profile.email_changed",
            {"old": "a***@example.com", "new": "b***@example.com"},
            "a***@example.com → b***@example.com",
        ),
        ("profile.phone_changed", {"old": "", "new": "+81*******78"}, "（なし） → +81*******78"),
        ("profile.change_cancelled", {"kind": "email"}, "メールアドレスの変更を取り消しました。"),
        ("profile.change_cancelled", {"kind": "sms"}, "電話番号の変更を取り消しました。"),
        (
            "password.reset_requested",
            {"via": "email", "mailed": True},
            "メールアドレスで申し込みがありました。再設定のリンクをメールで送りました。",
        ),
        (
            "password.reset_requested",
            {"via": "login_id", "mailed": False},
            "ログインIDで申し込みがありました。"
            "メールは送っていません（該当するメンバーがいないか、メールアドレスがありません）。",
        ),
        ("password.reset", {"requested_by": "boss"}, "リンクを申し込んだ人：boss"),
        ("admin.password_reset_sent", {"mailed": True}, "再設定のリンクをメールで送りました。"),
        ("admin.password_reset_sent", {"mailed": False}, "メールを送信できませんでした。"),
        (
            "request.throttled",
            {"bucket": "reset-address"},
            "同じIPアドレスからのパスワード再設定の申し込みの回数が上限に達しました。",
        ),
        ("signin.success", {}, ""),
        ("signout", {}, ""),
    ],
)
def test_each_event_reads_as_a_sentence(event, detail, said):
    assert text(event, **detail) == said


def test_unknown_keys_fall_back_to_a_readable_list_never_json():
    said = text("some.future_event", cause="expired", tries=[1, 2], ok=True, extra={"a": None})
    assert said == "cause: expired、tries: 1、2、ok: はい、extra: a: （なし）"
    # A known event with a key its wording does not know keeps the key readable too.
    assert text("admin.reset_2fa", methods=["email"], note="x") == "無効化した方法：メール note: x"
    assert detail_text("signout", "{}") == "" and detail_text("signout", None) == ""
    assert detail_text("signout", "not json") == "not json"


def recorded_events() -> dict[str, set[str]]:
    """Every event name the code passes to record()/record_request(), with the detail
    keys it writes (read from the source, so a new event is checked as soon as it is
    written)."""
    found: dict[str, set[str]] = {}
    for path in PORTAL.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name not in ("record", "record_request") or "throttle" in ast.unparse(func):
                continue
            first = node.args[0]
            # A constant, or each branch of a conditional ("a" if kind == "email" else "b").
            branches = [first.body, first.orelse] if isinstance(first, ast.IfExp) else [first]
            names = [
                n.value
                for n in branches
                if isinstance(n, ast.Constant) and isinstance(n.value, str)
            ]
            keys = {k.arg for k in node.keywords if k.arg and k.arg not in COLUMNS}
            for event in names:
                found.setdefault(event, set()).update(keys)
    return found


SAMPLES = {
    "methods": ["app"],
    "filters": {"tfa": "on"},
    "changes": {"grace_days": ["7", "0"]},
    "until": "2026-03-01 01:30:00+00:00",
    "kind": "email",
    "via": "email",
}


def test_every_event_the_code_records_is_worded():
    """Each detail key the code writes is either worded by its event or has a Japanese
    name in KEYS: no internal key reaches an operator's screen."""
    found = recorded_events()
    assert {"admin.reset_2fa", "signin.password_failed", "admin.policy_changed"} <= set(found)
    for event, keys in sorted(found.items()):
        assert event in EVENTS, event
        for key in keys:
            said = text(event, **{key: SAMPLES.get(key, 1)})
            assert said, (event, key)
            assert "{" not in said and '"' not in said, (event, key, said)
            assert f"{key}:" not in said or key in KEYS, (event, key, said)
            if event not in WORDINGS:
                assert key in KEYS, f"{event}: name {key!r} in portal/web/audit_text.py"


@pytest.mark.parametrize(
    ("kind", "name"),
    [("app", "認証アプリ"), ("email", "メール"), ("sms", "SMS"), ("recovery", "リカバリーコード")],
)
def test_method_names(kind, name):
    assert method_name(kind) == name
    assert method_name(None) == "" and method_name("") == ""


@pytest.mark.parametrize(
    ("header", "shown"),
    [
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
            "(KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
            "Chrome / Windows",
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:128.0) Gecko/20100101 Firefox/128.0",
            "Firefox / Mac OS X",
        ),
        ("curl/8.5.0 see https://evil.example", "不明なブラウザ"),
        ("", "不明なブラウザ"),
    ],
)
def test_browsers_are_named_as_family_slash_system(header, shown):
    assert useragent.describe(header) == shown


def test_passkey_events_read_as_sentences():
    assert text("passkey.added", key=3, name="YubiKey") == "パスキー「YubiKey」"
    assert text("passkey.renamed", key=3, old="a", new="b") == "パスキーの名前「a」→「b」"
    assert text("passkey.removed", key=3) == "パスキー（番号 3）"
    assert text("signin.passkey_failed", reason="cloned", name="鍵") == (
        "パスキー「鍵」 使用回数が減った（複製のおそれ）"
    )
    assert text("signin.passkey_failed", reason="not_allowed") == (
        "パスキーだけでのログインは許可されていません"
    )
