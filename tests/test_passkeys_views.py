"""Passkeys through the views: set up in settings, the second step, passwordless
sign-in, re-authentication, rename and remove; and each refusal as a member sees it."""

from __future__ import annotations

import html
import json
import re

import pytest
from conftest import NOW, PASSWORD, get_member
from webauthn_helpers import SoftAuthenticator, tampered_signature

from portal import members, twofactor
from portal.extensions import db
from portal.models import AuditEvent, Passkey, RecoveryCode

BASE = "https://portal.example.com"
pytestmark = pytest.mark.settings(PORTAL_BASE_URL=BASE)


def options_in(page: str) -> str:
    match = re.search(r'data-passkey-options="([^"]+)"', page)
    assert match, "no passkey prompt on the page"
    return html.unescape(match.group(1))


def password(client, login_id="alice", pw=PASSWORD, **kw):
    return client.post("/login", data={"login_id": login_id, "password": pw}, **kw)


def add_passkey(client, soft: SoftAuthenticator, name="MacBook") -> str:
    """Name the key, answer the browser's prompt; returns the completion dialog."""
    page = client.post("/settings/2fa/passkey/setup", data={"name": name}).text
    answer = soft.create(options_in(page))
    response = client.post("/settings/2fa/passkey/register", data={"credential": answer})
    assert response.status_code == 200
    return response.text


def events(app, name):
    with app.app_context():
        return list(db.session.scalars(db.select(AuditEvent).where(AuditEvent.event == name)))


def test_add_a_passkey_then_sign_in_with_it_and_without_a_password(app, client, member):
    soft = SoftAuthenticator(origin=BASE)
    assert password(client).status_code == 302
    page = client.get("/settings/2fa").text
    assert "パスキー・セキュリティキーによる認証" in page
    done = add_passkey(client, soft)
    assert "パスキー「MacBook」を登録しました。" in done
    with app.app_context():
        m = get_member(member)
        assert twofactor.enabled_methods(m) == ["passkey"]
        assert db.session.scalar(db.select(db.func.count()).select_from(RecoveryCode)) == 10
    client.post("/logout")
    response = password(client)
    assert response.location == "/login/verify"
    page = client.get("/login/verify").text
    assert "パスキーで認証する" in page
    response = client.post("/login/verify/passkey", data={"credential": soft.get(options_in(page))})
    assert response.status_code == 302, response.text
    assert client.get("/settings/2fa").status_code == 200
    client.post("/logout")
    options = client.post("/login/passkey/options").get_data(as_text=True)
    response = client.post("/login/passkey", data={"credential": soft.get(options)})
    assert response.status_code == 302, response.text
    assert client.get("/settings/2fa").status_code == 200
    success = events(app, "signin.success")
    assert [e.method for e in success][-2:] == ["passkey", "passkey"]
    assert json.loads(success[-1].detail).get("passwordless") is True


def test_tampered_second_step_is_refused_on_the_page(app, client, member):
    soft = SoftAuthenticator(origin=BASE)
    password(client)
    add_passkey(client, soft)
    client.post("/logout")
    password(client)
    page = client.get("/login/verify").text
    response = client.post(
        "/login/verify/passkey", data={"credential": tampered_signature(soft.get(options_in(page)))}
    )
    assert response.status_code == 200
    assert "パスキーを確認できませんでした。" in response.text
    assert client.get("/settings/2fa").status_code == 302


# --- helpers for the refusals ------------------------------------------------------------


def with_passkey(client, soft=None, login_id="alice") -> SoftAuthenticator:
    """Sign in (password only: no 2FA yet), add a passkey, sign out."""
    soft = soft or SoftAuthenticator(origin=BASE)
    assert password(client, login_id).status_code == 302
    add_passkey(client, soft)
    client.post("/logout")
    return soft


def passwordless(client, soft, **get_kw):
    options = client.post("/login/passkey/options").get_data(as_text=True)
    return client.post("/login/passkey", data={"credential": soft.get(options, **get_kw)})


def signed_in(client) -> bool:
    return client.get("/settings/2fa").status_code == 200


def make_stale(client, minutes=11):
    with client.session_transaction() as s:
        for key in ("tfa_at", "auth_at"):
            if key in s:
                s[key] -= minutes * 60


def set_policy(app, **values):
    from portal.twofactor import policy as rules

    with app.app_context():
        row = rules.current(NOW)
        for field, value in values.items():
            setattr(row, field, value)
        db.session.commit()


def keys_of(app, login_id="alice") -> list[Passkey]:
    with app.app_context():
        m = members.find(login_id)
        return list(db.session.scalars(db.select(Passkey).where(Passkey.member_id == m.id)))


# --- passwordless ------------------------------------------------------------------------


def test_passwordless_needs_user_verification(app, client, member):
    """A security key touched without its PIN proves possession only: not both steps."""
    soft = with_passkey(client)
    soft.user_verified = False
    response = passwordless(client, soft)
    assert response.status_code == 400
    assert "パスキーを確認できませんでした。" in response.text
    assert not signed_in(client)
    failed = events(app, "signin.passkey_failed")
    assert [json.loads(e.detail)["reason"] for e in failed] == ["invalid"]
    assert failed[0].subject_label == "alice"


def test_passwordless_response_cannot_be_replayed(app, client, member):
    soft = with_passkey(client)
    options = client.post("/login/passkey/options").get_data(as_text=True)
    answer = soft.get(options)
    assert client.post("/login/passkey", data={"credential": answer}).status_code == 302
    client.post("/logout")
    again = client.post("/login/passkey", data={"credential": answer})
    assert again.status_code == 400 and "有効期限が切れたか" in again.text
    assert not signed_in(client)


def test_passwordless_with_another_members_user_handle_is_refused(app, client, member):
    """The credential is alice's; a response claiming bob's user handle is no sign-in."""
    from webauthn_helpers import b64url, edited

    with app.app_context():
        members.create("bob", email="bob@example.com", password=PASSWORD)
    soft_bob = with_passkey(client, login_id="bob")
    soft = with_passkey(client)
    with app.app_context():
        bob_handle = members.find("bob").webauthn_user_id
    options = client.post("/login/passkey/options").get_data(as_text=True)
    forged = edited(soft.get(options), userHandle=b64url(bob_handle))
    response = client.post("/login/passkey", data={"credential": forged})
    assert response.status_code == 400 and "登録されていません" in response.text
    assert not signed_in(client)
    assert soft_bob.credentials  # bob's own key still signs bob in
    assert passwordless(client, soft_bob).status_code == 302


def test_passwordless_refusals_do_not_lock_the_owner(app, client, member):
    """Anyone can post a response naming alice's credential: that must not lock her."""
    from webauthn_helpers import tampered_signature

    soft = with_passkey(client)
    for _ in range(app.config["PORTAL_TFA_MAX_FAILURES"] + 2):
        options = client.post("/login/passkey/options").get_data(as_text=True)
        bad = tampered_signature(soft.get(options))
        assert client.post("/login/passkey", data={"credential": bad}).status_code == 400
    assert passwordless(client, soft).status_code == 302


def test_operator_can_turn_passwordless_off(app, client, member):
    soft = with_passkey(client)
    assert "パスキーでログイン" in client.get("/login").text
    set_policy(app, passwordless=False)
    page = client.get("/login").text
    assert "パスキーでログイン" not in page and "username webauthn" not in page
    assert client.post("/login/passkey/options").status_code == 403
    response = client.post("/login/passkey", data={"credential": "{}"})
    assert response.status_code == 400 and "現在使えません" in response.text
    assert not signed_in(client)
    # The passkey still works as the second step.
    password(client)
    page = client.get("/login/verify").text
    answer = soft.get(options_in(page))
    assert client.post("/login/verify/passkey", data={"credential": answer}).status_code == 302


@pytest.mark.settings(PORTAL_BASE_URL="http://192.0.2.10:8000", RATELIMIT_ENABLED=False)
def test_an_ip_address_base_url_offers_no_passkeys(app, client, member):
    """WebAuthn cannot bind a passkey to an IP address: nothing passkey is shown."""
    password(client)
    assert "section-passkey" not in client.get("/settings/2fa").text
    client.post("/logout")
    assert "パスキーでログイン" not in client.get("/login").text


@pytest.mark.settings(PORTAL_BASE_URL=BASE, RATELIMIT_ENABLED=True)
def test_passwordless_prompts_are_limited_per_address(app, client, member):
    limit = int(app.config["PORTAL_LIMIT_PASSKEY_OPTIONS"].split(" ")[0])
    statuses = [client.post("/login/passkey/options").status_code for _ in range(limit + 1)]
    assert statuses[:limit] == [200] * limit and statuses[-1] == 429


# --- the second step ---------------------------------------------------------------------


def test_another_members_passkey_is_no_second_step(app, client, member):
    with app.app_context():
        members.create("bob", email="bob@example.com", password=PASSWORD)
    soft_bob = with_passkey(client, login_id="bob")
    with_passkey(client)
    password(client)
    page = client.get("/login/verify").text
    answer = soft_bob.get(options_in(page), credential=soft_bob.credentials[0])
    response = client.post("/login/verify/passkey", data={"credential": answer})
    assert "このパスキーは登録されていません。" in response.text
    assert not signed_in(client)


def test_wrong_origin_is_refused(app, client, member):
    """A phishing page's browser reports its own origin: the response does not verify."""
    soft = with_passkey(client)
    password(client)
    page = client.get("/login/verify").text
    soft.origin = "https://portal-example.com.evil.test"
    response = client.post("/login/verify/passkey", data={"credential": soft.get(options_in(page))})
    assert "パスキーを確認できませんでした。" in response.text
    assert not signed_in(client)


@pytest.mark.wired
def test_cloned_key_is_refused_audited_and_the_member_told(app, client, member, smtp_server):
    soft = with_passkey(client)
    password(client)
    page = client.get("/login/verify").text
    client.post("/login/verify/passkey", data={"credential": soft.get(options_in(page))})
    client.post("/logout")
    before = len(smtp_server.messages)
    soft.credentials[0].sign_count = 0  # a copy made before the last use
    response = passwordless(client, soft)
    assert response.status_code == 400 and "複製されたおそれ" in response.text
    assert not signed_in(client)
    cloned = events(app, "passkey.cloned")
    assert len(cloned) == 1 and cloned[0].subject_label == "alice"
    mails = smtp_server.wait_for(before + 1)
    assert "複製されたおそれのあるパスキーが使われました" in str(mails[-1]["Subject"])


def test_a_locked_second_step_refuses_a_good_passkey(app, client, member):
    from webauthn_helpers import tampered_signature

    soft = with_passkey(client)
    password(client)
    for _ in range(app.config["PORTAL_TFA_MAX_FAILURES"]):
        page = client.get("/login/verify").text
        bad = tampered_signature(soft.get(options_in(page)))
        client.post("/login/verify/passkey", data={"credential": bad})
    page = client.get("/login/verify").text
    response = client.post("/login/verify/passkey", data={"credential": soft.get(options_in(page))})
    assert response.status_code == 429 and "ロック" in response.text
    assert not signed_in(client)
    # The lock holds for a passkey alone too.
    client.post("/logout")
    response = passwordless(client, soft)
    assert response.status_code == 400 and "ロック" in response.text


def test_the_passkey_page_says_a_passkey_needs_javascript(app, client, member):
    with_passkey(client)
    password(client)
    page = client.get("/login/verify").text
    assert "パスキーでの認証にはJavaScriptが必要です。" in page
    assert "リカバリーコードを使う" in page


def test_a_post_to_the_passkey_step_while_another_method_is_pending(app, client, member_with_totp):
    password(client)
    response = client.post("/login/verify/passkey", data={"credential": "{}"})
    assert response.status_code == 302 and response.location == "/login/verify"


# --- settings ------------------------------------------------------------------------------


def test_registration_from_another_origin_keeps_no_key(app, client, member):
    password(client)
    page = client.post("/settings/2fa/passkey/setup", data={"name": "鍵"}).text
    evil = SoftAuthenticator(origin="https://evil.example")
    response = client.post(
        "/settings/2fa/passkey/register", data={"credential": evil.create(options_in(page))}
    )
    assert "パスキーを確認できませんでした。" in response.text
    assert "data-passkey-options" in response.text  # a fresh prompt to try again
    assert keys_of(app) == []


def test_names_are_checked_before_the_prompt(app, client, member):
    soft = with_passkey(client)
    password(client)
    page = client.get("/login/verify").text
    client.post("/login/verify/passkey", data={"credential": soft.get(options_in(page))})
    taken = client.post("/settings/2fa/passkey/setup", data={"name": "MacBook"}).text
    assert "同じ名前のパスキーが既にあります。" in taken and "data-passkey-options" not in taken
    empty = client.post("/settings/2fa/passkey/setup", data={"name": "  "}).text
    assert "パスキーの名前を入力してください。" in empty
    long = client.post("/settings/2fa/passkey/setup", data={"name": "あ" * 65}).text
    assert "64文字以内" in long


def test_eleven_keys_are_refused(app, client, member):
    import os

    password(client)
    with app.app_context():
        m = members.find("alice")
        for n in range(10):
            db.session.add(
                Passkey(
                    member_id=m.id,
                    credential_id=os.urandom(16),
                    public_key=b"k",
                    name=f"key {n}",
                    created_at=NOW,
                )
            )
        db.session.commit()
    with client.session_transaction() as s:
        s["tfa_at"] = s["auth_at"]  # as if a second step had just been passed
    page = client.get("/settings/2fa").text
    assert "パスキーは10個まで登録できます。" in page
    response = client.get("/settings/2fa/passkey/setup")
    assert "パスキーは10個まで登録できます。" in response.text


def test_changes_need_a_fresh_second_step_and_a_passkey_gives_it(app, client, member):
    soft = with_passkey(client)
    password(client)
    page = client.get("/login/verify").text
    client.post("/login/verify/passkey", data={"credential": soft.get(options_in(page))})
    make_stale(client)
    key = keys_of(app)[0]
    dialog = client.get(f"/settings/2fa/passkey/{key.id}/rename").text
    assert "本人確認" in dialog and "パスキーで確認する" in dialog
    answer = soft.get(options_in(dialog))
    response = client.post(
        f"/settings/reauth/passkey?next=/settings/2fa/passkey/{key.id}/rename",
        data={"credential": answer},
    )
    assert response.status_code == 302
    assert response.location == f"/settings/2fa/passkey/{key.id}/rename"
    dialog = client.get(response.location).text
    assert "パスキーの名前の変更" in dialog


def test_another_members_key_cannot_be_renamed_or_removed(app, client, member):
    with app.app_context():
        members.create("bob", email="bob@example.com", password=PASSWORD)
    with_passkey(client, login_id="bob")
    bobs = keys_of(app, "bob")[0]
    password(client)
    for action in ("rename", "remove"):
        response = client.post(
            f"/settings/2fa/passkey/{bobs.id}/{action}", data={"name": "mine", "confirm": "y"}
        )
        assert "このパスキーは見つかりません" in response.text
    assert [k.name for k in keys_of(app, "bob")] == ["MacBook"]


@pytest.mark.wired
def test_removing_the_last_key_turns_two_step_off(app, client, member, smtp_server):
    soft = with_passkey(client)
    password(client)
    page = client.get("/login/verify").text
    client.post("/login/verify/passkey", data={"credential": soft.get(options_in(page))})
    key = keys_of(app)[0]
    dialog = client.get(f"/settings/2fa/passkey/{key.id}/remove").text
    assert "はい、無効化して問題ありません。" in dialog
    assert "残りのリカバリーコード（10個）も使えなくなります。" in dialog
    unticked = client.post(f"/settings/2fa/passkey/{key.id}/remove", data={})
    assert "チェックを入れてください" in unticked.text and keys_of(app)
    done = client.post(f"/settings/2fa/passkey/{key.id}/remove", data={"confirm": "y"}).text
    assert "パスキー「MacBook」の無効化が完了しました。" in done
    assert "残っていたリカバリーコード（10個）も使えなくなりました。" in done
    assert keys_of(app) == []
    with app.app_context():
        assert not twofactor.has_two_factor(get_member(member))
    subjects = [str(m["Subject"]) for m in smtp_server.wait_for(2)]
    assert any("パスキーが追加されました" in s for s in subjects)
    assert any("パスキーが削除されました" in s for s in subjects)
    assert [e.event for e in events(app, "passkey.removed")] == ["passkey.removed"]


# --- with the other methods and the policy -------------------------------------------------


def test_skip_on_this_device_works_after_a_passkey(app, client, member):
    soft = with_passkey(client)
    password(client)
    page = client.get("/login/verify").text
    assert "この端末では次回からコード入力をスキップする" in page
    answer = soft.get(options_in(page))
    response = client.post(
        "/login/verify/passkey", data={"credential": answer, "remember_device": "y"}
    )
    assert response.status_code == 302
    client.post("/logout")
    assert password(client).location == "/"  # remembered: no second step asked


def test_passkey_can_be_chosen_and_be_the_preferred_method(app, client, member_with_totp):
    """A member with an app adds a passkey: the code page offers it, and it can come first."""
    _, totp, _codes = member_with_totp
    auth_page = password(client)
    assert auth_page.location == "/login/verify"
    client.post("/login/verify", data={"code": totp.now()})
    soft = SoftAuthenticator(origin=BASE)
    add_passkey(client, soft)
    client.post("/logout")
    password(client)
    page = client.get("/login/verify").text
    assert 'name="code"' in page and "パスキーで認証する" in page
    client.post("/login/method", data={"method": "passkey"})
    page = client.get("/login/verify").text
    answer = soft.get(options_in(page))
    assert client.post("/login/verify/passkey", data={"credential": answer}).status_code == 302
    client.post("/settings/2fa/preferred", data={"method": "passkey"})
    client.post("/logout")
    password(client)
    assert "data-passkey-options" in client.get("/login/verify").text


def test_a_withdrawn_passkey_method_falls_back_to_the_others(app, client, member_with_totp):
    _, totp, _codes = member_with_totp
    password(client)
    client.post("/login/verify", data={"code": totp.now()})
    soft = SoftAuthenticator(origin=BASE)
    add_passkey(client, soft)
    client.post("/settings/2fa/preferred", data={"method": "passkey"})
    client.post("/logout")
    set_policy(app, methods="app,email,sms")
    password(client)
    page = client.get("/login/verify").text
    assert 'name="code"' in page and "data-passkey-options" not in page
    assert "パスキーでログイン" not in client.get("/login").text
    assert client.post("/login/verify/passkey", data={"credential": "{}"}).location == (
        "/login/verify"
    )


def test_a_member_made_to_set_up_two_step_can_choose_a_passkey(app, client, member):
    """With 2FA required, the set-up page (reaching nothing else) offers passkeys too."""
    from datetime import timedelta

    set_policy(app, enforcement="required", grace_days=0, enforcement_since=NOW - timedelta(1))
    password(client)
    assert client.get("/").location == "/settings/2fa/setup"
    assert "パスキー・セキュリティキーによる認証" in client.get("/settings/2fa/setup").text
    assert client.get("/settings/profile").location == "/settings/2fa/setup"
    done = add_passkey(client, SoftAuthenticator(origin=BASE))
    assert "パスキー「MacBook」を登録しました。" in done
    assert client.get("/settings/profile").status_code == 200


def test_key_ids_beyond_a_database_integer_are_simply_not_found(app, client, member):
    """The fuzzer's find: /settings/2fa/passkey/<huge>/rename raised OverflowError (500)."""
    password(client)
    huge = 10**30
    for action in ("rename", "remove"):
        response = client.post(f"/settings/2fa/passkey/{huge}/{action}", data={"confirm": "y"})
        assert response.status_code == 200
        assert "このパスキーは見つかりません" in response.text
    with app.app_context():
        assert twofactor.remove_passkey(get_member(member), huge) is None


def test_a_clone_at_the_second_step_is_audited_with_the_keys_name(app, client, member):
    soft = with_passkey(client)
    password(client)
    page = client.get("/login/verify").text
    client.post("/login/verify/passkey", data={"credential": soft.get(options_in(page))})
    client.post("/logout")
    soft.credentials[0].sign_count = 0
    password(client)
    page = client.get("/login/verify").text
    response = client.post("/login/verify/passkey", data={"credential": soft.get(options_in(page))})
    assert "複製されたおそれ" in response.text and not signed_in(client)
    cloned = events(app, "passkey.cloned")
    assert [json.loads(e.detail)["name"] for e in cloned] == ["MacBook"]


@pytest.mark.settings(PORTAL_BASE_URL=BASE, RATELIMIT_ENABLED=True)
def test_passwordless_answers_are_limited_per_address_even_when_turned_off(app, client, member):
    """Every answer counts, so refusals cannot flood the audit log either."""
    set_policy(app, passwordless=False)
    limit = int(app.config["PORTAL_LIMIT_PASSKEY"].split(" ")[0])
    statuses = [
        client.post("/login/passkey", data={"credential": "{}"}).status_code
        for _ in range(limit + 1)
    ]
    assert statuses[:limit] == [400] * limit and statuses[-1] == 429
    assert len(events(app, "signin.passkey_failed")) == limit


def test_the_autofill_options_request_leaves_the_session_cookie_alone(client, member):
    """/login has the session id ready, so the options request passkeys.js sends as the
    page loads sets no cookie: a navigation that races it (a password-reset link opened
    at once) keeps what it stored in the session instead of losing it to a stale copy."""
    assert client.get("/login").status_code == 200
    response = client.post("/login/passkey/options")
    assert response.status_code == 200 and "challenge" in response.text
    assert "Set-Cookie" not in response.headers, response.headers
