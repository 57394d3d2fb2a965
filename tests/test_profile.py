"""Member-info page and password change: rules, re-authentication, mails."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from conftest import PASSWORD, PHONE, get_member
from mail_server import body_text
from test_contact_methods import code_in, enable_email, mails_with, sign_in

from portal import members, sessions, twofactor
from portal.extensions import db
from portal.models import AuditEvent

pytestmark = pytest.mark.wired


def post_profile(client, **changes):
    data = {"name": "Alice", "email": "alice@example.com", "phone": PHONE, "current_password": ""}
    data.update(changes)
    return client.post("/settings/profile", data=data)


def test_profile_page_shows_current_values(client, member):
    sign_in(client)
    page = client.get("/settings/profile").text
    assert 'value="alice@example.com"' in page and f'value="{PHONE}"' in page
    assert 'name="current_password"' in page


def test_name_changes_without_password(app, client, member):
    sign_in(client)
    response = post_profile(client, name="有栖 アリス")
    assert response.status_code == 302
    with app.app_context():
        assert get_member(member).name == "有栖 アリス"


def test_email_change_needs_the_current_password(app, client, member, smtp_server):
    sign_in(client)
    missing = post_profile(client, email="new@example.org")
    assert missing.status_code == 200 and "現在のパスワードを入力してください。" in missing.text
    wrong = post_profile(client, email="new@example.org", current_password="nope nope nope")
    assert "現在のパスワードが正しくありません。" in wrong.text
    with app.app_context():
        assert get_member(member).email == "alice@example.com"


def confirm_change(client, smtp_server, kind="email"):
    mail = mails_with(smtp_server, "連絡先変更の確認コード")[-1]
    return client.post(
        "/settings/profile/confirm", data={"kind": kind, "code": code_in(body_text(mail))}
    )


def test_email_change_is_always_proven_by_a_code_to_the_new_address(
    app, client, member, smtp_server
):
    """Also when email is not a second step: security notices go to this address, so
    it must never be one nobody has proven (a stolen session could otherwise route the
    owner's notices away)."""
    sign_in(client)
    response = post_profile(client, email="new@example.org", current_password=PASSWORD)
    assert response.status_code == 302
    with app.app_context():
        assert get_member(member).email == "alice@example.com"  # not yet
    code_mail = mails_with(smtp_server, "連絡先変更の確認コード")[0]
    assert code_mail["To"] == "new@example.org"
    page = client.get("/settings/profile").text
    assert "新しいメールアドレスの確認" in page
    wrong = client.post("/settings/profile/confirm", data={"kind": "email", "code": "000000"})
    assert "認証コードが正しくありません。" in wrong.text
    assert confirm_change(client, smtp_server).status_code == 302
    with app.app_context():
        assert get_member(member).email == "new@example.org"
    notice = mails_with(smtp_server, "メールアドレスが変更されました")[0]
    assert notice["To"] == "alice@example.com" and "new@example.org" in body_text(notice)


def test_a_phone_change_without_sms_applies_at_once(app, client, member, smtp_server):
    sign_in(client)
    response = post_profile(client, phone="090-9876-5432", current_password=PASSWORD)
    assert response.status_code == 302
    with app.app_context():
        assert get_member(member).phone == "+819098765432"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("email", "not-an-email", "メールアドレスの形式が正しくありません。"),
        ("email", "", "メールアドレスの形式が正しくありません。"),
        ("phone", "12", "電話番号の形式が正しくありません。"),
        ("phone", "abc-defg", "電話番号の形式が正しくありません。"),
        ("phone", "+1 650 253 0000", "この国・地域の電話番号は登録できません。"),
    ],
)
def test_invalid_input_is_a_field_error_and_nothing_is_saved(
    app, client, member, field, value, message
):
    sign_in(client)
    response = post_profile(client, name="Changed", current_password=PASSWORD, **{field: value})
    assert response.status_code == 200 and message in response.text
    assert 'aria-invalid="true"' in response.text
    with app.app_context():
        m = get_member(member)
        assert (m.name, m.email, m.phone) == ("Alice", "alice@example.com", PHONE)


@pytest.mark.parametrize(
    "typed", ["090-1234-5678", "09012345678", "０９０ １２３４ ５６７８", "+81 90 1234 5678"]
)
def test_phone_is_normalised_to_e164(app, client, member, typed):
    with app.app_context():
        get_member(member).phone = ""
        members.db.session.commit()
    sign_in(client)
    post_profile(client, phone=typed, current_password=PASSWORD)
    with app.app_context():
        assert get_member(member).phone == PHONE


def test_phone_cannot_be_emptied_while_sms_is_on(app, client, member, sms_gateway):
    sign_in(client)
    client.post("/settings/2fa/sms/send")
    code = code_in(sms_gateway.wait_for(1)[0].json["text"])
    client.post("/settings/2fa/sms/setup", data={"code": code})
    response = post_profile(client, phone="", current_password=PASSWORD)
    assert "電話番号は空にできません" in response.text


def test_phone_change_with_sms_on_needs_a_code_to_the_new_number(app, client, member, sms_gateway):
    sign_in(client)
    client.post("/settings/2fa/sms/send")
    client.post(
        "/settings/2fa/sms/setup", data={"code": code_in(sms_gateway.wait_for(1)[0].json["text"])}
    )
    post_profile(client, phone="080-9876-5432", current_password=PASSWORD)
    sent = sms_gateway.wait_for(2)[1]
    assert sent.json["to"] == "+818098765432"
    page = client.get("/settings/profile").text
    assert "080-9876-5432 に送信した確認コード" in page
    with app.app_context():
        assert get_member(member).phone == PHONE  # not before the code
    wrong = client.post("/settings/profile/confirm", data={"kind": "sms", "code": "000000"})
    assert "認証コードが正しくありません。" in wrong.text
    client.post(
        "/settings/profile/confirm", data={"kind": "sms", "code": code_in(sent.json["text"])}
    )
    with app.app_context():
        assert get_member(member).phone == "+818098765432"


def test_stale_session_cannot_move_the_second_step(app, client, member, smtp_server):
    sign_in(client)
    enable_email(client, smtp_server)
    with client.session_transaction() as s:
        s["tfa_at"] -= 11 * 60
    response = post_profile(client, email="thief@example.net", current_password=PASSWORD)
    assert "本人確認をする" in response.text
    assert "/settings/reauth?next=/settings/profile" in response.text
    assert not [m for m in smtp_server.messages if m["To"] == "thief@example.net"]
    with app.app_context():
        assert get_member(member).email == "alice@example.com"


def change_password(client, current, new, confirm=None):
    return client.post(
        "/settings/password",
        data={
            "current_password": current,
            "new_password": new,
            "new_password_confirm": new if confirm is None else confirm,
        },
    )


def test_password_change(app, client, member, smtp_server):
    other = app.test_client()
    sign_in(other)
    sign_in(client)
    page = client.get("/settings/password").text
    assert 'name="new_password_confirm"' in page
    mismatch = change_password(client, PASSWORD, "a fresh long password", "something else entirely")
    assert "確認用のパスワードが一致しません。" in mismatch.text
    assert "12文字以上" in change_password(client, PASSWORD, "short").text
    wrong = change_password(client, "not my password", "a fresh long password")
    assert "現在のパスワードが正しくありません。" in wrong.text
    ok = change_password(client, PASSWORD, "a fresh long password")
    assert ok.status_code == 302
    assert client.get("/").status_code == 200  # this session carries on
    assert other.get("/").status_code == 302  # every other one ended
    with app.app_context():
        assert members.authenticate("alice", "a fresh long password") is not None
    notice = mails_with(smtp_server, "パスワードが変更されました")[0]
    assert notice["To"] == "alice@example.com"


def test_password_change_needs_recent_second_step(app, client, member, smtp_server):
    sign_in(client)
    enable_email(client, smtp_server)
    with client.session_transaction() as s:
        s["tfa_at"] -= 11 * 60
    response = change_password(client, PASSWORD, "a fresh long password")
    assert "本人確認をする" in response.text
    with app.app_context():
        assert members.authenticate("alice", PASSWORD) is not None


def test_notice_failure_never_blocks_the_action(app, client, member, smtp_server):
    sign_in(client)
    post_profile(client, email="new@example.org", current_password=PASSWORD)
    code = code_in(body_text(mails_with(smtp_server, "連絡先変更の確認コード")[0]))
    smtp_server.stop()  # the notice to the old address cannot go out
    response = client.post("/settings/profile/confirm", data={"kind": "email", "code": code})
    assert response.status_code == 302
    with app.app_context():
        assert get_member(member).email == "new@example.org"


def test_links_in_mail_come_from_base_url_not_host_header(app, client, member, smtp_server):
    sign_in(client)
    cookie = client.get_cookie("portal_session").value
    client.set_cookie("portal_session", cookie, domain="evil.example")
    sent = client.post("/settings/2fa/email/send", headers={"Host": "evil.example"})
    assert "認証コードを送信しました" in sent.text
    body = body_text(mails_with(smtp_server, "確認コード")[0])
    assert "evil.example" not in body
    assert re.search(r"https://portal\.example\.com/", body)


def test_two_factor_state_unaffected_by_profile_edits(app, client, member, smtp_server):
    sign_in(client)
    enable_email(client, smtp_server)
    post_profile(client, name="New Name")
    with app.app_context():
        assert twofactor.enabled_methods(get_member(member)) == ["email"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("email", "a@ä" + "x" * 70 + ".com", "メールアドレスの形式が正しくありません。"),
        ("email", "a\x00b@example.com", "メールアドレスの形式が正しくありません。"),
        ("email", '"a"<b>@example.com', "メールアドレスの形式が正しくありません。"),
        ("name", "Ali\x00ce", "使用できない文字"),
    ],
)
def test_addresses_that_cannot_be_mailed_are_refused(app, client, member, field, value, message):
    sign_in(client)
    response = post_profile(client, current_password=PASSWORD, **{field: value})
    assert response.status_code == 200 and message in response.text
    with app.app_context():
        m = get_member(member)
        assert (m.name, m.email) == ("Alice", "alice@example.com")


# --- what a newcomer hit (issue 10) ---------------------------------------------------


def test_a_pending_email_change_shows_the_address_as_typed_with_resend_and_cancel(
    app, client, member, smtp_server, monkeypatch
):
    """Bug: the pending change showed the new address masked like the old one, with no
    way to resend the code or take the change back."""
    sign_in(client)
    post_profile(client, email="new.address@example.org", current_password=PASSWORD)
    page = client.get("/settings/profile").text
    assert "new.address@example.org に送信した確認コードを入力すると" in page
    assert ">再送</button>" in page and ">取り消す</button>" in page
    assert re.search(r'class="help countdown" data-countdown="(60|5\d)"', page)
    too_soon = client.post(
        "/settings/profile/resend", data={"kind": "email"}, follow_redirects=True
    )
    assert re.search(r"あと(60|5\d)秒で再送できます。", too_soon.text)
    assert 'class="flash flash-error"' not in too_soon.text
    assert len(mails_with(smtp_server, "連絡先変更の確認コード")) == 1
    later = datetime.now(UTC) + timedelta(seconds=61)
    monkeypatch.setattr(sessions, "now", lambda: later)
    resent = client.post("/settings/profile/resend", data={"kind": "email"}, follow_redirects=True)
    assert "new.address@example.org に確認コードを再送しました。" in resent.text
    second = mails_with(smtp_server, "連絡先変更の確認コード", 2)[1]
    assert second["To"] == "new.address@example.org"
    cancelled = client.post(
        "/settings/profile/cancel", data={"kind": "email"}, follow_redirects=True
    )
    assert "変更を取り消しました。" in cancelled.text
    assert "新しいメールアドレスの確認" not in cancelled.text
    stale = client.post(
        "/settings/profile/confirm", data={"kind": "email", "code": code_in(body_text(second))}
    )
    assert stale.status_code == 302
    with app.app_context():
        assert get_member(member).email == "alice@example.com"
        events = [e.event for e in db.session.scalars(db.select(AuditEvent))]
        assert "profile.change_cancelled" in events


def test_resend_and_cancel_without_a_pending_change_change_nothing(
    app, client, member, smtp_server
):
    sign_in(client)
    resent = client.post("/settings/profile/resend", data={"kind": "email"}, follow_redirects=True)
    assert "確認待ちの変更はありません。" in resent.text
    for kind in ("sms", "bogus", ""):
        assert client.post("/settings/profile/cancel", data={"kind": kind}).status_code == 302
    assert smtp_server.messages == []


def test_a_used_confirmation_code_is_called_used_not_expired(app, client, member, smtp_server):
    """Bug: a code typed a second time (back button, double submit) was 「有効期限が切れて
    います」."""
    sign_in(client)
    post_profile(client, email="new@example.org", current_password=PASSWORD)
    mail = mails_with(smtp_server, "連絡先変更の確認コード")[-1]
    data = {"kind": "email", "code": code_in(body_text(mail))}
    assert client.post("/settings/profile/confirm", data=data).status_code == 302
    again = client.post("/settings/profile/confirm", data=data, follow_redirects=True)
    assert "この認証コードは既に使用されています。" in again.text
    assert "有効期限" not in again.text
    with app.app_context():
        assert get_member(member).email == "new@example.org"


def test_the_password_page_shows_every_error_at_once(app, client, member, smtp_server):
    """Bug: an empty current password was called wrong, and one error showed at a time."""
    sign_in(client)
    empty = client.post(
        "/settings/password",
        data={"current_password": "", "new_password": "", "new_password_confirm": ""},
    )
    assert "現在のパスワードを入力してください。" in empty.text
    assert "新しいパスワードを入力してください。" in empty.text
    assert "確認用のパスワードを入力してください。" in empty.text
    several = client.post(
        "/settings/password",
        data={
            "current_password": "not my password",
            "new_password": "short",
            "new_password_confirm": "different",
        },
    )
    html = several.text
    assert "現在のパスワードが正しくありません。" in html and "12文字以上" in html
    assert "確認用のパスワードが一致しません。" in html
    # The form keeps its shape, but no secret is written back into it.
    assert html.count('type="password"') == 3 and "not my password" not in html
    assert 'value="short"' not in html and 'value="different"' not in html
    with app.app_context():
        assert members.authenticate("alice", PASSWORD) is not None


def test_a_second_change_within_the_minute_says_it_was_not_taken(app, client, member, smtp_server):
    sign_in(client)
    post_profile(client, email="first@example.org", current_password=PASSWORD)
    again = post_profile(client, email="second@example.org", current_password=PASSWORD)
    page = client.get(again.location).text
    assert re.search(r"あと(60|5\d)秒待ってから、もう一度保存してください。", page)
    assert "first@example.org に送信した確認コード" in page  # the pending change stays
    assert len(mails_with(smtp_server, "連絡先変更の確認コード")) == 1
