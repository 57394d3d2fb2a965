"""Passkeys in the admin area (issue 11, operator side): the policy's ``passkey`` method
and ``passwordless`` switch on the page and in the CLI, the member list's filter, badge
and CSV, the overview's counts, the member page's list of keys, and 無効化 removing them.

Passkeys are made here as database rows: the admin side shows and removes them, it never
runs a WebAuthn ceremony (the member side's tests do, with a software authenticator)."""

from __future__ import annotations

import base64
import csv
import io
import os
import re
from datetime import UTC, datetime, timedelta

import pytest
from conftest import PASSWORD
from test_admin import HX, admin_urls, give, login_ids, seed
from test_policy import post_policy

from portal import audit, members, twofactor
from portal.extensions import db
from portal.models import AuditEvent, Passkey, Policy, RecoveryCode, WebAuthnChallenge
from portal.twofactor import recovery
from portal.web import audit_text

ADDED = datetime(2026, 10, 1, 9, 30, tzinfo=UTC)
USED = datetime(2026, 11, 20, 18, 5, tzinfo=UTC)


def add_passkeys(app, login_id: str, *names: str, used: datetime | None = None) -> list[bytes]:
    """Give the member passkeys (the first one used at ``used``) and, when they are the
    first second step, recovery codes as a real enrolment would; their credential IDs."""
    ids = []
    with app.app_context():
        m = members.find(login_id)
        first = not twofactor.has_two_factor(m)
        for n, name in enumerate(names):
            credential = os.urandom(16)
            ids.append(credential)
            db.session.add(
                Passkey(
                    member_id=m.id,
                    credential_id=credential,
                    public_key=b"x",
                    name=name,
                    created_at=ADDED + timedelta(days=n),
                    last_used_at=used if n == 0 else None,
                )
            )
        db.session.commit()
        if first and names:
            recovery.issue(m, ADDED)
    return ids


def csv_rows(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.data.decode("utf-8-sig"))))


# --- the policy page --------------------------------------------------------------------


def test_the_policy_page_offers_passkeys_and_the_passwordless_switch(app, admin_client):
    page = admin_client.get("/admin/policy").text
    passkey = re.search(r'<input[^>]*value="passkey"[^>]*>\s*<label[^>]*>([^<]*)</label>', page)
    assert passkey and passkey.group(1) == "パスキー・セキュリティキー"
    assert "checked" in passkey.group(0)  # on by default
    switch = re.search(r'<input[^>]*name="passwordless"[^>]*>', page)
    assert switch and "checked" in switch.group(0)  # default on
    assert 'aria-describedby="passwordless-help"' in switch.group(0)
    assert "パスキーだけでのログインを許可する" in page
    help_text = page[page.index('id="passwordless-help"') :]
    assert "指紋・顔認証・PIN" in help_text and "パスワードと二段階認証の両方" in help_text
    assert 'id="passkey-problem"' not in page  # localhost: passkeys work


def test_turning_passwordless_off_is_saved_audited_and_shown(app, admin_client):
    response = post_policy(admin_client, passwordless="no", methods="app,passkey")
    assert response.location == "/admin/policy"
    with app.app_context():
        row = db.session.get(Policy, 1)
        assert row.passwordless is False and row.methods == "app,passkey"
        event = db.session.scalar(
            db.select(AuditEvent).where(AuditEvent.event == "admin.policy_changed")
        )
        assert '"passwordless": ["yes", "no"]' in event.detail
        assert '"methods": ["app,email,sms,passkey", "app,passkey"]' in event.detail
    page = admin_client.get("/admin/policy").text
    switch = re.search(r'<input[^>]*name="passwordless"[^>]*>', page).group(0)
    assert "checked" not in switch  # the page shows what was saved
    assert re.search(r'<input[^>]*checked[^>]*value="passkey"|value="passkey"[^>]*checked', page)
    assert not re.search(r'<input[^>]*value="email"[^>]*checked', page)
    log = admin_client.get("/admin/audit").text
    assert "パスキーだけでのログイン：はい → いいえ" in log
    # And back on: the box ticked is "yes" again.
    post_policy(admin_client, passwordless="yes", methods="app,passkey")
    with app.app_context():
        assert db.session.get(Policy, 1).passwordless is True


def test_saving_other_fields_keeps_passwordless_off(app, admin_client):
    post_policy(admin_client, passwordless="no")
    post_policy(admin_client, passwordless="no", grace_days="3")
    with app.app_context():
        row = db.session.get(Policy, 1)
        assert row.grace_days == 3 and row.passwordless is False
        changes = db.session.scalars(
            db.select(AuditEvent.detail).where(AuditEvent.event == "admin.policy_changed")
        ).all()
    assert len(changes) == 2 and "passwordless" not in changes[1]


@pytest.mark.settings(PORTAL_BASE_URL="http://192.0.2.10:8000")
def test_the_page_says_when_the_servers_address_rules_passkeys_out(app, admin_client):
    page = admin_client.get("/admin/policy").text
    notice = page[page.index('id="passkey-problem"') :]
    assert "パスキーを使えないため" in notice and "IPアドレスでは使えません" in notice


def test_cli_sets_passwordless_and_passkey_methods_through_the_same_rules(app, runner):
    shown = runner.invoke(args=["policy", "show"])
    assert "passwordless yes" in shown.output.splitlines()
    assert "methods app,email,sms,passkey" in shown.output.splitlines()
    off = runner.invoke(args=["policy", "set", "passwordless", "no"])
    assert off.exit_code == 0 and off.output.strip() == "passwordless no"
    methods = runner.invoke(args=["policy", "set", "methods", "passkey,app"])
    assert methods.exit_code == 0 and methods.output.strip() == "methods app,passkey"
    for args, words in (
        (["policy", "set", "passwordless", "maybe"], "passwordless: yes か no"),
        (["policy", "set", "methods", "app,fido"], "app・email・sms・passkey"),
    ):
        refused = runner.invoke(args=args)
        assert refused.exit_code == 1 and words in refused.output, refused.output
    with app.app_context():
        row = db.session.get(Policy, 1)
        assert row.passwordless is False and row.methods == "app,passkey"
        details = db.session.scalars(
            db.select(AuditEvent.detail)
            .where(AuditEvent.event == "admin.policy_changed", AuditEvent.actor_label == "cli")
            .order_by(AuditEvent.id)
        ).all()
    assert len(details) == 2 and '"passwordless": ["yes", "no"]' in details[0]


# --- the member list and its CSV ------------------------------------------------------------


def test_the_member_list_filters_and_labels_passkeys(app, admin_client):
    seed(app, {"keyonly": (), "keyapp": ("app",), "mailonly": ("email",), "nothing": ()})
    add_passkeys(app, "keyonly", "YubiKey", "iPhone")
    add_passkeys(app, "keyapp", "Windows Hello")
    by_key = admin_client.get("/admin/members?method=passkey").text
    assert login_ids(by_key) == ["keyonly", "keyapp"]  # each once, however many keys
    on = set(login_ids(admin_client.get("/admin/members?tfa=on").text))
    assert on == {"boss", "keyonly", "keyapp", "mailonly"}
    assert login_ids(admin_client.get("/admin/members?tfa=off").text) == ["nothing"]
    assert login_ids(admin_client.get("/admin/members?method=passkey&tfa=off").text) == []
    page = admin_client.get("/admin/members").text
    assert '<option value="passkey" >パスキー</option>' in page.replace("  ", " ")
    row = page[page.index("/admin/members/keyapp") :]
    row = row[: row.index("</tr>")]
    badges = re.findall(r'<span class="tag badge-on">([^<]+)</span>', row)
    assert badges == ["認証アプリ", "パスキー"]
    chosen = admin_client.get("/admin/members?method=passkey").text
    assert '<option value="passkey" selected>' in chosen
    table = admin_client.get("/admin/members?method=passkey", headers=HX).text
    assert table.lstrip().startswith('<div id="member-table">')
    assert 'href="/admin/members.csv?method=passkey"' in table


def test_the_csv_has_the_passkey_method_and_count(app, admin_client):
    seed(app, {"keyonly": (), "keyapp": ("app",), "nothing": ()})
    add_passkeys(app, "keyonly", "YubiKey", "iPhone")
    add_passkeys(app, "keyapp", "Windows Hello")
    rows = csv_rows(admin_client.get("/admin/members.csv"))
    header = rows[0]
    assert header[3] == "二段階認証の方法" and header[-1] == "パスキー数"
    by_id = {r[0]: r for r in rows[1:]}
    assert by_id["keyonly"][3] == "パスキー" and by_id["keyonly"][-1] == "2"
    assert by_id["keyapp"][3] == "認証アプリ、パスキー" and by_id["keyapp"][-1] == "1"
    assert by_id["boss"][-1] == "0"  # 2FA without passkeys
    assert by_id["nothing"][3] == "" and by_id["nothing"][-1] == ""
    assert by_id["keyonly"][4] == "2026-10-01 18:30"  # set up: the first key, in JST
    assert by_id["keyonly"][6] == "10"  # recovery codes issued with the first key
    filtered = csv_rows(admin_client.get("/admin/members.csv?method=passkey"))
    assert [r[0] for r in filtered[1:]] == ["keyonly", "keyapp"]
    with app.app_context():
        export = db.session.scalars(
            db.select(AuditEvent.detail).where(AuditEvent.event == "admin.export")
        ).all()[-1]
    assert '"method": "passkey"' in export


def test_cli_lists_members_by_passkey(app, runner):
    seed(app, {"keyonly": (), "plain": ()})
    add_passkeys(app, "keyonly", "YubiKey", "iPhone")
    listed = runner.invoke(args=["members", "list", "--method", "passkey"])
    assert listed.exit_code == 0
    assert [line.split("\t")[:2] for line in listed.output.splitlines()] == [["keyonly", "passkey"]]
    rows = list(csv.reader(io.StringIO(runner.invoke(args=["members", "list", "--csv"]).output)))
    assert rows[0] == ["login_id", "name", "email", "methods", "recovery_codes_left", "passkeys"]
    by_id = {r[0]: r for r in rows[1:]}
    assert by_id["keyonly"][3:] == ["passkey", "10", "2"] and by_id["plain"][3:] == ["", "", ""]
    wrong = runner.invoke(args=["members", "list", "--method", "fido"])
    assert wrong.exit_code == 2 and "passkey" in wrong.output
    with app.app_context():
        first = db.session.scalars(
            db.select(AuditEvent).where(AuditEvent.event == "admin.export").order_by(AuditEvent.id)
        ).first()
        assert "方法: パスキー" in audit_text.detail_text(first.event, first.detail)


# --- the overview -------------------------------------------------------------------------


def test_the_overview_counts_passkey_members_and_sign_ins(app, admin_client):
    seed(app, {"keyonly": (), "keyapp": ("app",), "nothing": ()})
    add_passkeys(app, "keyonly", "YubiKey", "iPhone")
    add_passkeys(app, "keyapp", "Windows Hello")
    with app.app_context():
        for login_id in ("keyonly", "keyonly", "keyapp"):
            audit.record("signin.success", subject=members.find(login_id), method="passkey")
    html = admin_client.get("/admin/").text
    assert re.search(r'id="stat-total">4<', html)
    assert re.search(r'id="stat-on">3<', html)  # the passkey-only member has 2FA
    assert re.search(r'id="stat-off"><a [^>]*>1<', html)
    assert re.search(r'id="stat-passkey"><a href="/admin/members\?method=passkey">2<', html)
    assert re.search(r'id="stat-app"><a [^>]*>2<', html)
    assert re.search(r'<dt>パスキー</dt><dd id="stat-passkey">', html)
    assert re.search(r'<td>パスキー</td><td class="num" id="signins-passkey">3<', html)
    assert re.search(r'id="signins-app">1<', html)  # the operator's own sign-in
    assert "3人" in html[html.index('class="chart-summary"') :]  # the chart counts her too


# --- the member page and 無効化 ------------------------------------------------------------


def test_the_member_page_lists_passkeys_without_their_secrets(app, admin_client):
    seed(app, {"keyapp": ("app",)})
    ids = add_passkeys(app, "keyapp", "YubiKey 5C", "<b>iPhone</b>", used=USED)
    page = admin_client.get("/admin/members/keyapp").text
    methods = page[page.index('id="methods"') : page.index('id="remembered"')]
    assert "<td>パスキー（2個）</td><td>2026/10/01 18:30</td><td>2026/11/21 03:05</td>" in methods
    keys = methods[methods.index('id="passkeys"') :]
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>", keys)
    assert rows == [
        ("YubiKey 5C", "2026/10/01 18:30", "2026/11/21 03:05"),
        ("&lt;b&gt;iPhone&lt;/b&gt;", "2026/10/02 18:30", "未使用"),
    ]
    assert "パスキー・セキュリティキー" in methods
    for credential in ids:
        for shown in (
            credential.hex(),
            base64.urlsafe_b64encode(credential).decode().rstrip("="),
            base64.b64encode(credential).decode().rstrip("="),
        ):
            assert shown not in page
    without = admin_client.get("/admin/members/boss").text
    assert 'id="passkeys"' not in without and "パスキー（" not in without


def test_the_reset_dialog_says_passkeys_go_too(app, admin_client):
    seed(app, {"keyonly": ()})
    add_passkeys(app, "keyonly", "YubiKey")
    dialog = admin_client.get("/admin/members/keyonly/reset", headers=HX).text
    assert "認証アプリ・メール・SMS・パスキーによる認証、リカバリーコードをすべて削除" in dialog


def test_a_reset_removes_the_passkeys_and_the_password_alone_signs_in(app, admin_client):
    seed(app, {"keyonly": ()})
    add_passkeys(app, "keyonly", "YubiKey", "iPhone")
    with app.app_context():
        m = members.find("keyonly")
        db.session.add(
            WebAuthnChallenge(
                session_hash="s" * 64,
                purpose="second",
                member_id=m.id,
                challenge=os.urandom(32),
                expires_at=datetime.now(UTC) + timedelta(minutes=5),
            )
        )
        db.session.commit()
        member_id = m.id
    before = app.test_client()
    # With passkeys, the password alone is not enough: the second step is asked.
    assert before.post(
        "/login", data={"login_id": "keyonly", "password": PASSWORD}
    ).location.startswith("/login/verify")
    done = admin_client.post("/admin/members/keyonly/reset", data={"confirm": "y"}, headers=HX)
    assert "二段階認証を無効化しました" in done.text
    with app.app_context():
        for model in (Passkey, RecoveryCode, WebAuthnChallenge):
            assert db.session.scalar(db.select(model).where(model.member_id == member_id)) is None
        assert not twofactor.has_two_factor(members.find("keyonly"))
        event = db.session.scalar(
            db.select(AuditEvent).where(AuditEvent.event == "admin.reset_2fa")
        )
        assert '"methods": ["passkey"]' in event.detail
    assert "無効化した方法：パスキー" in admin_client.get("/admin/audit").text
    page = admin_client.get("/admin/members/keyonly").text
    assert 'id="passkeys"' not in page and "YubiKey" not in page
    after = app.test_client()
    signed_in = after.post("/login", data={"login_id": "keyonly", "password": PASSWORD})
    assert signed_in.location == "/settings/2fa/setup"  # signed in: told, set-up offered
    assert "管理者があなたの二段階認証を無効化しました" in after.get(signed_in.location).text
    assert after.get("/").status_code == 200  # no second step asked


def test_cli_reset_removes_passkeys_too(app, runner):
    seed(app, {"keyapp": ("app",)})
    add_passkeys(app, "keyapp", "YubiKey")
    result = runner.invoke(args=["members", "reset-2fa", "keyapp"])
    assert result.exit_code == 0 and "（削除：passkey, app）" in result.output
    with app.app_context():
        m = members.find("keyapp")
        assert db.session.scalar(db.select(Passkey).where(Passkey.member_id == m.id)) is None


# --- nothing breaks with passkeys present -----------------------------------------------------


def test_every_admin_page_answers_with_passkeys_present(app, admin_client):
    """Every admin page and export answers with passkeys present (a method missing from
    the admin area's order of methods would be a KeyError, a 500)."""
    with app.app_context():
        members.create("alice", email="alice@example.com", password=PASSWORD, name="Alice")
    give(app, "alice", "sms")
    add_passkeys(app, "alice", "YubiKey", "iPhone", used=USED)
    add_passkeys(app, "boss", "Operator key")
    with app.app_context():
        audit.record("signin.success", subject=members.find("alice"), method="passkey")
    queries = ("", "?method=passkey", "?tfa=on", "?tfa=off", "?q=alice&method=passkey")
    for method, url in admin_urls(app):
        if method != "GET":
            continue
        for query in queries if url in ("/admin/members", "/admin/members.csv") else ("",):
            for headers in ({}, HX):
                # Read to the end: an unread streamed CSV, closed later by the garbage
                # collector, would end a later request's database session.
                with admin_client.get(url + query, headers=headers) as response:
                    assert response.status_code in (200, 302, 404), (url + query, headers)
                    response.get_data()
    detail = admin_client.get("/admin/members/alice").text
    assert "SMS" in detail and "YubiKey" in detail and "Operator key" not in detail
