"""Cross-cutting protections: CSRF on every state change, framing, CSP, error pages."""

from __future__ import annotations

import pytest
from conftest import PASSWORD, extract_csrf

from portal import twofactor
from portal.members import find

# Every POST route, with a concrete URL to attack it through.
POST_ROUTES = {
    "/login": "/login",
    "/login/verify": "/login/verify",
    "/login/recovery": "/login/recovery",
    "/login/resend": "/login/resend",
    "/login/method": "/login/method",
    "/login/verify/passkey": "/login/verify/passkey",
    "/login/passkey/options": "/login/passkey/options",
    "/login/passkey": "/login/passkey",
    "/logout": "/logout",
    "/login/forgot": "/login/forgot",
    "/login/reset": "/login/reset",
    "/login/password-strength": "/login/password-strength",
    "/settings/reauth": "/settings/reauth",
    "/settings/reauth/send": "/settings/reauth/send",
    "/settings/reauth/passkey": "/settings/reauth/passkey",
    "/settings/2fa/passkey/setup": "/settings/2fa/passkey/setup",
    "/settings/2fa/passkey/register": "/settings/2fa/passkey/register",
    "/settings/2fa/passkey/<int:key_id>/rename": "/settings/2fa/passkey/1/rename",
    "/settings/2fa/passkey/<int:key_id>/remove": "/settings/2fa/passkey/1/remove",
    "/settings/2fa/app/setup": "/settings/2fa/app/setup",
    "/settings/2fa/app/replace": "/settings/2fa/app/replace",
    "/settings/2fa/<any(app, email, sms, passkey):kind>/disable": "/settings/2fa/app/disable",
    "/settings/2fa/<any(email, sms):kind>/setup": "/settings/2fa/email/setup",
    "/settings/2fa/<any(email, sms):kind>/send": "/settings/2fa/sms/send",
    "/settings/2fa/preferred": "/settings/2fa/preferred",
    "/settings/2fa/recovery/regenerate": "/settings/2fa/recovery/regenerate",
    "/settings/sessions/end-others": "/settings/sessions/end-others",
    "/settings/banner/hide": "/settings/banner/hide",
    "/settings/2fa/devices/<int:device_id>/forget": "/settings/2fa/devices/1/forget",
    "/settings/2fa/devices/forget": "/settings/2fa/devices/forget",
    "/admin/policy": "/admin/policy",
    "/admin/policy/terminal": "/admin/policy/terminal",
    "/admin/policy/terminals/<int:terminal_id>/remove": "/admin/policy/terminals/1/remove",
    "/admin/api-tokens/new": "/admin/api-tokens/new",
    "/admin/api-tokens/<int:token_id>/revoke": "/admin/api-tokens/1/revoke",
    "/settings/profile": "/settings/profile",
    "/settings/profile/confirm": "/settings/profile/confirm",
    "/settings/profile/resend": "/settings/profile/resend",
    "/settings/profile/cancel": "/settings/profile/cancel",
    "/settings/profile/language": "/settings/profile/language",
    "/language": "/language",
    "/settings/password": "/settings/password",
    "/settings/password/strength": "/settings/password/strength",
    "/admin/members/<login_id>/reset": "/admin/members/alice/reset",
    "/admin/members/<login_id>/unlock": "/admin/members/alice/unlock",
    "/admin/members/<login_id>/password-reset": "/admin/members/alice/password-reset",
    "/admin/pages/new": "/admin/pages/new",
    "/admin/import": "/admin/import",
    "/admin/pages/<int:page_id>/edit": "/admin/pages/1/edit",
    "/admin/pages/<int:page_id>/delete": "/admin/pages/1/delete",
    "/admin/forms/new": "/admin/forms/new",
    "/admin/forms/<int:form_id>/edit": "/admin/forms/1/edit",
    "/admin/forms/<int:form_id>/open": "/admin/forms/1/open",
    "/admin/forms/<int:form_id>/delete": "/admin/forms/1/delete",
    "/forms/<slug>": "/forms/x",
    "/forms/<slug>/confirm/<int:draft_id>": "/forms/x/confirm/1",
}
POSTS = list(POST_ROUTES.values())
# The admin API's: a token in a header is their only credential (no cookie, no CSRF).
API_POST_ROUTES = {
    "/api/v1/members/<login_id>/reset-2fa": "/api/v1/members/alice/reset-2fa",
    "/api/v1/members/<login_id>/password-link": "/api/v1/members/alice/password-link",
}


def test_every_post_route_is_listed(app):
    """A new POST route must join the CSRF test below (or the API's)."""
    posting = {rule.rule for rule in app.url_map.iter_rules() if "POST" in (rule.methods or set())}
    assert posting == set(POST_ROUTES) | set(API_POST_ROUTES)


@pytest.mark.settings(WTF_CSRF_ENABLED=True)
@pytest.mark.parametrize("url", list(API_POST_ROUTES.values()))
def test_a_signed_in_browser_has_no_credential_for_the_api(app, client, member, url):
    signed_in_with_token(client)
    with app.app_context():
        generation = find("alice").session_generation
    response = client.post(url, data={"confirm": "y"})
    assert response.status_code == 401 and response.json["error"]["code"] == "token_missing"
    with app.app_context():
        assert find("alice").session_generation == generation
    assert client.get("/").status_code == 200  # the browser's own session goes on


def signed_in_with_token(client):
    token = extract_csrf(client.get("/login").text)
    response = client.post(
        "/login", data={"login_id": "alice", "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302
    return extract_csrf(client.get("/").text)


@pytest.mark.settings(WTF_CSRF_ENABLED=True)
@pytest.mark.parametrize("url", POSTS)
def test_missing_csrf_token_is_refused(client, member, url):
    signed_in_with_token(client)
    response = client.post(url, data={"confirm": "y", "code": "123456"})
    assert response.status_code == 400
    assert "ページの有効期限が切れたか、不正な送信です。" in response.text


@pytest.mark.settings(WTF_CSRF_ENABLED=True)
@pytest.mark.parametrize("url", POSTS)
def test_forged_csrf_token_is_refused(app, client, member, url):
    signed_in_with_token(client)
    # A token minted for another visitor's session does not fit this one.
    other = app.test_client()
    forged = extract_csrf(other.get("/login").text)
    response = client.post(url, data={"csrf_token": forged, "confirm": "y"})
    assert response.status_code == 400
    response = client.post(url, data={"confirm": "y"}, headers={"X-CSRFToken": "forged"})
    assert response.status_code == 400


@pytest.mark.settings(WTF_CSRF_ENABLED=True)
def test_forged_disable_leaves_2fa_on(app, client, auth, member_with_totp):
    _, totp_obj, _ = member_with_totp
    token = extract_csrf(client.get("/login").text)
    client.post("/login", data={"login_id": "alice", "password": PASSWORD, "csrf_token": token})
    token = extract_csrf(client.get("/login/verify").text)
    client.post("/login/verify", data={"code": totp_obj.now(), "csrf_token": token})
    assert client.post("/settings/2fa/app/disable", data={"confirm": "y"}).status_code == 400
    with app.app_context():
        assert twofactor.has_two_factor(find("alice"))


@pytest.mark.settings(WTF_CSRF_ENABLED=True)
def test_htmx_header_token_is_accepted(app, client, member):
    token = signed_in_with_token(client)
    response = client.post(
        "/settings/2fa/app/disable",
        data={"confirm": "y"},
        headers={"X-CSRFToken": token, "HX-Request": "true"},
    )
    assert response.status_code == 200 and "まだ設定されていません" in response.text


@pytest.mark.parametrize("url", ["/login", "/", "/settings/2fa", "/nowhere", "/static/portal.js"])
def test_framing_is_forbidden_everywhere(client, url):
    response = client.get(url)
    response.close()
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_csp_allows_no_inline_script(client):
    csp = client.get("/login").headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    html = client.get("/login").text
    assert "<script>" not in html and " on" + "click=" not in html


def test_htmx_is_vendored_and_configured(client):
    html = client.get("/login").text
    assert "/static/htmx-2.0.11.min.js" in html
    assert '"allowEval":false' in html and '"includeIndicatorStyles":false' in html
    with client.get("/static/htmx-2.0.11.min.js") as script:
        assert script.status_code == 200 and b"htmx" in script.data
    assert "http" not in html.split("<body")[0].replace("http-equiv", "")


def test_not_found_is_a_friendly_page(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert "お探しのページは見つかりませんでした。" in response.text


def test_oversized_input_is_a_message_not_a_crash(client, member):
    response = client.post("/login", data={"login_id": "a" * 10000, "password": "b" * 10000})
    assert response.status_code == 200


@pytest.mark.settings(WTF_CSRF_ENABLED=True)
def test_open_page_token_survives_the_session_reissue(client, member):
    """Enabling 2FA re-issues the session; the settings page already open in the
    browser must still be able to sign out (its token stays valid)."""
    import re

    import pyotp

    token = signed_in_with_token(client)
    page = client.get("/settings/2fa/app/setup").text
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page).group(1).replace(" ", "")
    done = client.post(
        "/settings/2fa/app/setup",
        data={"code": pyotp.TOTP(secret).now()},
        headers={"X-CSRFToken": token, "HX-Request": "true"},
    )
    assert "リカバリーコード" in done.text
    assert client.post("/logout", data={"csrf_token": token}).location == "/login"
