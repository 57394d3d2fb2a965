"""The admin page of the API tokens (issue 14): an operator with a fresh second step makes
a token and sees it once, revokes it after a confirmation; both are audited. Members,
visitors, stale operators and forged forms change nothing."""

from __future__ import annotations

import json
import re

import pytest
from conftest import PASSWORD, extract_csrf

from portal import api_tokens, members, sessions
from portal.extensions import db
from portal.models import ApiToken, AuditEvent

HX = {"HX-Request": "true"}
TOKEN = re.compile(r"pt_[A-Za-z0-9_-]{43}")


def tokens(app) -> list[ApiToken]:
    with app.app_context():
        found = list(db.session.scalars(db.select(ApiToken).order_by(ApiToken.id)))
        db.session.expunge_all()
        return found


def events(app, event: str) -> list[AuditEvent]:
    with app.app_context():
        found = list(db.session.scalars(db.select(AuditEvent).where(AuditEvent.event == event)))
        db.session.expunge_all()
        return found


def make(app, name="HR system", scope="read", **kw) -> tuple[str, int]:
    with app.app_context():
        token, row = api_tokens.create(name, scope, by="boss", now=sessions.now(), **kw)
        return token, row.id


def test_the_admin_nav_leads_to_the_token_list(admin_client):
    page = admin_client.get("/admin/")
    assert 'href="/admin/api-tokens"' in page.text and "APIトークン" in page.text
    listed = admin_client.get("/admin/api-tokens")
    assert listed.status_code == 200
    assert "APIトークンはまだありません。" in listed.text
    assert 'aria-current="page">APIトークン' in listed.text


def test_a_new_token_is_shown_once_and_only_its_hash_is_kept(app, admin_client):
    form = admin_client.get("/admin/api-tokens/new", headers=HX)
    assert form.status_code == 200
    assert 'name="name"' in form.text and 'name="scope"' in form.text
    assert 'name="expires"' in form.text
    shown = admin_client.post(
        "/admin/api-tokens/new",
        data={"name": "HR system", "scope": "write", "expires": "30"},
        headers=HX,
    )
    assert shown.status_code == 200
    assert shown.headers["Cache-Control"] == "no-store"
    found = TOKEN.findall(shown.text)
    assert len(set(found)) == 1
    token = found[0]
    assert "この画面でしか表示されません" in shown.text and "トークンをコピー" in shown.text
    assert "<html" not in shown.text  # the dialog's partial, for htmx
    [row] = tokens(app)
    assert (row.name, row.scope, row.created_by) == ("HR system", "write", "boss")
    assert row.expires_at is not None and 29 <= (row.expires_at - row.created_at).days <= 30
    with app.app_context():
        assert api_tokens.authenticate(token, sessions.now()).id == row.id
    # Never again: the list shows the name and state, not the token.
    listed = admin_client.get("/admin/api-tokens")
    assert "HR system" in listed.text and "読み取りと操作" in listed.text
    assert "有効" in listed.text and "未使用" in listed.text
    assert token not in listed.text and token[3:12] not in listed.text
    [event] = events(app, "api.token_created")
    assert event.actor_label == "boss"
    assert json.loads(event.detail)["token"] == "HR system"
    assert token not in event.detail
    log = admin_client.get("/admin/audit").text
    assert (
        "APIトークンの作成" in log
        and "トークン「HR system」（読み取りと操作）を作成しました" in log
    )


def test_without_javascript_the_token_is_a_page_of_its_own(app, admin_client):
    shown = admin_client.post(
        "/admin/api-tokens/new", data={"name": "Help desk", "scope": "read", "expires": ""}
    )
    assert shown.status_code == 200 and "<html" in shown.text
    assert TOKEN.search(shown.text)
    assert 'href="/admin/api-tokens"' in shown.text  # 完了 leads back to the list
    [row] = tokens(app)
    assert row.expires_at is None and row.scope == "read"


def test_the_form_says_what_is_wrong_and_makes_nothing(app, admin_client):
    make(app, "HR system")
    for data, message in (
        ({"name": "", "scope": "read", "expires": "30"}, "トークンの名前を入力してください。"),
        ({"name": "x" * 61, "scope": "read", "expires": "30"}, "60文字以内"),
        ({"name": "HR system", "scope": "read", "expires": "30"}, "すでに使われています"),
        ({"name": "a\x00b", "scope": "read", "expires": "30"}, "使用できない文字"),
    ):
        answer = admin_client.post("/admin/api-tokens/new", data=data, headers=HX)
        assert answer.status_code == 200 and message in answer.text, data
        assert not TOKEN.search(answer.text)
    for data in (
        {"name": "ok", "scope": "admin", "expires": "30"},
        {"name": "ok", "scope": "read", "expires": "1000"},
    ):
        answer = admin_client.post("/admin/api-tokens/new", data=data, headers=HX)
        assert answer.status_code == 200 and not TOKEN.search(answer.text), data
    assert len(tokens(app)) == 1


def test_revoking_asks_first_then_stops_the_token(app, admin_client):
    token, token_id = make(app, "HR system")
    url = f"/admin/api-tokens/{token_id}/revoke"
    listed = admin_client.get("/admin/api-tokens")
    assert f'href="{url}"' in listed.text
    asked = admin_client.get(url, headers=HX)
    assert (
        "失効させたトークンは元に戻せません。" in asked.text and tokens(app)[0].revoked_at is None
    )
    done = admin_client.post(url, headers=HX)
    assert "トークン「HR system」を失効させました。" in done.text
    with app.app_context():
        assert api_tokens.authenticate(token, sessions.now()) is None
    listed = admin_client.get("/admin/api-tokens")
    assert "失効（" in listed.text and f'href="{url}"' not in listed.text
    again = admin_client.post(url, headers=HX)
    assert "このトークンはすでに失効しています。" in again.text
    [event] = events(app, "api.token_revoked")
    assert json.loads(event.detail) == {"token": "HR system", "scope": "read"}


def test_an_unknown_token_is_not_found(admin_client):
    for token_id in ("1", "99", "99999999999999999999999"):
        assert admin_client.get(f"/admin/api-tokens/{token_id}/revoke").status_code == 404
        assert admin_client.post(f"/admin/api-tokens/{token_id}/revoke").status_code == 404


def test_a_stale_operator_gives_a_second_step_first(app, admin_client):
    _, token_id = make(app, "HR system")
    with admin_client.session_transaction() as s:
        s["tfa_at"] -= 11 * 60
    for url in ("/admin/api-tokens/new", f"/admin/api-tokens/{token_id}/revoke"):
        answer = admin_client.post(url, data={"name": "new", "scope": "write", "expires": ""})
        assert "本人確認" in answer.text and 'name="code"' in answer.text, url
        assert not TOKEN.search(answer.text)
    [row] = tokens(app)
    assert row.name == "HR system" and row.revoked_at is None
    assert not events(app, "api.token_created") and not events(app, "api.token_revoked")


def test_members_and_visitors_have_no_way_in(app, client, member):
    _, token_id = make(app, "HR system")
    urls = ("/admin/api-tokens", "/admin/api-tokens/new", f"/admin/api-tokens/{token_id}/revoke")
    for url in urls:
        assert client.get(url).location.startswith("/login"), url
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    data = {"name": "mine", "scope": "write", "expires": ""}
    for url in urls:
        for method in ("GET", "POST"):
            answer = client.open(url, method=method, data=data)
            if url == urls[0] and method == "POST":
                assert answer.status_code == 405
                continue
            assert answer.status_code == 403, (method, url)
            assert not TOKEN.search(answer.text)
    [row] = tokens(app)
    assert row.name == "HR system" and row.revoked_at is None


@pytest.mark.settings(WTF_CSRF_ENABLED=True)
def test_forged_forms_are_refused(app, client, operator_totp):
    _, token_id = make(app, "HR system")
    token = extract_csrf(client.get("/login").text)
    client.post(
        "/login", data={"login_id": "boss", "password": "operator password 1", "csrf_token": token}
    )
    token = extract_csrf(client.get("/login/verify").text)
    client.post("/login/verify", data={"code": operator_totp.now(), "csrf_token": token})
    own = extract_csrf(client.get("/admin/api-tokens").text)
    other = extract_csrf(app.test_client().get("/login").text)
    for forged in ({}, {"csrf_token": other}):
        made = client.post(
            "/admin/api-tokens/new", data={"name": "evil", "scope": "write", "expires": ""} | forged
        )
        assert made.status_code == 400 and not TOKEN.search(made.text)
        revoked = client.post(f"/admin/api-tokens/{token_id}/revoke", data=forged)
        assert revoked.status_code == 400
    [row] = tokens(app)
    assert row.name == "HR system" and row.revoked_at is None
    # The page's own token goes through (the test can fail).
    done = client.post(f"/admin/api-tokens/{token_id}/revoke", data={"csrf_token": own})
    assert "失効させました" in done.text
    with app.app_context():
        assert members.find("boss").is_operator
