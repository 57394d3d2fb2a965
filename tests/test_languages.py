"""English beside Japanese: which language a page is in, the language switch on every
page, the member's language and time zone on the member-info page, and mail and SMS in
the member's stored language (Japanese unless they chose English)."""

from __future__ import annotations

import io
import re
import time
from datetime import UTC, datetime

import pytest
from conftest import PASSWORD, extract_csrf, get_member
from databases import fresh_database
from twofactor_helpers import install_inbox

from portal import i18n, members, notices, twofactor
from portal.extensions import db

ENGLISH = {"Accept-Language": "en-US,en;q=0.9"}


def lang_of(html: str) -> str:
    return re.search(r'<html lang="([^"]+)"', html).group(1)


def sign_in(client, **kw):
    response = client.post("/login", data={"login_id": "alice", "password": PASSWORD}, **kw)
    assert response.status_code == 302 and response.location == "/", response.text
    return response


def switch(client, language: str, next_url: str = "/login", **kw):
    return client.post("/language", data={"language": language, "next": next_url}, **kw)


# --- which language a page is in ------------------------------------------------------


def test_japanese_is_the_default(client):
    page = client.get("/login").text
    assert lang_of(page) == "ja"
    assert "パスワードをお忘れの方" in page
    assert "Forgot your password?" not in page


@pytest.mark.parametrize(
    "header, language",
    [
        ("en-US,en;q=0.9", "en"),
        ("en", "en"),
        ("ja,en;q=0.8", "ja"),
        ("fr-FR,fr;q=0.9", "ja"),  # neither: the default
        ("de, en-GB;q=0.5", "en"),
    ],
)
def test_accept_language_chooses_between_japanese_and_english(client, header, language):
    page = client.get("/login", headers={"Accept-Language": header}).text
    assert lang_of(page) == language
    assert ("Forgot your password?" in page) == (language == "en")


def test_an_english_browser_gets_english_pages_forms_and_errors(client, member):
    page = client.get("/login", headers=ENGLISH).text
    assert "<title>Sign in | Member portal</title>" in page
    assert '<label for="login_id">Login ID</label>' in page
    wrong = client.post("/login", data={"login_id": "alice", "password": "wrong"}, headers=ENGLISH)
    assert "The login ID or password is incorrect." in wrong.text
    assert "ログインIDまたはパスワードが正しくありません。" not in wrong.text


def test_every_page_offers_the_other_language_named_in_itself(client, member):
    japanese = client.get("/login").text
    assert (
        '<button type="submit" class="link" name="language" value="en" lang="en">English</button>'
        in japanese
    )
    assert 'value="ja" lang="ja">日本語</button>' not in japanese
    sign_in(client)
    english = client.get("/settings/profile", headers=ENGLISH).text
    footer = re.search(r'<footer class="site-footer">.*?</footer>', english, re.S).group(0)
    assert 'action="/language"' in footer and 'name="csrf_token"' in footer
    assert 'name="next" value="/settings/profile"' in footer
    assert 'value="ja" lang="ja">日本語</button>' in footer


# --- the switch -----------------------------------------------------------------------


def test_the_switch_remembers_the_choice_in_a_cookie_and_goes_back(client):
    response = switch(client, "en", "/login/forgot")
    assert response.status_code == 302 and response.location == "/login/forgot"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("portal_lang=en;")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get("/login/forgot").text  # no Accept-Language: the cookie decides
    assert lang_of(page) == "en" and "Send the reset link" in page
    # The cookie beats the browser's language, and switches back.
    assert lang_of(client.get("/login", headers={"Accept-Language": "ja"}).text) == "en"
    switch(client, "ja")
    assert lang_of(client.get("/login", headers=ENGLISH).text) == "ja"


@pytest.mark.settings(PORTAL_HTTPS=True)
def test_the_switch_cookie_is_secure_behind_tls(client):
    cookie = switch(client, "en").headers["Set-Cookie"]
    assert cookie.startswith("__Host-portal_lang=en;") and "Secure" in cookie


@pytest.mark.parametrize(
    "next_url, back",
    [
        ("https://evil.example/", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("", "/"),
        ("/login/resend", "/"),  # a POST-only address (a page shown after a failed POST)
        ("/no/such/page", "/"),
        ("/admin/members?tfa=off", "/admin/members?tfa=off"),
    ],
)
def test_the_switch_returns_only_to_a_local_page_that_answers_get(client, next_url, back):
    response = switch(client, "en", next_url)
    assert response.status_code == 302 and response.location == back


@pytest.mark.parametrize("language", ["fr", "", "EN-x", "<script>", "ja" * 10])
def test_an_unknown_language_changes_nothing(client, language):
    response = switch(client, language)
    assert response.status_code == 302 and response.location == "/login"
    assert (
        "Set-Cookie" not in response.headers or "portal_lang" not in response.headers["Set-Cookie"]
    )
    assert lang_of(client.get("/login").text) == "ja"


@pytest.mark.settings(WTF_CSRF_ENABLED=True)
def test_the_switch_needs_the_csrf_token(client):
    refused = switch(client, "en")
    assert refused.status_code == 400 and "portal_lang" not in refused.headers.get("Set-Cookie", "")
    token = extract_csrf(client.get("/login").text)
    response = client.post(
        "/language", data={"language": "en", "next": "/login", "csrf_token": token}
    )
    assert response.status_code == 302 and "portal_lang=en" in response.headers["Set-Cookie"]


def test_the_switch_stores_the_language_of_a_signed_in_member(app, client, member):
    sign_in(client)
    switch(client, "en", "/")
    with app.app_context():
        assert get_member(member).locale == "en"
    # Another browser without the cookie, asking for Japanese: the member's language wins.
    other = app.test_client()
    sign_in(other, headers={"Accept-Language": "ja"})
    assert lang_of(other.get("/", headers={"Accept-Language": "ja"}).text) == "en"


def test_a_signed_in_members_stored_language_wins_over_cookie_and_browser(app, client, member):
    with app.app_context():
        get_member(member).locale = "ja"
        db.session.commit()
    switch(client, "en")  # before sign-in: only the cookie
    assert lang_of(client.get("/login").text) == "en"
    sign_in(client)
    assert lang_of(client.get("/", headers=ENGLISH).text) == "ja"
    client.post("/logout")
    assert lang_of(client.get("/login").text) == "en"  # signed out: the cookie again


def test_the_switch_works_during_the_second_step(app, client, member_with_totp):
    """Between the two steps only the cookie changes: the member is not signed in yet."""
    sign_in_pending = client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    assert sign_in_pending.location == "/login/verify"
    response = switch(client, "en", "/login/verify")
    assert response.location == "/login/verify"
    page = client.get("/login/verify").text
    assert (
        lang_of(page) == "en" and "Enter the 6-digit code shown in your authenticator app" in page
    )
    with app.app_context():
        assert get_member(member_with_totp[0]).locale is None


# --- the member's language and time zone on the member-info page -----------------------


def test_member_info_offers_language_and_time_zone(client, member):
    sign_in(client)
    page = client.get("/settings/profile").text
    assert "表示言語とタイムゾーン" in page
    assert '<option lang="en" value="en">English</option>' in page
    assert '<option selected value="Asia/Tokyo">Asia/Tokyo</option>' in page
    assert '<option value="Europe/Berlin">Europe/Berlin</option>' in page


def test_member_info_stores_language_and_time_zone(app, client, member):
    sign_in(client)
    response = client.post(
        "/settings/profile/language", data={"language": "en", "timezone": "America/New_York"}
    )
    assert response.status_code == 302 and response.location == "/settings/profile"
    page = client.get("/settings/profile").text
    assert "Language and time zone saved." in page and lang_of(page) == "en"
    assert '<option selected value="America/New_York">' in page
    with app.app_context():
        stored = get_member(member)
        assert (stored.locale, stored.timezone) == ("en", "America/New_York")


@pytest.mark.parametrize(
    "language, timezone, field, message",
    [
        ("fr", "Asia/Tokyo", "language", "表示言語は一覧から選んでください。"),
        (
            "ja",
            "Mars/Olympus",
            "timezone",
            "タイムゾーンは一覧から選んでください（例：Asia/Tokyo）。",
        ),
        (
            "ja",
            "../../etc/passwd",
            "timezone",
            "タイムゾーンは一覧から選んでください（例：Asia/Tokyo）。",
        ),
        ("ja", "localtime", "timezone", "タイムゾーンは一覧から選んでください（例：Asia/Tokyo）。"),
        ("ja", "", "timezone", "タイムゾーンは一覧から選んでください（例：Asia/Tokyo）。"),
    ],
)
def test_member_info_refuses_a_language_or_zone_not_in_the_lists(
    app, client, member, language, timezone, field, message
):
    sign_in(client)
    page = client.post(
        "/settings/profile/language", data={"language": language, "timezone": timezone}
    )
    assert page.status_code == 200
    assert f'<p id="{field}-error" class="error" role="alert">{message}</p>' in page.text
    assert f'aria-describedby="{field}-error"' in page.text
    with app.app_context():
        stored = get_member(member)
        assert (stored.locale, stored.timezone) == (None, None)


def test_member_info_refuses_a_file_for_a_choice(app, client, member):
    sign_in(client)
    page = client.post(
        "/settings/profile/language",
        data={"language": "en", "timezone": (io.BytesIO(b"Asia/Tokyo"), "zone.txt")},
        content_type="multipart/form-data",
    )
    assert page.status_code == 200
    assert "この項目にファイルは送信できません。文字で入力してください。" in page.text
    with app.app_context():
        assert get_member(member).locale is None


def test_times_follow_the_readers_zone_and_language(app, admin_client, member, operator):
    """The same moment on the admin member page: in the site's zone, then in the
    operator's own zone and language."""
    with app.app_context():
        get_member(member).last_second_step_at = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
        db.session.commit()
    assert "2026/11/25 21:00" in admin_client.get("/admin/members/alice").text  # Asia/Tokyo
    with app.app_context():
        boss = get_member(operator)
        boss.locale, boss.timezone = "en", "Europe/London"
        db.session.commit()
    page = admin_client.get("/admin/members/alice").text
    assert "Nov 25, 2026, 12:00" in page and "2026/11/25 21:00" not in page


# --- mail and SMS in the member's language ----------------------------------------------


def test_mail_to_an_english_member_is_english_in_their_zone(app, member, monkeypatch):
    inbox = install_inbox(monkeypatch)
    when = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    with app.test_request_context(headers={"Accept-Language": "ja"}):
        m = get_member(member)
        m.locale, m.timezone = "en", "Europe/Berlin"
        db.session.commit()
        notices.send(m, "password_changed", now=when, ip="192.0.2.1", user_agent="")
    mail = inbox.last("alice@example.com")
    assert mail.subject == "[Member portal] Your password was changed"
    assert mail.body.startswith(
        "Dear Alice,\n\nThe following happened on your Member portal account"
    )
    assert "Your password was changed. You have been signed out on your other devices." in mail.body
    assert "When: November 25, 2026 at 13:00 (Europe/Berlin)" in mail.body
    assert "Browser: Unknown browser" in mail.body
    assert not re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", mail.subject + mail.body)


def test_mail_follows_the_stored_language_not_the_browser(app, member, monkeypatch):
    """A member who never chose a language is mailed in Japanese, exactly as before,
    even when the request that caused the mail came from an English browser."""
    inbox = install_inbox(monkeypatch)
    when = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    with app.test_request_context(headers=ENGLISH):
        notices.send(get_member(member), "password_changed", now=when, ip="", user_agent="")
    mail = inbox.last("alice@example.com")
    assert mail.subject == "【会員ページ】パスワードが変更されました"
    assert mail.body.startswith("Alice 様\n\n会員ページ のアカウント（ログインID: alice）で")
    assert (
        "  日時: 2026年11月25日 21:00\n  IPアドレス: 不明\n  ブラウザ: 不明なブラウザ\n"
        in mail.body
    )


def test_codes_by_mail_and_sms_to_an_english_member(app, member, monkeypatch):
    inbox = install_inbox(monkeypatch)
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    with app.test_request_context():
        m = get_member(member)
        m.locale = "en"
        db.session.commit()
        twofactor.send_setup_code(m, "email", now)
        twofactor.send_setup_code(m, "sms", now)
    mail, sms = inbox.last("alice@example.com"), inbox.last("+819012345678")
    assert mail.subject == "[Member portal] Your code to set up two-step verification"
    assert "Here is your code to set up two-step verification by email." in mail.body
    code = re.search(r"Code: (\d{6})", mail.body).group(1)
    assert "The code is valid for 10 minutes. Do not share it with anyone." in mail.body
    assert re.fullmatch(
        r"\[Member portal\] Code: \d{6} \(valid for 10 minutes\)\. "
        r"Do not share this code with anyone\.",
        sms.body,
    )
    assert code


def test_password_reset_mail_in_the_members_language(app, client, member, monkeypatch):
    inbox = install_inbox(monkeypatch)
    with app.app_context():
        get_member(member).locale = "en"
        db.session.commit()
    client.post("/login/forgot", data={"login_id": "alice"})
    # The lookup and the mail run after the answer, on a background thread.
    for _ in range(250):
        if inbox.messages:
            break
        time.sleep(0.02)
    mail = inbox.last("alice@example.com")
    assert mail.subject == "[Member portal] Reset your password"
    assert "Open this link to set a new password." in mail.body
    assert "/login/reset/" in mail.body


def test_the_cli_speaks_the_default_language(runner, member):
    result = runner.invoke(
        args=["members", "create", "bob", "--email", "b@example.com", "--password-stdin"],
        input="short\n",
    )
    assert (
        result.exit_code == 1
        and "パスワードは12文字以上128文字以内で入力してください。" in result.output
    )


def test_without_a_compiled_catalogue_the_portal_is_japanese_only(tmp_path, monkeypatch, member):
    """A checkout whose .mo was never compiled still works, in Japanese, and offers no
    switch to a language it cannot show."""
    from portal import create_app

    monkeypatch.setattr(i18n, "TRANSLATIONS", str(tmp_path / "none"))
    with fresh_database(tmp_path, "p") as url:
        app = create_app(
            {
                "TESTING": True,
                "SECRET_KEY": "k" * 40,
                "SQLALCHEMY_DATABASE_URI": url,
                "BABEL_TRANSLATION_DIRECTORIES": str(tmp_path / "none"),
            }
        )
        with app.app_context():
            db.create_all()
            members.create("alice", email="alice@example.com", password=PASSWORD)
        page = app.test_client().get("/login", headers=ENGLISH).text
        with app.app_context():
            db.engine.dispose()
    assert lang_of(page) == "ja" and "パスワードをお忘れの方" in page
    assert 'action="/language"' not in page


# --- the command line speaks the shell's language ---------------------------------------


@pytest.mark.parametrize(
    ("environ", "language"),
    [
        ({}, "ja"),
        ({"LANG": "C.UTF-8"}, "ja"),
        ({"LANG": "POSIX"}, "ja"),
        ({"LANG": "en_US.UTF-8"}, "en"),
        ({"LANG": "en_GB"}, "en"),
        ({"LANG": "ja_JP.UTF-8"}, "ja"),
        ({"LANG": "fr_FR.UTF-8"}, "ja"),  # a language the portal does not speak
        ({"LC_ALL": "ja_JP.UTF-8", "LANG": "en_US.UTF-8"}, "ja"),  # LC_ALL before LANG
        ({"LC_MESSAGES": "en_US.UTF-8", "LANG": "ja_JP.UTF-8"}, "en"),
        ({"LANGUAGE": "fr:en", "LANG": "C.UTF-8"}, "en"),  # the first it speaks of a list
        ({"LANGUAGE": "fr", "LANG": "en_US.UTF-8"}, "en"),
        ({"LANG": "en@euro"}, "en"),
    ],
)
def test_shell_language(environ, language):
    assert i18n.shell_language(environ) == language


def test_the_cli_speaks_english_in_an_english_shell(app, runner, member, monkeypatch):
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    create = ["members", "create", "bob", "--email", "b@example.com", "--password-stdin"]
    made = runner.invoke(args=create, input=PASSWORD + "\n")
    assert made.exit_code == 0 and made.output.strip() == "Created member bob."
    # The domain's own refusals come in English too, after the English "Error:".
    refused = runner.invoke(args=[*create[:2], "carol", *create[3:]], input="short\n")
    assert refused.exit_code == 1
    assert refused.output.strip() == "Error: Passwords must be 12 to 128 characters long."
    missing = runner.invoke(args=["members", "unlock-2fa", "nobody"])
    assert missing.output.strip() == "Error: There is no member with the login ID “nobody”."
    # Machine-read output keeps its field names in every language.
    shown = runner.invoke(args=["policy", "show"])
    assert shown.exit_code == 0 and shown.output.startswith("enforcement ")

    monkeypatch.setenv("LANG", "ja_JP.UTF-8")
    again = runner.invoke(args=["members", "unlock-2fa", "nobody"])
    assert again.output.strip() == "エラー：ログインID「nobody」の会員はいません。"


@pytest.mark.settings(PORTAL_ENV="development", PORT=5001)
def test_demo_accounts_in_english(app, runner, monkeypatch):
    monkeypatch.setenv("LANGUAGE", "en")
    result = runner.invoke(args=["demo-accounts"])
    assert result.exit_code == 0
    body = result.output
    assert "Address: http://localhost:5001/" in body and "Stop with Ctrl+C." in body
    lines = [line for line in body.splitlines() if line]
    assert len({len(line) for line in lines}) == 1  # the box is square
    assert re.search(r"\|\s+admin\s+\(administrator\)\s+password: \S+\s+\|", body), body
