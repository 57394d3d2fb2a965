"""OWASP ASVS 4.0.3, V2 Authentication: the attacks, performed.

Each test name carries the ASVS item it proves (``v2_2_1`` is 2.2.1)."""

from __future__ import annotations

import pytest
from conftest import PASSWORD
from mail_server import body_text

from portal.extensions import db
from portal.models import AuditEvent

TOO_MANY = "ログインの試行回数が多すぎます。"

limits_on = pytest.mark.settings(
    RATELIMIT_ENABLED=True,
    PORTAL_LIMIT_LOGIN_ADDRESS="1000 per minute",
    PORTAL_LIMIT_LOGIN_ACCOUNT_ADDRESS="5 per minute",
    PORTAL_LIMIT_LOGIN_ACCOUNT="20 per hour",
    PORTAL_LIMIT_LOGIN_DEVICE="5 per minute",
)


def from_address(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def sign_in(client, password=PASSWORD):
    return client.post("/login", data={"login_id": "alice", "password": password})


@limits_on
def test_v2_2_1_strangers_cannot_keep_the_owner_out(app, member):
    """Review finding: ~130 wrong tries an hour from anywhere made even the right
    password answer 429. The owner's browser, which signed in before, still gets in."""
    owner = from_address(app, "192.0.2.10")
    assert sign_in(owner).location == "/"
    owner.post("/logout")
    for i in range(60):  # strangers from many addresses fill the account's buckets
        stranger = from_address(app, f"198.51.100.{i % 30 + 1}")
        sign_in(stranger, "wrong password")
    # A new browser cannot get in with the right password now: the account is held...
    newcomer = from_address(app, "192.0.2.99")
    held = sign_in(newcomer)
    assert held.status_code == 429 and TOO_MANY in held.text
    assert int(held.headers["Retry-After"]) >= 1
    # ...but the owner's own browser, carrying its device cookie, is never held by it.
    assert sign_in(owner).location == "/"


@limits_on
def test_v2_2_1_a_device_cookie_has_its_own_strict_bucket(app, member):
    """A stolen laptop's cookie is no free pass: failures from it are limited too."""
    device = from_address(app, "192.0.2.10")
    assert sign_in(device).location == "/"
    device.post("/logout")
    for _ in range(5):
        assert sign_in(device, "wrong password").status_code == 200
    assert sign_in(device).status_code == 429


@limits_on
def test_v2_2_1_a_forged_device_cookie_is_ignored(app, member):
    for i in range(25):
        sign_in(from_address(app, f"198.51.100.{i + 1}"), "wrong password")
    forger = from_address(app, "192.0.2.50")
    forger.set_cookie("portal_device", "W1sxLCJ4Il1d.forged.signature")
    assert sign_in(forger).status_code == 429


@limits_on
def test_v2_2_1_another_members_device_cookie_does_not_help(app, member):
    from portal import members

    with app.app_context():
        members.create("bob", email="bob@example.com", password=PASSWORD)
    shared = from_address(app, "192.0.2.10")
    assert shared.post("/login", data={"login_id": "bob", "password": PASSWORD}).location == "/"
    shared.post("/logout")
    for i in range(25):
        sign_in(from_address(app, f"198.51.100.{i + 1}"), "wrong password")
    assert sign_in(shared).status_code == 429  # bob's cookie says nothing about alice


@limits_on
def test_v2_2_1_throttled_attempts_are_audited_once_per_window(app, member):
    """Review finding: 380 audit rows in 3.5 s from one client pushed real events off
    the admin member page. Entering the throttled state is one event."""
    client = from_address(app, "203.0.113.5")
    for _ in range(5):
        sign_in(client, "wrong password")
    for _ in range(100):
        assert sign_in(client, "wrong password").status_code == 429
    with app.app_context():
        throttled = db.session.scalars(
            db.select(AuditEvent).where(AuditEvent.event == "signin.throttled")
        ).all()
        failed = db.session.scalars(
            db.select(AuditEvent).where(AuditEvent.event == "signin.password_failed")
        ).all()
    assert len(throttled) == 1 and len(failed) == 5
    assert throttled[0].subject_label == "alice"


def secret_shown(html: str) -> str:
    import re

    return re.search(r'id="totp-secret">([A-Z2-7 ]+)<', html).group(1).replace(" ", "")


@pytest.mark.parametrize("dialog", ["setup", "replace"])
def test_v2_8_2_a_pending_app_secret_is_shown_to_one_session_only(app, member, dialog):
    """Review finding (High): a thief with the password opened the set-up and saw the
    secret; the owner, in another browser within 30 minutes, was shown the same secret
    and enrolled it; the thief, evicted, then signed in with password + a code from it.
    Now each browser gets its own secret, and opening the set-up voids the others'."""
    from datetime import UTC, datetime, timedelta

    import pyotp
    from conftest import enrol_app

    from portal import members

    thief, owner = app.test_client(), app.test_client()
    if dialog == "setup":
        for client in (thief, owner):  # no 2FA yet: the password is the fresh proof
            client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    else:  # the thief holds a session with the second step (e.g. a stolen cookie)
        with app.app_context():
            old_app = enrol_app(members.find("alice"))
        for client, offset in ((thief, 0), (owner, 30)):
            client.post("/login", data={"login_id": "alice", "password": PASSWORD})
            code = old_app.at(datetime.now(UTC) + timedelta(seconds=offset))
            assert client.post("/login/verify", data={"code": code}).location == "/"
    url = f"/settings/2fa/app/{dialog}"
    thief_secret = secret_shown(thief.get(url).text)
    owner_secret = secret_shown(owner.get(url).text)
    assert owner_secret != thief_secret
    assert secret_shown(owner.get(url).text) == owner_secret  # a reload keeps it
    # The thief can confirm neither his voided secret nor the owner's.
    seen_by_thief = {thief_secret}
    for secret in (thief_secret, owner_secret):
        refused = thief.post(url, data={"code": pyotp.TOTP(secret).now()})
        assert (
            "認証コードが正しくありません。" in refused.text or "使えなくなりました" in refused.text
        )
        seen_by_thief.add(secret_shown(refused.text))
    # The thief reopening the set-up voided the owner's secret: the owner is told so
    # and shown a new one, which works.
    voided = owner.post(url, data={"code": pyotp.TOTP(owner_secret).now()})
    assert "このQRコードは使えなくなりました" in voided.text
    fresh_secret = secret_shown(voided.text)
    assert fresh_secret not in seen_by_thief
    done = owner.post(url, data={"code": pyotp.TOTP(fresh_secret).now()})
    assert "設定が完了しました" in done.text or "変更しました" in done.text
    # The thief is evicted, and no secret he saw signs in.
    assert thief.get("/").status_code == 302
    for secret in seen_by_thief | {owner_secret}:
        attempt = app.test_client()
        attempt.post("/login", data={"login_id": "alice", "password": PASSWORD})
        response = attempt.post("/login/verify", data={"code": pyotp.TOTP(secret).now()})
        assert "認証コードが正しくありません。" in response.text


def wrong_codes_through_the_page(client, count):
    return [client.post("/login/verify", data={"code": "000000"}) for _ in range(count)]


@pytest.mark.wired
def test_v2_2_1_the_first_lock_tells_the_member_someone_knows_the_password(
    app, client, auth, member_with_totp, smtp_server
):
    _, totp_obj, codes = member_with_totp
    auth.login()
    responses = wrong_codes_through_the_page(client, 12)
    assert [r.status_code for r in responses[:9]] == [200] * 9
    for locked in responses[9:]:
        assert locked.status_code == 429
        assert "一時的にロックしています。" in locked.text
        assert 1 <= int(locked.headers["Retry-After"]) <= 15 * 60
    mail = smtp_server.wait_for(1)[0]
    assert mail["To"] == "alice@example.com"
    assert "続けて失敗しました" in mail["Subject"]
    assert "パスワードを変更してください" in body_text(mail)
    with app.app_context():
        locks = db.session.scalars(
            db.select(AuditEvent).where(AuditEvent.event == "signin.locked")
        ).all()
    assert len(locks) == 1  # one row for the lock, not one per refused attempt
    # The owner's recovery code still works during the temporary lock.
    response = client.post("/login/recovery", data={"recovery_code": codes[0]})
    assert response.location == "/"


@pytest.mark.wired
def test_v2_2_1_a_hundred_failures_lock_until_an_operator_clears_it(
    app, client, auth, member_with_totp, smtp_server, admin_client
):
    from datetime import UTC, datetime

    from portal import members
    from portal.twofactor import lockout

    member_id, totp_obj, codes = member_with_totp
    with app.app_context():
        m = members.find("alice")
        # 99 consecutive failures already (spread over days of growing locks).
        m.tfa_streak = 99
        db.session.commit()
    victim = app.test_client()
    victim.post("/login", data={"login_id": "alice", "password": PASSWORD})
    blocked = victim.post("/login/verify", data={"code": "000000"})
    assert blocked.status_code == 423 and "Retry-After" not in blocked.headers
    assert "管理者に連絡して、ロックを解除してもらってください。" in blocked.text
    for url, data in (
        ("/login/verify", {"code": totp_obj.now()}),
        ("/login/recovery", {"recovery_code": codes[0]}),
    ):
        response = victim.post(url, data=data)
        assert response.status_code == 423 and victim.get("/").status_code == 302
    mails = smtp_server.wait_for(1)
    assert "二段階認証を停止しました" in mails[-1]["Subject"]
    # The operator sees it on the member page and lifts it.
    page = admin_client.get("/admin/members/alice").text
    assert "二段階認証を停止しています" in page and "ロックを解除する" in page
    done = admin_client.post("/admin/members/alice/unlock")
    assert "ロックを解除しました" in done.text
    with app.app_context():
        m = members.find("alice")
        assert lockout.current_lock(m, datetime.now(UTC)) is None and m.tfa_streak == 0
        event = db.session.scalar(
            db.select(AuditEvent).where(AuditEvent.event == "admin.unlock_2fa")
        )
        assert event.actor_label == "boss" and event.subject_label == "alice"
    assert "ロックが解除されました" in smtp_server.wait_for(2)[-1]["Subject"]
    response = victim.post("/login/recovery", data={"recovery_code": codes[0]})
    assert response.location == "/"


def test_v2_2_1_unlocking_needs_a_fresh_second_step(app, admin_client, member):
    from portal import members

    with app.app_context():
        m = members.find("alice")
        m.tfa_streak, m.tfa_blocked_at = 100, db.func.now()
        db.session.commit()
    with admin_client.session_transaction() as s:
        s["tfa_at"] -= 11 * 60
    asked = admin_client.post("/admin/members/alice/unlock")
    assert "本人確認" in asked.text
    with app.app_context():
        assert members.find("alice").tfa_blocked_at is not None


def test_v2_2_1_operators_can_unlock_from_the_command_line(app, runner, member):
    from portal import members

    with app.app_context():
        m = members.find("alice")
        m.tfa_streak, m.tfa_blocked_at = 100, db.func.now()
        db.session.commit()
    result = runner.invoke(args=["members", "unlock-2fa", "alice"])
    assert result.exit_code == 0 and "alice" in result.output
    with app.app_context():
        assert members.find("alice").tfa_blocked_at is None
        assert (
            db.session.scalar(
                db.select(AuditEvent).where(AuditEvent.event == "admin.unlock_2fa")
            ).actor_label
            == "cli"
        )
    missing = runner.invoke(args=["members", "unlock-2fa", "nobody"])
    assert missing.exit_code == 1 and "nobody" in missing.output


def change_password(client, new_password):
    """Sign in as alice (no 2FA) and ask for a new password on the password page."""
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    return client.post(
        "/settings/password",
        data={
            "current_password": PASSWORD,
            "new_password": new_password,
            "new_password_confirm": new_password,
        },
    )


@pytest.mark.parametrize(
    ("new_password", "reason"),
    [
        ("password1234", "よく使われているパスワードや、その一部です。"),
        ("Password123!", "よく使われているパスワードや、その一部です。"),
        ("qwertyuiopas", "よく使われているパスワードや、その一部です。"),
        ("alice1234567", "ログインID・氏名・メールアドレスを含めないでください。"),
        ("aaaaaaaaaaaaaaaa", "同じ文字や文字列の繰り返しは推測されやすくなります。"),
        ("abcdefghijklmn", "「abc」「123」のような連続した文字は推測されやすくなります。"),
        ("199012311990", "日付や年は推測されやすくなります。"),
    ],
)
def test_v2_1_7_common_and_guessable_passwords_are_refused_with_a_reason(
    app, client, member, new_password, reason
):
    from portal import members

    response = change_password(client, new_password)
    assert response.status_code == 200
    assert "このパスワードは推測されやすいため使えません。" in response.text
    assert reason in response.text
    with app.app_context():
        assert members.check_password(members.find("alice"), PASSWORD)


def test_v2_1_7_the_command_line_refuses_them_too(app, runner):
    result = runner.invoke(
        args=["members", "create", "carol", "--email", "c@example.com", "--password-stdin"],
        input="password1234\n",
    )
    assert result.exit_code == 1 and "推測されやすい" in result.output
    from portal import members

    with app.app_context():
        assert members.find("carol") is None


@pytest.mark.parametrize(
    "passphrase",
    [
        "correct horse battery staple",  # no digits, no capitals, no symbols: fine
        "ねこ が すき な ひと と いぬ",  # any Unicode (ASVS 2.1.4)
        "Zq8#Lm2@Vb7$" + "long tail " * 11 + "end!",  # 126: past zxcvbn's 72 characters
    ],
)
def test_v2_1_9_strong_passwords_need_no_composition_rules(app, client, member, passphrase):
    from portal import members

    response = change_password(client, passphrase)
    assert response.status_code == 302, response.text
    with app.app_context():
        assert members.check_password(members.find("alice"), passphrase)


def test_v2_1_2_a_128_character_password_is_allowed_and_129_refused(app, client, member):
    from portal import members

    long_enough = ("Zq8#Lm2@Vb7$ tail " * 8)[:128]
    too_long = long_enough + "x"
    refused = change_password(client, too_long)
    assert "パスワードは12文字以上128文字以内で入力してください。" in refused.text
    assert change_password(app.test_client(), long_enough).status_code == 302
    with app.app_context():
        assert members.check_password(members.find("alice"), long_enough)


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("password1234", "よく使われているパスワードや、その一部です。"),
        ("alice-alice-alice", "ログインID・氏名・メールアドレスを含めないでください。"),
        ("short", "12文字以上128文字以内にしてください。"),
        ("月曜の朝は 珈琲と 古い 地図", "パスワードの強さ：<strong>強い</strong>"),
        ("", "12文字以上。"),
    ],
)
def test_v2_1_8_the_strength_meter_judges_like_the_final_check(client, member, typed, shown):
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    page = client.get("/settings/password").text
    assert 'hx-post="/settings/password/strength"' in page and 'id="password-strength"' in page
    response = client.post(
        "/settings/password/strength", data={"new_password": typed}, headers={"HX-Request": "1"}
    )
    assert response.status_code == 200 and shown in response.text
    assert typed == "" or typed not in response.text  # the password is never echoed


def test_v2_1_8_the_meter_is_for_signed_in_members_only(client, member):
    response = client.post("/settings/password/strength", data={"new_password": "x" * 20})
    assert response.status_code == 302 and response.location.startswith("/login")


def test_v2_1_3_a_password_is_never_truncated(app, member):
    """Every character counts: neither a prefix nor the first 72 characters (bcrypt's
    limit; zxcvbn's scoring window) sign in."""
    from portal import members

    long_password = "Zq8#Lm2@Vb7$ tail " * 6 + "the very end"
    with app.app_context():
        members.set_password(members.find("alice"), long_password)
    for attempt in (long_password[:-1], long_password[:72], long_password + " "):
        assert (
            app.test_client()
            .post("/login", data={"login_id": "alice", "password": attempt})
            .status_code
            == 200
        )
    ok = app.test_client().post("/login", data={"login_id": "alice", "password": long_password})
    assert ok.location == "/"


def test_v2_1_11_password_managers_and_paste_are_welcome(client, member):
    import re

    login = client.get("/login").text
    # "webauthn" also lets the browser offer passkeys in the same autofill.
    assert 'autocomplete="username webauthn"' in login
    assert 'autocomplete="current-password"' in login
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    page = client.get("/settings/password").text
    assert page.count('autocomplete="new-password"') == 2
    for html in (login, page):
        assert not re.search(r"on(paste|copy|cut|drop)\s*=", html, re.I)
        assert 'autocomplete="off"' not in html
    with client.get("/static/portal.js") as script:
        assert b"paste" not in script.data  # nothing listens to paste, let alone blocks it


def test_v2_4_2_each_password_hash_has_its_own_salt(app, member):
    from portal import members

    with app.app_context():
        bob = members.create("bob", email="bob@example.com", password=PASSWORD)
        alice = members.find("alice")
        assert alice.password_hash != bob.password_hash
        salts = [h.split("$")[4] for h in (alice.password_hash, bob.password_hash)]
        assert salts[0] != salts[1] and all(len(s) >= 22 for s in salts)  # 16 bytes, base64


@pytest.mark.wired
def test_v2_5_5_replacing_the_app_and_regenerating_codes_are_mailed(
    app, client, auth, member_with_totp, smtp_server
):
    import re

    import pyotp

    _, totp_obj, _ = member_with_totp
    auth.full_login(totp_obj)
    page = client.get("/settings/2fa/app/replace").text
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page).group(1).replace(" ", "")
    done = client.post("/settings/2fa/app/replace", data={"code": pyotp.TOTP(secret).now()})
    assert "認証アプリを変更しました。" in done.text
    client.post("/settings/2fa/recovery/regenerate")
    subjects = [m["Subject"] for m in smtp_server.wait_for(2)]
    assert any("認証アプリが変更されました" in s for s in subjects)
    assert any("リカバリーコードが再発行されました" in s for s in subjects)


@pytest.mark.wired
def test_v2_8_5_a_replayed_app_code_is_refused_logged_and_reported(
    app, client, auth, member_with_totp, smtp_server
):
    """Someone who saw the owner type a code (shoulder surfing, a proxy) and tries it
    again: refused like any wrong code, audited as a replay, and the owner is mailed
    (once in 15 minutes, however often it is tried)."""
    _, totp_obj, _ = member_with_totp
    code = totp_obj.now()
    auth.login()
    assert auth.verify(code).location == "/"
    for _ in range(3):
        thief = app.test_client()
        thief.post("/login", data={"login_id": "alice", "password": PASSWORD})
        refused = thief.post("/login/verify", data={"code": code})
        assert "認証コードが正しくありません。" in refused.text
        assert thief.get("/").status_code == 302
    with app.app_context():
        replays = db.session.scalars(
            db.select(AuditEvent).where(AuditEvent.event == "signin.code_replayed")
        ).all()
    assert len(replays) == 3 and replays[0].method == "app"
    notices = [m for m in smtp_server.wait_for(1) if "使用済みの認証コード" in m["Subject"]]
    assert len(notices) == 1 and notices[0]["To"] == "alice@example.com"


def test_v2_8_5_a_plain_wrong_code_is_not_called_a_replay(app, client, auth, member_with_totp):
    _, totp_obj, _ = member_with_totp
    auth.login()
    auth.verify("000000" if totp_obj.now() != "000000" else "111111")
    with app.app_context():
        assert not db.session.scalar(
            db.select(AuditEvent).where(AuditEvent.event == "signin.code_replayed")
        )


def test_v2_8_5_replays_are_reported_from_reauthentication_too(app, client, auth, member_with_totp):
    _, totp_obj, _ = member_with_totp
    code = totp_obj.now()
    auth.full_login(totp_obj)  # uses the current code
    refused = client.post("/settings/reauth", data={"code": code})
    assert "認証コードが正しくありません。" in refused.text
    with app.app_context():
        assert db.session.scalar(
            db.select(AuditEvent).where(AuditEvent.event == "signin.code_replayed")
        )
