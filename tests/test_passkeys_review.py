"""An adversarial review of the passkey work (issue 11): what an attacker, or a reader of
W3C WebAuthn L3 §7.1/§7.2, tries against the ceremonies and the pages around them.

The first part holds what the review found missing (each test says which step of the
specification, or which attack, it is about); the rest pins down what was probed and
found sound, so that a later change cannot quietly undo it."""

from __future__ import annotations

import html
import json
import os
import re

import pytest
from conftest import NOW, PASSWORD, extract_csrf, get_member
from cryptography.hazmat.primitives.asymmetric import ec
from webauthn_helpers import Credential, SoftAuthenticator, b64url, edited

from portal import members
from portal.extensions import db
from portal.models import AuditEvent, Passkey, WebAuthnChallenge
from portal.twofactor import passkeys
from portal.twofactor.passkeys import Failure, RelyingParty

BASE = "https://portal.example.com"
RP = RelyingParty(id="portal.example.com", origin=BASE, name="Portal")
SESSION = "review-session"
pytestmark = pytest.mark.settings(PORTAL_BASE_URL=BASE)


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture
def alice(ctx, member):
    return get_member(member)


@pytest.fixture
def bob(ctx):
    return members.create("bob", email="bob@example.com", password=PASSWORD)


def register(m, device, name="鍵", session=SESSION, **create) -> Passkey | Failure:
    options = passkeys.begin_registration(m, name, RP, session, NOW)
    return passkeys.finish_registration(m, device.create(options, **create), RP, session, NOW)


def prompt(m, device, purpose="second", session=SESSION) -> str:
    return device.get(passkeys.begin_authentication(m, RP, session, purpose, NOW))


def check(m, response, purpose="second", session=SESSION) -> passkeys.Assertion:
    return passkeys.check_assertion(m, response, RP, session, purpose, NOW)


class FramedAuthenticator(SoftAuthenticator):
    """A browser that ran the ceremony in a cross-origin iframe: what clientDataJSON then
    says (crossOrigin true, and the embedding page as topOrigin), signed as usual."""

    top_origin = "https://evil.example"

    def _client_data(self, kind: str, challenge: str) -> bytes:
        return json.dumps(
            {
                "type": kind,
                "challenge": challenge,
                "origin": self.origin,
                "crossOrigin": True,
                "topOrigin": self.top_origin,
            },
            separators=(",", ":"),
        ).encode()


def options_in(page: str) -> str:
    match = re.search(r'data-passkey-options="([^"]+)"', page)
    assert match, "no passkey prompt on the page"
    return html.unescape(match.group(1))


def password(client, login_id="alice"):
    return client.post("/login", data={"login_id": login_id, "password": PASSWORD})


def add_passkey(client, soft, name="MacBook"):
    page = client.post("/settings/2fa/passkey/setup", data={"name": name}).text
    return client.post(
        "/settings/2fa/passkey/register", data={"credential": soft.create(options_in(page))}
    )


# === findings (these fail until the fix) ===================================================


def test_a_credential_id_longer_than_1023_bytes_is_refused_at_registration(alice):
    """WebAuthn L3 §7.1 ("Verify that the credentialId is ≤ 1023 bytes"); py_webauthn does
    not check it. The authenticator data's 2-byte length lets a crafted answer (within
    RESPONSE_MAX) register a ~15 KB credential ID (the column's LargeBinary(1023) bounds
    nothing on SQLite or PostgreSQL), which then goes, base64url, into every
    allowCredentials/excludeCredentials of that member: ten of them put ~200 KB of
    options into each code page and re-authentication dialog."""
    device = SoftAuthenticator()
    huge = Credential(
        id=os.urandom(1024),
        private_key=ec.generate_private_key(ec.SECP256R1()),
        rp_id=RP.id,
        user_handle=None,
    )
    outcome = register(alice, device, reuse=huge)
    assert outcome is Failure.INVALID
    assert passkeys.count(alice) == 0


def test_a_credential_id_of_exactly_1023_bytes_is_still_kept(alice):
    """The limit's other side: 1023 bytes is allowed (passes now, guards the fix)."""
    device = SoftAuthenticator()
    edge = Credential(
        id=os.urandom(1023),
        private_key=ec.generate_private_key(ec.SECP256R1()),
        rp_id=RP.id,
        user_handle=None,
    )
    outcome = register(alice, device, reuse=edge)
    assert isinstance(outcome, Passkey)
    device.credentials.append(edge)
    assert check(alice, prompt(alice, device)).ok


def test_a_second_step_naming_another_members_user_handle_is_refused(alice, bob):
    """WebAuthn L3 §7.2 step 6: when the user was identified before the ceremony (the
    second step, re-authentication) and response.userHandle is present, it MUST map to
    that same user. check_assertion compares the handle only for passwordless, so a
    response carrying Bob's handle passes Alice's second step."""
    device = SoftAuthenticator()
    assert isinstance(register(alice, device), Passkey)
    bob_handle = passkeys._user_handle(bob)  # made at a member's first registration
    for purpose in ("second", "reauth"):
        forged = edited(prompt(alice, device, purpose), userHandle=b64url(bob_handle))
        assert check(alice, forged, purpose).failure is Failure.UNKNOWN
    # Its own handle, and none at all (a non-resident security key), still pass.
    assert check(alice, prompt(alice, device)).ok
    device.credentials[0].user_handle = None
    assert check(alice, prompt(alice, device, "reauth"), "reauth").ok


@pytest.mark.parametrize("ceremony", ["register", "second", "passwordless"])
def test_a_ceremony_run_inside_a_cross_origin_iframe_is_refused(alice, ceremony):
    """WebAuthn L3 §7.1 step 9 / §7.2 step 14: "If C.topOrigin is present, verify that the
    RP expects [the ceremony] within an iframe that is not same-origin with its
    ancestors". The portal never expects that (frame-ancestors 'none'), yet py_webauthn
    ignores crossOrigin and topOrigin, so a response made inside evil.example's frame
    verifies. Defence in depth for a browser or embedding that does not honour the CSP."""
    framed = FramedAuthenticator()
    if ceremony == "register":
        assert register(alice, framed) is Failure.INVALID
        assert passkeys.count(alice) == 0
        return
    device = SoftAuthenticator()
    assert isinstance(register(alice, device), Passkey)
    framed.credentials = device.credentials
    member = None if ceremony == "passwordless" else alice
    outcome = check(member, prompt(member, framed, ceremony), ceremony)
    assert outcome.failure is Failure.INVALID


# === probed and found sound ===================================================================


HOSTILE = '"><img src=x onerror=alert(1)>'


def test_a_synced_passkey_answering_as_a_device_bound_one_is_refused(alice):
    """L3 7.2: backup eligibility is fixed when the key is made; a BE flag that drops
    is not the registered key's answer (a device-bound key can become synced, not back)."""
    device = SoftAuthenticator(origin=BASE, backup_eligible=True, backed_up=True)
    key = register(alice, device)
    assert key.backup_eligible
    device.backup_eligible = device.backed_up = False
    assert check(alice, prompt(alice, device)).failure is Failure.INVALID
    device.backup_eligible = True
    assert check(alice, prompt(alice, device)).ok


def test_two_answers_racing_on_one_key_are_no_clone_report(alice, monkeypatch):
    """The counter moved between reading and writing (another answer of the same key was
    accepted meanwhile): refused quietly, not reported as a cloned key."""
    from portal.twofactor import passkeys as module

    device = SoftAuthenticator(origin=BASE)
    key = register(alice, device)
    answer = prompt(alice, device)
    real_update = module.update

    def racing_update(model):
        # Another request raised the stored count just before this one writes.
        db.session.execute(
            real_update(Passkey)
            .where(Passkey.id == key.id)
            .values(sign_count=99)
            .execution_options(synchronize_session=False)  # as another request's would
        )
        return real_update(model)

    monkeypatch.setattr(module, "update", racing_update)
    refused = check(alice, answer)
    assert refused.failure is Failure.GONE and refused.key.id == key.id


def test_a_hostile_key_name_is_text_everywhere_it_is_shown(app, client, member, operator_totp):
    """The key name reaches the settings list, the completion and rename dialogs, the
    admin member page and the audit log: escaped in each."""
    soft = SoftAuthenticator(origin=BASE)
    assert password(client).status_code == 302
    done = add_passkey(client, soft, name=HOSTILE).text
    assert "<img src=x" not in done and "&lt;img src=x" in done
    page = client.get("/settings/2fa").text
    assert "<img src=x" not in page and "&lt;img src=x" in page
    with app.app_context():
        key_id = db.session.scalar(db.select(Passkey.id))
    rename = client.get(f"/settings/2fa/passkey/{key_id}/rename").text
    assert "<img src=x" not in rename
    client.post("/logout")
    from conftest import OPERATOR_PASSWORD

    client.post("/login", data={"login_id": "boss", "password": OPERATOR_PASSWORD})
    client.post("/login/verify", data={"code": operator_totp.now()})
    for url in ("/admin/members/alice", "/admin/audit"):
        text = client.get(url).text
        assert "onerror=alert" in html.unescape(text), url  # it is shown...
        assert "<img src=x" not in text, url  # ...as text


def test_the_options_json_is_attribute_escaped_whatever_the_members_name(app, client, member):
    """The display name goes into the options JSON, and that into data-passkey-options."""
    with app.app_context():
        m = get_member(member)
        m.name = HOSTILE + "'</script>"
        db.session.commit()
    assert password(client).status_code == 302
    page = client.post("/settings/2fa/passkey/setup", data={"name": "鍵"}).text
    assert "<img src=x" not in page and "</script>'" not in page
    options = json.loads(options_in(page))
    assert options["user"]["displayName"] == HOSTILE + "'</script>"


def test_passwordless_options_say_nothing_about_any_member(app, client, member):
    """No input, no allowCredentials, no user: the same answer with or without members."""
    soft = SoftAuthenticator(origin=BASE)
    password(client)
    add_passkey(client, soft)
    client.post("/logout")
    response = client.post("/login/passkey/options", data={"login_id": "alice"})
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert "no-store" in response.headers["Cache-Control"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    options = json.loads(response.text)
    assert options.get("allowCredentials", []) == []
    assert options["userVerification"] == "required"
    assert "alice" not in response.text


@pytest.mark.settings(PORTAL_BASE_URL=BASE, WTF_CSRF_ENABLED=True)
def test_the_options_endpoint_needs_the_csrf_token_in_its_header(app, client, member):
    """passkeys.js sends X-CSRFToken; a cross-site POST (no token) gets no challenge."""
    token = extract_csrf(client.get("/login").text)
    assert client.post("/login/passkey/options").status_code == 400
    ok = client.post("/login/passkey/options", headers={"X-CSRFToken": token})
    assert ok.status_code == 200 and "challenge" in json.loads(ok.text)


def test_an_anonymous_browser_holds_one_passwordless_challenge_at_a_time(app, client):
    """Asking again replaces the session's challenge: one browser cannot fill the table
    (many browsers are bounded by PORTAL_LIMIT_PASSKEY_OPTIONS per address)."""
    for _ in range(25):
        assert client.post("/login/passkey/options").status_code == 200
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(WebAuthnChallenge)) == 1


def test_a_second_step_answer_cannot_sign_in_passwordless_nor_the_reverse(app, client, member):
    """The pending sign-in's prompt (bound to alice, purpose "second") answered at
    /login/passkey finds no challenge; a passwordless prompt's answer at the code page
    neither (the code page's own challenge does not match it)."""
    soft = SoftAuthenticator(origin=BASE)
    password(client)
    add_passkey(client, soft)
    client.post("/logout")
    password(client)
    answer = soft.get(options_in(client.get("/login/verify").text))
    response = client.post("/login/passkey", data={"credential": answer})
    assert response.status_code == 400 and "有効期限が切れたか" in response.text
    assert client.get("/settings/2fa").status_code == 302
    options = client.post("/login/passkey/options").get_data(as_text=True)
    response = client.post("/login/verify/passkey", data={"credential": soft.get(options)})
    assert "パスキーを確認できませんでした。" in response.text  # not the second step's challenge
    assert client.get("/settings/2fa").status_code == 302


def test_another_browser_cannot_answer_a_pending_sign_ins_prompt(app, member):
    """A response recorded from Alice's browser, posted from the attacker's browser that
    has Alice's password: that browser's session holds no such challenge."""
    soft = SoftAuthenticator(origin=BASE)
    alices, attackers = app.test_client(), app.test_client()
    password(alices)
    add_passkey(alices, soft)
    alices.post("/logout")
    password(alices)
    answer = soft.get(options_in(alices.get("/login/verify").text))
    password(attackers)
    attackers.get("/login/verify")
    response = attackers.post("/login/verify/passkey", data={"credential": answer})
    assert "パスキーを確認できませんでした。" in response.text  # not this browser's challenge
    assert attackers.get("/settings/2fa").status_code == 302
    # Alice's own browser still can.
    assert alices.post("/login/verify/passkey", data={"credential": answer}).status_code == 302


def test_reauth_needs_the_members_own_passkey(app, client, member):
    """A stale session cannot be refreshed with another member's passkey, nor with an
    answer to a prompt of another purpose."""
    with app.app_context():
        members.create("bob", email="bob@example.com", password=PASSWORD)
    bobs = SoftAuthenticator(origin=BASE)
    password(client, "bob")
    add_passkey(client, bobs)
    client.post("/logout")
    soft = SoftAuthenticator(origin=BASE)
    password(client)
    add_passkey(client, soft)
    with client.session_transaction() as s:
        s["tfa_at"] -= 11 * 60
        s["auth_at"] -= 11 * 60
    dialog = client.get("/settings/2fa/passkey/setup").text
    assert "本人確認" in dialog
    answer = bobs.get(options_in(dialog), bobs.credentials[0])
    response = client.post("/settings/reauth/passkey", data={"credential": answer})
    assert response.status_code == 200 and "登録されていません" in response.text
    assert "本人確認" in client.get("/settings/2fa/passkey/setup").text
    with app.app_context():
        failed = db.session.scalars(
            db.select(AuditEvent).where(AuditEvent.event == "reauth.failed")
        ).all()
        assert [e.method for e in failed] == ["passkey"]


def test_a_withdrawn_passkey_method_cannot_refresh_a_session(app, client, member_with_totp):
    from test_passkeys_views import set_policy

    _, totp, _codes = member_with_totp
    password(client)
    client.post("/login/verify", data={"code": totp.now()})
    soft = SoftAuthenticator(origin=BASE)
    add_passkey(client, soft)
    with client.session_transaction() as s:
        s["tfa_at"] -= 11 * 60
    dialog = client.get("/settings/2fa/recovery/regenerate").text
    assert "パスキーで確認する" in dialog
    answer = soft.get(options_in(dialog))
    set_policy(app, methods="app,email,sms")
    client.post("/settings/reauth/passkey", data={"credential": answer})
    assert "本人確認" in client.get("/settings/2fa/recovery/regenerate").text


def test_passwordless_is_off_when_the_policy_withdraws_passkeys(app, client, member):
    """The passwordless switch left on does not matter once passkeys are withdrawn: no
    prompt, and an answer to a prompt asked for before the change signs nobody in."""
    from test_passkeys_views import set_policy

    soft = SoftAuthenticator(origin=BASE)
    password(client)
    add_passkey(client, soft)
    client.post("/logout")
    options = client.post("/login/passkey/options").get_data(as_text=True)
    set_policy(app, methods="app,email,sms", passwordless=True)
    assert client.post("/login/passkey/options").status_code == 403
    response = client.post("/login/passkey", data={"credential": soft.get(options)})
    assert response.status_code == 400 and "現在使えません" in response.text
    assert client.get("/settings/2fa").status_code == 302


def test_passwordless_sign_in_goes_only_to_a_local_next(app, client, member):
    soft = SoftAuthenticator(origin=BASE)
    password(client)
    add_passkey(client, soft)
    client.post("/logout")
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        options = client.post("/login/passkey/options").get_data(as_text=True)
        response = client.post(
            "/login/passkey", query_string={"next": target}, data={"credential": soft.get(options)}
        )
        assert response.status_code == 302 and response.location == "/", target
        client.post("/logout")


def test_two_registrations_racing_past_the_limit_keep_ten_keys(alice, monkeypatch):
    """Both passed the count check before either stored its key: the later one gives way."""
    from portal.twofactor import passkeys as module

    device = SoftAuthenticator(origin=BASE)
    for n in range(passkeys.MAX_KEYS - 1):
        assert isinstance(register(alice, device, name=f"鍵{n}"), Passkey)
    monkeypatch.setattr(module, "count", lambda m: 0)  # the other request's view
    assert isinstance(register(alice, device, name="十個目"), Passkey)
    assert register(alice, device, name="十一個目") is Failure.TOO_MANY
    names = [k.name for k in passkeys.listed(alice)]
    assert len(names) == passkeys.MAX_KEYS and "十一個目" not in names
