"""The 2FA settings page and its dialogs, with and without htmx."""

from __future__ import annotations

import base64
import re
import time
import zlib
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import pyotp
import pytest
from conftest import PASSWORD, get_member

from portal import sessions, twofactor
from portal.twofactor import recovery

HX = {"HX-Request": "true"}
WRONG = "認証コードが正しくありません。"


def secret_from(html: str) -> str:
    return re.search(r'id="totp-secret">([A-Z2-7 ]+)<', html).group(1).replace(" ", "")


def codes_from(html: str) -> list[str]:
    return re.findall(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>", html)


def make_stale(client, minutes=11):
    with client.session_transaction() as s:
        for key in ("tfa_at", "auth_at"):
            if key in s:
                s[key] -= minutes * 60


@pytest.fixture
def signed_in(client, auth, member):
    auth.login()
    return client


@pytest.fixture
def signed_in_2fa(client, auth, member_with_totp):
    member_id, totp_obj, codes = member_with_totp
    auth.full_login(totp_obj)
    return client, totp_obj, codes


def test_page_needs_sign_in(client):
    assert client.get("/settings/2fa").location == "/login?next=/settings/2fa"


def test_page_without_two_factor(signed_in):
    response = signed_in.get("/settings/2fa")
    assert response.status_code == 200
    html = response.text
    assert "認証アプリによる認証" in html and "設定を開始する" in html and "未設定" in html
    assert "設定を無効化する" not in html


def test_sections_partial_for_htmx(signed_in):
    response = signed_in.get("/settings/2fa", headers=HX)
    assert "<html" not in response.text and 'id="tfa-sections"' in response.text
    assert "HX-Request" in response.headers["Vary"]


def test_setup_dialog_partial_and_full_page(signed_in):
    partial = signed_in.get("/settings/2fa/app/setup", headers=HX)
    assert partial.status_code == 200 and "<html" not in partial.text
    assert partial.headers["Cache-Control"] == "no-store"
    full = signed_in.get("/settings/2fa/app/setup")
    assert "<html" in full.text and full.headers["Cache-Control"] == "no-store"
    # Reloading does not change the secret already shown (a scanned QR stays valid).
    assert secret_from(partial.text) == secret_from(full.text)


def test_setup_shows_qr_svg_and_secret(signed_in):
    html = signed_in.get("/settings/2fa/app/setup", headers=HX).text
    secret = secret_from(html)
    assert len(base64.b32decode(secret)) == 20
    assert "<svg" in html and "<script" not in html
    assert 'autocomplete="one-time-code"' in html and 'inputmode="numeric"' in html


def test_pending_secret_never_in_the_cookie(signed_in):
    secret = secret_from(signed_in.get("/settings/2fa/app/setup", headers=HX).text)
    cookie = signed_in.get_cookie("portal_session").value
    payload = cookie.split(".")[1] if not cookie.startswith(".") else cookie.split(".")[1]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    if cookie.startswith("."):
        raw = zlib.decompress(raw)
    assert secret.encode() not in raw


def test_setup_wrong_then_right_code(app, signed_in, member):
    secret = secret_from(signed_in.get("/settings/2fa/app/setup", headers=HX).text)
    wrong = signed_in.post("/settings/2fa/app/setup", data={"code": "000000"}, headers=HX)
    assert wrong.status_code == 200 and WRONG in wrong.text
    assert secret_from(wrong.text) == secret  # same dialog, same secret
    right = signed_in.post(
        "/settings/2fa/app/setup", data={"code": pyotp.TOTP(secret).now()}, headers=HX
    )
    assert right.status_code == 200 and right.headers["Cache-Control"] == "no-store"
    codes = codes_from(right.text)
    assert len(codes) == 10
    assert "完了" in right.text
    download = re.search(r'href="data:text/plain;charset=utf-8,([^"]+)"', right.text).group(1)
    assert unquote(download).split() == codes
    with app.app_context():
        assert twofactor.has_two_factor(get_member(member))
    page = signed_in.get("/settings/2fa").text
    assert "設定を無効化する" in page and "残り 10 個" in page


def test_setup_without_javascript_posts_normally(signed_in):
    page = signed_in.get("/settings/2fa/app/setup").text
    assert 'method="post" action="/settings/2fa/app/setup"' in page
    secret = secret_from(page)
    wrong = signed_in.post("/settings/2fa/app/setup", data={"code": "123"})
    assert "<html" in wrong.text and WRONG in wrong.text
    right = signed_in.post("/settings/2fa/app/setup", data={"code": pyotp.TOTP(secret).now()})
    assert "<html" in right.text and len(codes_from(right.text)) == 10
    assert 'href="/settings/2fa"' in right.text  # the 完了 link


def test_setup_code_cannot_be_replayed_at_sign_in(app, signed_in, member):
    secret = secret_from(signed_in.get("/settings/2fa/app/setup").text)
    code = pyotp.TOTP(secret).now()
    signed_in.post("/settings/2fa/app/setup", data={"code": code})
    signed_in.post("/logout")
    signed_in.post("/login", data={"login_id": "alice", "password": PASSWORD})
    response = signed_in.post("/login/verify", data={"code": code})
    assert WRONG in response.text


def test_disable_needs_the_checkbox(app, signed_in_2fa, member):
    client, _, _ = signed_in_2fa
    dialog = client.get("/settings/2fa/app/disable", headers=HX).text
    assert "はい、無効化して問題ありません。" in dialog and "無効化" in dialog
    assert 'data-requires-check="confirm"' in dialog
    refused = client.post("/settings/2fa/app/disable", data={}, headers=HX)
    assert refused.status_code == 200
    assert "チェックを入れてください" in refused.text
    with app.app_context():
        assert twofactor.has_two_factor(get_member(member))


def test_disable_with_checkbox(app, signed_in_2fa, member):
    client, _, codes = signed_in_2fa
    done = client.post("/settings/2fa/app/disable", data={"confirm": "y"}, headers=HX)
    assert "認証アプリによる認証の無効化が完了しました。" in done.text and "完了" in done.text
    with app.app_context():
        m = get_member(member)
        assert not twofactor.has_two_factor(m)
        assert recovery.remaining(m) == 0  # the last method took the codes with it
    client.post("/logout")
    assert client.post("/login", data={"login_id": "alice", "password": PASSWORD}).location == "/"


def test_stale_session_must_reauthenticate_before_disabling(app, signed_in_2fa, member):
    client, totp_obj, codes = signed_in_2fa
    make_stale(client)
    # The dialog asks for a code first, for GET and POST alike.
    asked = client.get("/settings/2fa/app/disable", headers=HX)
    assert "本人確認" in asked.text and 'name="code"' in asked.text
    forced = client.post("/settings/2fa/app/disable", data={"confirm": "y"}, headers=HX)
    assert "本人確認" in forced.text
    with app.app_context():
        assert twofactor.has_two_factor(get_member(member))
    # The password alone is not enough for a member who has 2FA.
    reauth_url = "/settings/reauth?next=/settings/2fa/app/disable"
    refused = client.post(reauth_url, data={"code": PASSWORD}, headers=HX)
    assert WRONG in refused.text
    ok = client.post(reauth_url, data={"code": totp_obj.at(time.time() + 30)})
    assert ok.status_code == 302 and ok.location == "/settings/2fa/app/disable"
    done = client.post("/settings/2fa/app/disable", data={"confirm": "y"}, headers=HX)
    assert "無効化が完了しました" in done.text


def test_recovery_code_also_reauthenticates(signed_in_2fa):
    client, _, codes = signed_in_2fa
    make_stale(client)
    ok = client.post("/settings/reauth?next=/settings/2fa/app/replace", data={"code": codes[3]})
    assert ok.location == "/settings/2fa/app/replace"


def test_reauth_next_is_local_only(signed_in_2fa):
    client, _, codes = signed_in_2fa
    make_stale(client)
    ok = client.post("/settings/reauth?next=//evil.example/", data={"code": codes[0]})
    assert ok.location == "/settings/2fa"


def test_member_without_two_factor_reauthenticates_with_password(signed_in):
    make_stale(signed_in)
    asked = signed_in.get("/settings/2fa/app/setup", headers=HX)
    assert "本人確認" in asked.text and 'name="password"' in asked.text
    wrong = signed_in.post(
        "/settings/reauth?next=/settings/2fa/app/setup", data={"password": "nope"}, headers=HX
    )
    assert "パスワードが正しくありません。" in wrong.text
    ok = signed_in.post(
        "/settings/reauth?next=/settings/2fa/app/setup", data={"password": PASSWORD}
    )
    assert ok.location == "/settings/2fa/app/setup"
    assert "totp-secret" in signed_in.get("/settings/2fa/app/setup").text


def test_replace_app_swaps_only_after_new_code(app, signed_in_2fa, member, monkeypatch):
    client, old, _ = signed_in_2fa
    new_secret = secret_from(client.get("/settings/2fa/app/replace", headers=HX).text)
    assert new_secret != old.secret
    wrong = client.post("/settings/2fa/app/replace", data={"code": "000000"}, headers=HX)
    assert WRONG in wrong.text
    ok = client.post(
        "/settings/2fa/app/replace",
        data={"code": pyotp.TOTP(new_secret).at(time.time() + 30)},
        headers=HX,
    )
    assert "認証アプリを変更しました。" in ok.text
    client.post("/logout")
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    assert WRONG in client.post("/login/verify", data={"code": old.now()}).text
    # Half a minute later the new phone's next code signs in.
    later = datetime.now(UTC) + timedelta(seconds=30)
    monkeypatch.setattr(sessions, "now", lambda: later)
    new = pyotp.TOTP(new_secret)
    assert (
        client.post("/login/verify", data={"code": new.at(later + timedelta(seconds=30))}).location
        == "/"
    )


def test_regenerate_recovery_codes(app, signed_in_2fa, member):
    client, _, old_codes = signed_in_2fa
    confirm = client.get("/settings/2fa/recovery/regenerate", headers=HX)
    assert "リカバリーコードを再発行" in confirm.text
    done = client.post("/settings/2fa/recovery/regenerate", headers=HX)
    assert done.headers["Cache-Control"] == "no-store"
    new_codes = codes_from(done.text)
    assert len(new_codes) == 10 and not set(new_codes) & set(old_codes)
    with app.app_context():
        m = get_member(member)
        assert not recovery.use(m, old_codes[0], datetime.now(UTC))
        assert recovery.use(m, new_codes[0], datetime.now(UTC))


def test_guide_q3_device_change_path(app, client, auth, member_with_totp):
    """Sign in with a recovery code, turn the app off, set it up again, regenerate codes."""
    _, old, codes = member_with_totp
    auth.login()
    assert client.post("/login/recovery", data={"recovery_code": codes[0]}).location == "/"
    done = client.post("/settings/2fa/app/disable", data={"confirm": "y"})
    assert "認証アプリによる認証の無効化が完了しました。" in done.text
    secret = secret_from(client.get("/settings/2fa/app/setup").text)
    enabled = client.post("/settings/2fa/app/setup", data={"code": pyotp.TOTP(secret).now()})
    fresh_codes = codes_from(enabled.text)
    assert len(fresh_codes) == 10
    regenerated = codes_from(client.post("/settings/2fa/recovery/regenerate").text)
    assert len(regenerated) == 10 and not set(regenerated) & set(fresh_codes)
    client.post("/logout")
    auth.login()
    new = pyotp.TOTP(secret)
    assert WRONG in auth.verify(old.at(time.time() + 30)).text
    assert auth.verify(new.at(time.time() + 30)).location == "/"


def test_members_see_only_their_own_state(app, client, auth, member_with_totp):
    from portal import members

    with app.app_context():
        members.create("bob", email="bob@example.com", password=PASSWORD)
    auth.login("bob")
    page = client.get("/settings/2fa").text
    assert "未設定" in page and "設定を無効化する" not in page
    # Bob's disable request cannot touch Alice's app, whatever he sends.
    response = client.post("/settings/2fa/app/disable", data={"confirm": "y", "member_id": "1"})
    assert "まだ設定されていません" in response.text
    with app.app_context():
        assert twofactor.has_two_factor(members.find("alice"))


@pytest.mark.parametrize("change", ["enable", "disable", "replace", "regenerate"])
def test_changing_the_second_step_evicts_other_sessions(app, client, member, change):
    """A thief who got in with the password alone is thrown out once the member turns
    on (or changes) the second step; the member's own session carries on."""
    thief = app.test_client()
    assert thief.post("/login", data={"login_id": "alice", "password": PASSWORD}).location == "/"
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    secret = secret_from(client.get("/settings/2fa/app/setup").text)
    client.post("/settings/2fa/app/setup", data={"code": pyotp.TOTP(secret).now()})
    if change == "disable":
        client.post("/settings/2fa/app/disable", data={"confirm": "y"})
    elif change == "replace":
        new = secret_from(client.get("/settings/2fa/app/replace").text)
        done = client.post(
            "/settings/2fa/app/replace", data={"code": pyotp.TOTP(new).at(time.time() + 30)}
        )
        assert "認証アプリを変更しました。" in done.text
    elif change == "regenerate":
        assert len(codes_from(client.post("/settings/2fa/recovery/regenerate").text)) == 10
    assert thief.get("/").location == "/login?next=/"
    assert client.get("/").status_code == 200
    # The surviving session keeps its recent second step: no re-authentication asked.
    assert "本人確認" not in client.get("/settings/2fa/app/replace").text


def test_double_clicks_never_crash(app, signed_in):
    """Parallel opens of the set-up dialog share one secret; parallel confirmations
    enable the app once. Each other request is told it is already set up, or (now that
    the member has 2FA) asked for a second step, or, arriving after the winner
    re-issued the session, sent to sign in: never a 500, never a second set of codes."""
    import threading

    cookie = signed_in.get_cookie("portal_session").value

    def in_parallel(n, call):
        barrier = threading.Barrier(n)
        results = []

        def run():
            c = app.test_client()
            c.set_cookie("portal_session", cookie)
            barrier.wait(timeout=30)
            results.append(call(c))

        threads = [threading.Thread(target=run) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        return results

    opened = in_parallel(6, lambda c: c.get("/settings/2fa/app/setup", headers=HX))
    assert [r.status_code for r in opened] == [200] * 6
    secrets_shown = {secret_from(r.text) for r in opened}
    assert len(secrets_shown) == 1
    code = pyotp.TOTP(secrets_shown.pop()).now()
    confirmed = in_parallel(
        6, lambda c: c.post("/settings/2fa/app/setup", data={"code": code}, headers=HX)
    )
    assert [r.status_code for r in confirmed] == [200] * 6
    winners = [r for r in confirmed if len(codes_from(r.text)) == 10]
    assert len(winners) == 1
    for loser in confirmed:
        if loser is not winners[0]:
            redirected = loser.headers.get("HX-Redirect", "").startswith("/login")
            told = "既に設定済みです" in loser.text or "本人確認" in loser.text
            assert told or redirected, loser.text
            assert "totp-secret" not in loser.text
            # A late loser must not hand back the old cookie over the re-issued one.
            assert "portal_session=" not in loser.headers.get("Set-Cookie", "") or not redirected


def _danger_button(html: str) -> str:
    return re.search(r'<button[^>]*data-requires-check="confirm"[^>]*>', html).group(0)


def test_disable_button_is_rendered_disabled_in_the_dialog(signed_in_2fa):
    """Bug: 無効化 was pressable for a moment as the dialog opened. In the htmx dialog it
    is disabled until the box is ticked; on the no-JavaScript page it stays usable."""
    client, _, _ = signed_in_2fa
    assert " disabled" in _danger_button(client.get("/settings/2fa/app/disable", headers=HX).text)
    assert " disabled" not in _danger_button(client.get("/settings/2fa/app/disable").text)
    refused = client.post("/settings/2fa/app/disable", data={}, headers=HX)
    assert " disabled" in _danger_button(refused.text)


def test_disabling_the_last_method_says_the_recovery_codes_go_too(app, signed_in_2fa, member):
    """Bug: turning off the last method silently deleted the remaining recovery codes."""
    client, _, codes = signed_in_2fa
    with app.app_context():
        recovery.use(get_member(member), codes[0], datetime.now(UTC))
    dialog = client.get("/settings/2fa/app/disable", headers=HX).text
    assert "二段階認証がオフになり、残りのリカバリーコード（9個）も使えなくなります。" in dialog
    assert "はい、無効化して問題ありません。" in dialog
    done = client.post("/settings/2fa/app/disable", data={"confirm": "y"}, headers=HX).text
    assert "残っていたリカバリーコード（9個）も使えなくなりました。" in done


def test_disabling_one_of_two_methods_keeps_the_codes_and_says_what_remains(
    app, signed_in_2fa, member
):
    client, _, _ = signed_in_2fa
    with app.app_context():
        from portal.extensions import db
        from portal.models import ContactMethod

        db.session.add(ContactMethod(member_id=member, kind="email"))
        db.session.commit()
    dialog = client.get("/settings/2fa/app/disable", headers=HX).text
    assert "リカバリーコード（" not in dialog
    done = client.post("/settings/2fa/app/disable", data={"confirm": "y"}, headers=HX).text
    assert "ログインには、引き続きメールを使えます。" in done
    with app.app_context():
        assert recovery.remaining(get_member(member)) == 10


def _title_and_body(html: str) -> tuple[str, str]:
    title = re.search(r'<h2 id="dialog-title"[^>]*>(.*?)</h2>', html, re.S).group(1).strip()
    body = re.search(r'<p class="done"[^>]*>(.*?)</p>', html, re.S).group(1).strip()
    return title, body


def test_completion_dialogs_do_not_repeat_their_title(app, signed_in_2fa, member):
    """Bug: completion dialogs showed their title again as the body text."""
    client, _, _ = signed_in_2fa
    with app.app_context():
        get_member(member).email = "alice@example.com"
    seen = []
    done = client.post("/settings/2fa/app/disable", data={"confirm": "y"}, headers=HX).text
    seen.append(_title_and_body(done))
    for title, body in seen:
        assert title.rstrip("。") not in body and body.rstrip("。") not in title
