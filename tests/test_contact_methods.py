"""Email and SMS second steps, end to end over HTTP, reading what the real SMTP server
and the stand-in SMS gateway actually received."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from conftest import PASSWORD, PHONE, get_member
from mail_server import body_text

from portal import sessions, twofactor
from portal.extensions import db
from portal.models import CodeSend, OneTimeCode

HX = {"HX-Request": "true"}
WRONG = "認証コードが正しくありません。"


pytestmark = pytest.mark.wired


def code_in(text: str) -> str:
    match = re.search(r"認証コード: (\d{6})", text)
    assert match, text
    return match.group(1)


def mails_with(server, subject_part: str, count: int = 1) -> list:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = [m for m in server.messages if subject_part in m["Subject"]]
        if len(found) >= count:
            return found
        time.sleep(0.02)
    raise AssertionError(
        f"no mail with {subject_part!r}: {[m['Subject'] for m in server.messages]}"
    )


def sign_in(client):
    response = client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    return response


def enable_email(client, smtp) -> list[str]:
    """Set email up through the settings dialog; returns the recovery codes shown."""
    sent = client.post("/settings/2fa/email/send", headers=HX)
    assert "a***@example.com" in sent.text and 'name="code"' in sent.text
    code = code_in(body_text(mails_with(smtp, "確認コード")[-1]))
    done = client.post("/settings/2fa/email/setup", data={"code": code}, headers=HX)
    assert "メールによる認証の設定が完了しました。" in done.text
    return re.findall(r"<li><code>([a-z0-9-]{11})</code></li>", done.text)


# --- email set-up ---------------------------------------------------------------------


def test_email_setup_sends_only_on_post(client, member, smtp_server):
    sign_in(client)
    dialog = client.get("/settings/2fa/email/setup", headers=HX)
    assert "a***@example.com" in dialog.text and "コードを送信する" in dialog.text
    assert "alice@example.com" not in dialog.text  # masked
    client.get("/settings/2fa/email/setup")
    time.sleep(0.2)
    assert smtp_server.messages == []  # a GET never sends a code


def test_email_setup_end_to_end(app, client, member, smtp_server):
    sign_in(client)
    sent = client.post("/settings/2fa/email/send", headers=HX)
    assert "a***@example.com に認証コードを送信しました。" in sent.text
    mail = mails_with(smtp_server, "確認コード")[0]
    assert mail["To"] == "alice@example.com"
    assert "会員ページ" in mail["Subject"]
    body = body_text(mail)
    assert "10分" in body and "覚えがない" in body
    wrong = client.post("/settings/2fa/email/setup", data={"code": "000000"}, headers=HX)
    assert WRONG in wrong.text
    code = code_in(body)
    done = client.post("/settings/2fa/email/setup", data={"code": code}, headers=HX)
    assert "メールによる認証の設定が完了しました。" in done.text
    assert len(re.findall(r"<li><code>", done.text)) == 10  # first method: recovery codes
    with app.app_context():
        assert twofactor.enabled_methods(get_member(member)) == ["email"]
    notice = mails_with(smtp_server, "二段階認証の方法が追加されました")[0]
    text = body_text(notice)
    assert "メールによる認証" in text and "https://portal.example.com/login" in text
    assert "IPアドレス" in text and code not in text


def test_setup_code_is_single_use_and_bound_to_purpose(app, client, member, smtp_server):
    sign_in(client)
    client.post("/settings/2fa/email/send")
    code = code_in(body_text(mails_with(smtp_server, "確認コード")[0]))
    # The setup code does not work as a sign-in code.
    with app.app_context():
        m = get_member(member)
        assert not twofactor.verify_code(m, code, datetime.now(UTC), "email").ok


def test_resend_waits_sixty_seconds(app, client, member, smtp_server, monkeypatch):
    sign_in(client)
    client.post("/settings/2fa/email/send")
    mails_with(smtp_server, "確認コード")
    again = client.post("/settings/2fa/email/send", headers=HX)
    assert again.status_code == 200
    assert re.search(r"あと\d+秒で再送できます。", again.text)
    later = datetime.now(UTC) + timedelta(seconds=61)
    monkeypatch.setattr(sessions, "now", lambda: later)
    client.post("/settings/2fa/email/send")
    assert len(mails_with(smtp_server, "確認コード", 2)) == 2


def test_resend_flood_sends_one_mail(client, member, smtp_server):
    sign_in(client)
    responses = [client.post("/settings/2fa/email/send") for _ in range(15)]
    assert all(r.status_code == 200 for r in responses)
    time.sleep(0.3)
    assert len([m for m in smtp_server.messages if "確認コード" in m["Subject"]]) == 1


def test_only_the_latest_code_is_valid(app, client, member, smtp_server, monkeypatch):
    sign_in(client)
    client.post("/settings/2fa/email/send")
    first = code_in(body_text(mails_with(smtp_server, "確認コード")[0]))
    later = datetime.now(UTC) + timedelta(seconds=61)
    monkeypatch.setattr(sessions, "now", lambda: later)
    client.post("/settings/2fa/email/send")
    second = code_in(body_text(mails_with(smtp_server, "確認コード", 2)[1]))
    if first != second:
        refused = client.post("/settings/2fa/email/setup", data={"code": first}, headers=HX)
        assert "設定が完了しました" not in refused.text
    ok = client.post("/settings/2fa/email/setup", data={"code": second}, headers=HX)
    assert "設定が完了しました" in ok.text


def test_five_wrong_tries_void_the_code(client, member, smtp_server):
    sign_in(client)
    client.post("/settings/2fa/email/send")
    code = code_in(body_text(mails_with(smtp_server, "確認コード")[0]))
    wrong = "111111" if code != "111111" else "222222"
    for _ in range(4):
        assert WRONG in client.post("/settings/2fa/email/setup", data={"code": wrong}).text
    fifth = client.post("/settings/2fa/email/setup", data={"code": wrong}).text
    assert "入力回数の上限に達したため" in fifth
    late = client.post("/settings/2fa/email/setup", data={"code": code}).text
    assert "設定が完了しました" not in late and "新しいコードを送信してください" in late


def test_code_expires_after_ten_minutes(client, member, smtp_server, monkeypatch):
    sign_in(client)
    client.post("/settings/2fa/email/send")
    code = code_in(body_text(mails_with(smtp_server, "確認コード")[0]))
    later = datetime.now(UTC) + timedelta(minutes=10, seconds=1)
    monkeypatch.setattr(sessions, "now", lambda: later)
    with client.session_transaction() as s:
        s["auth_at"] = later.timestamp()  # still a fresh session at the later time
    response = client.post("/settings/2fa/email/setup", data={"code": code})
    assert "有効期限が切れています" in response.text


@pytest.mark.parametrize("typed", ["12a456", "1234567", "", "１２３４５"])
def test_malformed_codes_are_clear_messages(client, member, smtp_server, typed):
    sign_in(client)
    client.post("/settings/2fa/email/send")
    response = client.post("/settings/2fa/email/setup", data={"code": typed})
    assert response.status_code == 200 and WRONG in response.text


def test_codes_are_stored_hashed(app, client, member, smtp_server):
    sign_in(client)
    client.post("/settings/2fa/email/send")
    code = code_in(body_text(mails_with(smtp_server, "確認コード")[0]))
    with app.app_context():
        row = db.session.scalar(db.select(OneTimeCode))
        assert code not in row.code_hash and len(row.code_hash) == 64


# --- email sign-in --------------------------------------------------------------------


def test_email_sign_in_sends_on_the_password_post(app, client, member, smtp_server):
    sign_in(client)
    enable_email(client, smtp_server)
    client.post("/logout")
    before = len(smtp_server.messages)
    assert sign_in(client).location == "/login/verify"
    mail = mails_with(smtp_server, "ログイン用の認証コード")[0]
    assert len(smtp_server.messages) >= before + 1
    page = client.get("/login/verify")
    assert "a***@example.com" in page.text and "コードを再送する" in page.text
    client.get("/login/verify")  # a reload sends nothing
    time.sleep(0.2)
    assert len(mails_with(smtp_server, "ログイン用の認証コード")) == 1
    assert WRONG in client.post("/login/verify", data={"code": "000000"}).text
    ok = client.post("/login/verify", data={"code": code_in(body_text(mail))})
    assert ok.location == "/"


def test_email_code_follows_the_current_address(app, client, member, smtp_server):
    """The guide's Q2: change the email on the member-info page; codes go there with no
    new set-up (after the new address is proven)."""
    sign_in(client)
    enable_email(client, smtp_server)
    response = client.post(
        "/settings/profile",
        data={
            "name": "Alice",
            "email": "new@example.org",
            "phone": PHONE,
            "current_password": PASSWORD,
        },
    )
    assert response.status_code == 302
    confirm = mails_with(smtp_server, "連絡先変更の確認コード")[0]
    assert confirm["To"] == "new@example.org"
    with app.app_context():
        assert get_member(member).email == "alice@example.com"  # not yet
    client.post(
        "/settings/profile/confirm", data={"kind": "email", "code": code_in(body_text(confirm))}
    )
    with app.app_context():
        assert get_member(member).email == "new@example.org"
    old_notice = mails_with(smtp_server, "メールアドレスが変更されました")[0]
    assert old_notice["To"] == "alice@example.com"
    client.post("/logout")
    sign_in(client)
    signin_mail = mails_with(smtp_server, "ログイン用の認証コード")[-1]
    assert signin_mail["To"] == "new@example.org"
    assert (
        client.post("/login/verify", data={"code": code_in(body_text(signin_mail))}).location == "/"
    )


def test_mail_server_down_is_a_clear_message(app, client, member, smtp_server):
    sign_in(client)
    smtp_server.stop()
    response = client.post("/settings/2fa/email/send", headers=HX)
    assert response.status_code == 200
    assert "メールを送信できませんでした。" in response.text
    with app.app_context():
        code = db.session.scalar(db.select(OneTimeCode))
        assert code.expires_at == code.created_at  # void: nothing usable was sent
    # The failed send still counts toward the 60-second spacing.
    again = client.post("/settings/2fa/email/send", headers=HX)
    assert "秒で再送できます。" in again.text


def test_resend_on_the_code_page(app, client, member, smtp_server, monkeypatch):
    sign_in(client)
    enable_email(client, smtp_server)
    client.post("/logout")
    sign_in(client)
    too_soon = client.post("/login/resend", headers=HX)
    assert too_soon.status_code == 200 and re.search(r"あと\d+秒で再送できます。", too_soon.text)
    assert too_soon.text.lstrip().startswith('<div id="verify-box">')
    later = datetime.now(UTC) + timedelta(seconds=61)
    monkeypatch.setattr(sessions, "now", lambda: later)
    resent = client.post("/login/resend", headers=HX)
    assert "a***@example.com に認証コードを送信しました。" in resent.text
    assert len(mails_with(smtp_server, "ログイン用の認証コード", 2)) == 2


# --- SMS ------------------------------------------------------------------------------


def test_sms_setup_and_sign_in_through_the_gateway(app, client, member, sms_gateway):
    sign_in(client)
    dialog = client.get("/settings/2fa/sms/setup", headers=HX).text
    assert "+81 ******5678" in dialog
    client.post("/settings/2fa/sms/send")
    request = sms_gateway.wait_for(1)[0]
    assert request.json["to"] == PHONE
    assert request.headers["Authorization"] == "Bearer t0ken"
    code = code_in(request.json["text"])
    done = client.post("/settings/2fa/sms/setup", data={"code": code})
    assert "SMSによる認証の設定が完了しました。" in done.text
    client.post("/logout")
    sign_in(client)
    signin = sms_gateway.wait_for(2)[1]
    page = client.get("/login/verify").text
    assert "SMS" in page and "+81 ******5678" in page
    assert client.post("/login/verify", data={"code": code_in(signin.json["text"])}).location == "/"


def test_gateway_failure_marks_nothing_sent(app, client, member, sms_gateway, caplog):
    sign_in(client)
    sms_gateway.mode = "fail"
    response = client.post("/settings/2fa/sms/send", headers=HX)
    assert "SMSを送信できませんでした。時間をおいて再度お試しください。" in response.text
    text = sms_gateway.wait_for(1)[0].json["text"]
    assert code_in(text) not in caplog.text
    with app.app_context():
        code = db.session.scalar(db.select(OneTimeCode))
        assert code.expires_at == code.created_at  # void: no usable code
        # The attempt still counts toward the caps: the gateway may have billed it.
        assert len(db.session.scalars(db.select(CodeSend)).all()) == 1


def test_gateway_timeout_is_handled(app, client, member, sms_gateway):
    sign_in(client)
    sms_gateway.mode = "hang"
    started = time.monotonic()
    response = client.post("/settings/2fa/sms/send", headers=HX)
    assert time.monotonic() - started < 5  # the 1 s timeout, not the gateway's hang
    assert "SMSを送信できませんでした。" in response.text


@pytest.mark.settings(PORTAL_SMS_MEMBER_DAILY_LIMIT=2, PORTAL_OTP_RESEND_SECONDS=0)
def test_member_daily_sms_cap(app, client, member, sms_gateway):
    sign_in(client)
    for _ in range(2):
        client.post("/settings/2fa/sms/send")
    capped = client.post("/settings/2fa/sms/send", headers=HX)
    assert "上限に達しました" in capped.text
    time.sleep(0.2)
    assert len(sms_gateway.requests) == 2


@pytest.mark.settings(PORTAL_SMS_DAILY_LIMIT=1, PORTAL_OTP_RESEND_SECONDS=0)
def test_site_daily_sms_cap(app, client, member, sms_gateway):
    sign_in(client)
    client.post("/settings/2fa/sms/send")
    capped = client.post("/settings/2fa/sms/send", headers=HX)
    assert "上限に達しました" in capped.text
    assert len(sms_gateway.requests) == 1


def test_sms_needs_a_phone_number(app, client, member, sms_gateway):
    with app.app_context():
        get_member(member).phone = ""
        db.session.commit()
    sign_in(client)
    dialog = client.get("/settings/2fa/sms/setup", headers=HX).text
    assert "携帯電話番号を登録してください" in dialog and "/settings/profile" in dialog
    client.post("/settings/2fa/sms/send")
    assert sms_gateway.requests == []


# --- several methods ------------------------------------------------------------------


def test_switching_method_on_the_code_page(app, client, member, smtp_server, sms_gateway):
    sign_in(client)
    enable_email(client, smtp_server)
    client.post("/settings/2fa/sms/send")
    sms_code = code_in(sms_gateway.wait_for(1)[0].json["text"])
    client.post("/settings/2fa/sms/setup", data={"code": sms_code})
    client.post("/logout")
    sign_in(client)  # preferred: email, the first set up
    page = client.get("/login/verify").text
    assert "別の方法で認証する" in page and "SMSでコードを受け取る" in page
    assert client.post("/login/method", data={"method": "sms"}).location == "/login/verify"
    sent = sms_gateway.wait_for(2)[1]
    assert "+81 ******5678" in client.get("/login/verify").text
    # The email code does not work for the SMS method, the SMS one does.
    email_code = code_in(body_text(mails_with(smtp_server, "ログイン用の認証コード")[-1]))
    if email_code != code_in(sent.json["text"]):
        assert WRONG in client.post("/login/verify", data={"code": email_code}).text
    assert client.post("/login/verify", data={"code": code_in(sent.json["text"])}).location == "/"


def test_choosing_a_method_not_enabled_is_ignored(client, member, smtp_server, sms_gateway):
    sign_in(client)
    enable_email(client, smtp_server)
    client.post("/logout")
    sign_in(client)
    client.post("/login/method", data={"method": "sms"})
    client.post("/login/method", data={"method": "bogus"})
    assert sms_gateway.requests == []
    assert "a***@example.com" in client.get("/login/verify").text


def test_preferred_method_can_be_changed(app, client, member, smtp_server, sms_gateway):
    sign_in(client)
    enable_email(client, smtp_server)
    client.post("/settings/2fa/sms/send")
    client.post(
        "/settings/2fa/sms/setup", data={"code": code_in(sms_gateway.wait_for(1)[0].json["text"])}
    )
    client.post("/settings/2fa/preferred", data={"method": "sms"})
    with app.app_context():
        assert twofactor.preferred_method(get_member(member)) == "sms"
    client.post("/logout")
    sign_in(client)
    assert len(sms_gateway.wait_for(2)) == 2  # the sign-in code went by SMS


def test_disable_email(app, client, member, smtp_server):
    sign_in(client)
    enable_email(client, smtp_server)
    done = client.post("/settings/2fa/email/disable", data={"confirm": "y"}, headers=HX)
    assert "メールによる認証の無効化が完了しました。" in done.text and "完了" in done.text
    with app.app_context():
        assert not twofactor.has_two_factor(get_member(member))
    notice = mails_with(smtp_server, "二段階認証の方法が無効化されました")[0]
    assert "現在、二段階認証は設定されていません。" in body_text(notice)


def test_disable_sms_message(app, client, member, sms_gateway):
    sign_in(client)
    client.post("/settings/2fa/sms/send")
    client.post(
        "/settings/2fa/sms/setup", data={"code": code_in(sms_gateway.wait_for(1)[0].json["text"])}
    )
    done = client.post("/settings/2fa/sms/disable", data={"confirm": "y"})
    assert "SMSによる認証の無効化が完了しました。" in done.text


def test_email_only_member_reauthenticates_with_a_mailed_code(app, client, member, smtp_server):
    sign_in(client)
    enable_email(client, smtp_server)
    with client.session_transaction() as s:
        s["tfa_at"] -= 11 * 60
    asked = client.get("/settings/2fa/email/disable", headers=HX).text
    assert "本人確認" in asked and "メールでコードを受け取る" in asked
    sent = client.post(
        "/settings/reauth/send?next=/settings/2fa/email/disable", data={"method": "email"}
    )
    assert 'value="email"' in sent.text
    code = code_in(body_text(mails_with(smtp_server, "ログイン用の認証コード")[-1]))
    ok = client.post(
        "/settings/reauth?next=/settings/2fa/email/disable", data={"method": "email", "code": code}
    )
    assert ok.location == "/settings/2fa/email/disable"


def test_recovery_sign_in_mails_a_notice(app, client, member, smtp_server):
    sign_in(client)
    codes = enable_email(client, smtp_server)
    client.post("/logout")
    sign_in(client)
    assert client.post("/login/recovery", data={"recovery_code": codes[0]}).location == "/"
    notice = mails_with(smtp_server, "リカバリーコードでログインしました")[0]
    assert "残りのリカバリーコードは9個です。" in body_text(notice)


# --- races and bypasses found in review ---------------------------------------------


def enable_sms(client, gateway) -> None:
    client.post("/settings/2fa/sms/send")
    code = code_in(gateway.wait_for(len(gateway.requests) or 1)[-1].json["text"])
    done = client.post("/settings/2fa/sms/setup", data={"code": code})
    assert "SMSによる認証の設定が完了しました。" in done.text


def test_parallel_resends_send_one_sms(app, client, member, sms_gateway):
    """The 60-second rule and the caps are checked under a write lock, and the send is
    booked before it goes out, so racing resends cannot all reach the gateway."""
    import threading

    sign_in(client)
    enable_sms(client, sms_gateway)
    client.post("/logout")
    sign_in(client)  # the sign-in SMS
    sms_gateway.wait_for(2)
    with app.app_context():
        db.session.execute(
            db.update(OneTimeCode).values(created_at=datetime.now(UTC) - timedelta(minutes=2))
        )
        db.session.commit()
    cookie = client.get_cookie("portal_session").value
    barrier = threading.Barrier(10)
    statuses = []

    def resend():
        c = app.test_client()
        c.set_cookie("portal_session", cookie)
        barrier.wait(timeout=30)
        statuses.append(c.post("/login/resend").status_code)

    threads = [threading.Thread(target=resend) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert statuses == [200] * 10
    time.sleep(0.3)
    assert len(sms_gateway.requests) == 3  # set-up, sign-in, and exactly one resend


def test_no_sms_is_sent_while_the_second_step_is_locked(app, client, member, sms_gateway):
    sign_in(client)
    enable_sms(client, sms_gateway)
    client.post("/logout")
    sign_in(client)
    for _ in range(10):
        client.post("/login/verify", data={"code": "000000"})
    sent_before = len(sms_gateway.requests)
    client.post("/logout")
    sign_in(client)
    page = client.get("/login/verify").text
    assert "ロック" in page
    time.sleep(0.2)
    assert len(sms_gateway.requests) == sent_before


def test_pending_address_change_dies_with_the_method(app, client, member, sms_gateway):
    sign_in(client)
    enable_sms(client, sms_gateway)
    client.post(
        "/settings/profile",
        data={
            "name": "Alice",
            "email": "alice@example.com",
            "phone": "080-1111-2222",
            "current_password": PASSWORD,
        },
    )
    change = sms_gateway.wait_for(2)[-1]
    assert change.json["to"] == "+818011112222"
    client.post("/settings/2fa/sms/disable", data={"confirm": "y"})
    client.post(
        "/settings/profile/confirm", data={"kind": "sms", "code": code_in(change.json["text"])}
    )
    with app.app_context():
        assert get_member(member).phone == PHONE


def test_moving_an_enabled_address_voids_old_codes_and_other_sessions(
    app, client, member, smtp_server
):
    other = app.test_client()
    sign_in(other)
    sign_in(client)
    enable_email(client, smtp_server)
    assert other.get("/").status_code == 302  # enabling already ended it
    # A sign-in code sent to the old address before the move must not work after it.
    thief = app.test_client()
    sign_in(thief)
    old_code = code_in(body_text(mails_with(smtp_server, "ログイン用の認証コード")[-1]))
    client.post(
        "/settings/profile",
        data={
            "name": "Alice",
            "email": "new@example.org",
            "phone": PHONE,
            "current_password": PASSWORD,
        },
    )
    confirm = mails_with(smtp_server, "連絡先変更の確認コード")[0]
    client.post(
        "/settings/profile/confirm", data={"kind": "email", "code": code_in(body_text(confirm))}
    )
    response = thief.post("/login/verify", data={"code": old_code})
    assert response.location != "/"
    assert client.get("/").status_code == 200


def test_completion_dialog_of_a_second_method_names_the_destination(
    app, client, member_with_totp, smtp_server
):
    """Bug: the set-up completion repeated its title as its body."""
    _, totp_obj, _ = member_with_totp
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    client.post("/login/verify", data={"code": totp_obj.now()})
    client.post("/settings/2fa/email/send", headers=HX)
    code = code_in(body_text(mails_with(smtp_server, "確認コード")[-1]))
    done = client.post("/settings/2fa/email/setup", data={"code": code}, headers=HX).text
    title = re.search(r'<h2 id="dialog-title"[^>]*>(.*?)</h2>', done, re.S).group(1).strip()
    body = re.search(r'<p class="done"[^>]*>(.*?)</p>', done, re.S).group(1).strip()
    assert title == "メールによる認証の設定が完了しました。"
    assert body == "ログイン時に、a***@example.com に届く認証コードを使えます。"


def test_recovery_page_speaks_of_the_members_own_method(app, client, member, smtp_server):
    """Bug: an email-only member was told 「認証アプリを使えないときは…」 and offered
    「認証アプリのコードを使う」 as the way back."""
    sign_in(client)
    enable_email(client, smtp_server)
    client.post("/logout")
    sign_in(client)
    page = client.get("/login/recovery").text
    assert "認証アプリ" not in page
    assert "メールで認証コードを受け取れないときは、" in page
    back = re.search(r'<a href="/login/verify">([^<]+)</a>', page).group(1)
    assert back == "メールで届いた認証コードを使う"
