"""Passkeys in the domain (portal.twofactor.passkeys and the twofactor entry points), met
by a member's authenticator and by an attacker's: registration, the second step,
re-authentication and passwordless sign-in, and every refusal issue 11 names.

Responses come from :class:`webauthn_helpers.SoftAuthenticator`, so signatures are real;
each refusal test changes one thing about an otherwise good response. Session keys are
plain strings (the views pass the browser session's id)."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import cbor2
import pytest
from conftest import NOW, get_member
from twofactor_helpers import fresh, make_member
from webauthn_helpers import (
    SoftAuthenticator,
    b64url,
    cose_key,
    edited,
    tampered_client_data,
    tampered_signature,
)

from portal import twofactor
from portal.extensions import db
from portal.models import Passkey, WebAuthnChallenge
from portal.twofactor import Outcome, devices, lockout, passkeys, recovery
from portal.twofactor.passkeys import Failure, RelyingParty

RP = RelyingParty(id="portal.example.com", origin="https://portal.example.com", name="Portal")
SESSION = "browser-session-1"
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)


@pytest.fixture
def alice(ctx, member):
    return get_member(member)


@pytest.fixture
def bob(ctx):
    return make_member("bob", "bob@example.com", "+819087654321")


def register(m, authenticator, name="鍵", now=NOW, session=SESSION, **create) -> Passkey:
    """Add a passkey the way the settings page does; the stored key."""
    options = passkeys.begin_registration(m, name, RP, session, now)
    key = passkeys.finish_registration(m, authenticator.create(options, **create), RP, session, now)
    assert isinstance(key, Passkey), key
    return key


def prompt(m, authenticator, purpose="second", now=NOW, session=SESSION, credential=None) -> str:
    """Begin an assertion for ``m`` (None: passwordless) and let the authenticator answer."""
    options = passkeys.begin_authentication(m, RP, session, purpose, now)
    return authenticator.get(options, credential)


def check(m, response, purpose="second", now=NOW, session=SESSION) -> passkeys.Assertion:
    return passkeys.check_assertion(m, response, RP, session, purpose, now)


def stored(key: Passkey) -> Passkey | None:
    """The key as the database holds it now."""
    db.session.expire_all()
    return db.session.get(Passkey, key.id)


def limit(app) -> int:
    return app.config["PORTAL_TFA_MAX_FAILURES"]


# --- registration -----------------------------------------------------------------------


@pytest.mark.parametrize("eligible, backed_up", [(False, False), (True, False), (True, True)])
def test_registration_keeps_every_field_the_issue_lists(alice, eligible, backed_up):
    device = SoftAuthenticator(
        backup_eligible=eligible, backed_up=backed_up, transports=("usb", "nfc", "pigeon")
    )
    key = register(alice, device, name="  YubiKey 5  ", sign_count=7)

    row = stored(key)
    credential = device.credentials[0]
    assert row.member_id == alice.id
    assert row.credential_id == credential.id
    assert row.public_key == cose_key(credential.private_key)
    assert row.sign_count == 7
    assert row.transports == "usb,nfc"  # an unknown transport is not kept
    assert row.aaguid == "a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90"
    assert (row.backup_eligible, row.backed_up) == (eligible, backed_up)
    assert row.name == "YubiKey 5"
    assert row.created_at == NOW and row.last_used_at is None

    assert check(alice, prompt(alice, device, now=NOW + MINUTE), now=NOW + MINUTE).ok
    row = stored(key)
    assert row.last_used_at == NOW + MINUTE and row.sign_count == 8
    assert row.created_at == NOW


def test_use_keeps_the_backup_state_the_authenticator_reports(alice):
    device = SoftAuthenticator(backup_eligible=True, backed_up=False)
    key = register(alice, device)
    device.backed_up = True  # synced to the cloud since
    assert check(alice, prompt(alice, device)).ok
    assert stored(key).backed_up


def test_the_user_handle_is_random_stable_and_the_members_own(alice, bob):
    options = json.loads(passkeys.begin_registration(alice, "鍵", RP, SESSION, NOW))
    handle = fresh(alice.id).webauthn_user_id
    assert handle is not None and len(handle) == 32
    assert options["user"]["id"] == b64url(handle)
    assert options["user"]["name"] == "alice"
    assert options["rp"] == {"id": RP.id, "name": RP.name}

    again = json.loads(passkeys.begin_registration(alice, "鍵", RP, SESSION, NOW))
    assert again["user"]["id"] == options["user"]["id"]
    assert again["challenge"] != options["challenge"]
    bobs = json.loads(passkeys.begin_registration(bob, "鍵", RP, "bob-session", NOW))
    assert bobs["user"]["id"] != options["user"]["id"]


def test_exclude_credentials_lists_the_members_existing_keys(alice, bob):
    device = SoftAuthenticator(transports=("usb", "nfc"))
    first = register(alice, device, name="一本目")
    second = register(alice, device, name="二本目")
    register(bob, SoftAuthenticator(), session="bob-session")

    options = json.loads(passkeys.begin_registration(alice, "三本目", RP, SESSION, NOW))
    assert options["excludeCredentials"] == [
        {"id": b64url(key.credential_id), "type": "public-key", "transports": ["usb", "nfc"]}
        for key in (first, second)
    ]


def test_the_eleventh_key_is_refused(alice):
    device = SoftAuthenticator()
    for number in range(10):
        register(alice, device, name=f"鍵{number}")
    options = passkeys.begin_registration(alice, "十一本目", RP, SESSION, NOW)
    outcome = passkeys.finish_registration(alice, device.create(options), RP, SESSION, NOW)
    assert outcome is Failure.TOO_MANY
    assert passkeys.count(alice) == 10
    assert "十一本目" not in [key.name for key in passkeys.listed(alice)]


def test_the_same_credential_twice_is_refused_for_anyone(alice, bob):
    device = SoftAuthenticator()
    register(alice, device)
    credential = device.credentials[0]

    options = passkeys.begin_registration(alice, "もう一度", RP, SESSION, NOW)
    outcome = passkeys.finish_registration(
        alice, device.create(options, reuse=credential), RP, SESSION, NOW
    )
    assert outcome is Failure.DUPLICATE
    assert passkeys.count(alice) == 1

    options = passkeys.begin_registration(bob, "盗んだ鍵", RP, "bob-session", NOW)
    outcome = passkeys.finish_registration(
        bob, device.create(options, reuse=credential), RP, "bob-session", NOW
    )
    assert outcome is Failure.DUPLICATE
    assert passkeys.count(bob) == 0
    assert [key.member_id for key in passkeys.listed(alice)] == [alice.id]


@pytest.mark.parametrize(
    "knob",
    [
        {"origin": "https://portal.example.com.evil.test"},
        {"origin": "http://portal.example.com"},
        {"rp_id": "evil.test"},
        {"rp_id": "example.com"},  # a parent domain the portal does not use as its RP ID
        {"user_present": False},
    ],
    ids=["origin", "scheme", "rp-id", "parent-rp-id", "no-presence"],
)
def test_registration_from_elsewhere_is_refused(alice, knob):
    device = SoftAuthenticator(**knob)
    options = passkeys.begin_registration(alice, "鍵", RP, SESSION, NOW)
    outcome = passkeys.finish_registration(alice, device.create(options), RP, SESSION, NOW)
    assert outcome is Failure.INVALID
    assert passkeys.count(alice) == 0


def test_registration_with_a_get_client_data_is_refused(alice):
    device = SoftAuthenticator()
    options = passkeys.begin_registration(alice, "鍵", RP, SESSION, NOW)
    response = tampered_client_data(device.create(options), type="webauthn.get")
    assert passkeys.finish_registration(alice, response, RP, SESSION, NOW) is Failure.INVALID
    assert passkeys.count(alice) == 0


def test_a_registration_response_is_used_once(alice):
    device = SoftAuthenticator()
    options = passkeys.begin_registration(alice, "鍵", RP, SESSION, NOW)
    response = device.create(options)
    assert isinstance(passkeys.finish_registration(alice, response, RP, SESSION, NOW), Passkey)
    assert passkeys.finish_registration(alice, response, RP, SESSION, NOW) is Failure.GONE

    passkeys.begin_registration(alice, "鍵2", RP, SESSION, NOW)  # a new prompt
    assert passkeys.finish_registration(alice, response, RP, SESSION, NOW) is Failure.INVALID
    assert passkeys.count(alice) == 1


def test_a_registration_begun_for_one_member_cannot_finish_for_another(alice, bob):
    device = SoftAuthenticator()
    options = passkeys.begin_registration(alice, "鍵", RP, SESSION, NOW)
    outcome = passkeys.finish_registration(bob, device.create(options), RP, SESSION, NOW)
    assert outcome is Failure.GONE
    assert passkeys.count(bob) == 0 and passkeys.count(alice) == 0


def test_a_registration_expires_after_five_minutes(alice):
    device = SoftAuthenticator()
    options = passkeys.begin_registration(alice, "鍵", RP, SESSION, NOW)
    late = NOW + 5 * MINUTE
    assert passkeys.finish_registration(alice, device.create(options), RP, SESSION, late) is (
        Failure.GONE
    )
    options = passkeys.begin_registration(alice, "鍵", RP, SESSION, NOW)
    just_in_time = NOW + 5 * MINUTE - SECOND
    key = passkeys.finish_registration(alice, device.create(options), RP, SESSION, just_in_time)
    assert isinstance(key, Passkey)


def test_the_name_is_kept_with_the_challenge(alice):
    device = SoftAuthenticator()
    options = passkeys.begin_registration(alice, " ノートPC ", RP, SESSION, NOW)
    assert passkeys.pending_name(alice, SESSION, NOW) == "ノートPC"
    assert passkeys.pending_name(alice, "other-session", NOW) is None
    key = passkeys.finish_registration(alice, device.create(options), RP, SESSION, NOW)
    assert key.name == "ノートPC"
    assert passkeys.pending_name(alice, SESSION, NOW) is None


def test_a_name_taken_meanwhile_gets_a_number(alice):
    """Two tabs began a key named alike; the second to finish is numbered."""
    device = SoftAuthenticator()
    first = passkeys.begin_registration(alice, "鍵", RP, "tab-1", NOW)
    second = passkeys.begin_registration(alice, "鍵", RP, "tab-2", NOW)
    assert passkeys.finish_registration(alice, device.create(first), RP, "tab-1", NOW).name == (
        "鍵"
    )
    assert passkeys.finish_registration(alice, device.create(second), RP, "tab-2", NOW).name == (
        "鍵 (2)"
    )


def test_a_registration_with_transports_that_are_not_a_list_keeps_none(alice):
    device = SoftAuthenticator()
    for transports in (5, True, "usb", {"usb": 1}, None):
        options = passkeys.begin_registration(alice, f"鍵{transports!s:.3}", RP, SESSION, NOW)
        response = edited(device.create(options), transports=transports)
        key = passkeys.finish_registration(alice, response, RP, SESSION, NOW)
        assert isinstance(key, Passkey), (transports, key)
        assert stored(key).transports == ""


def test_a_registration_with_a_malformed_public_key_is_refused(alice):
    """The COSE key is inside the attestation: a member's own browser could send a
    list, a string or an empty map there; refused, never a crash."""
    device = SoftAuthenticator()
    for junk in ([1, 2], "ab", {}, {1: 2}, {1: 2, 3: -7}):
        options = passkeys.begin_registration(alice, "鍵", RP, SESSION, NOW)
        response = device.create(options, public_key=cbor2.dumps(junk))
        assert passkeys.finish_registration(alice, response, RP, SESSION, NOW) is (
            Failure.INVALID
        ), junk
    assert passkeys.count(alice) == 0


def test_a_registration_with_a_key_that_cannot_verify_is_refused(alice):
    """py_webauthn reads a key starting with byte 0x04 as a bare U2F point and takes
    one without coordinates: kept, it would be a passkey that never works (and, as a
    first method, would turn the second step on with recovery codes)."""
    device = SoftAuthenticator()
    options = passkeys.begin_registration(alice, "鍵", RP, SESSION, NOW)
    response = device.create(options, public_key=cbor2.dumps(4))  # the single byte 0x04
    assert passkeys.finish_registration(alice, response, RP, SESSION, NOW) is Failure.INVALID
    assert passkeys.count(alice) == 0


# --- names, rename, remove ----------------------------------------------------------------


EMPTY = "パスキーの名前を入力してください。"
TOO_LONG = "名前は64文字以内で入力してください。"
CONTROL = "名前に改行や制御文字は使えません。"
TAKEN = "同じ名前のパスキーが既にあります。別の名前を付けてください。"


@pytest.mark.parametrize(
    "raw, message",
    [
        (None, EMPTY),
        ("", EMPTY),
        ("  \u3000 ", EMPTY),
        ("a" * 64, None),
        ("鍵" * 64, None),
        (" " + "a" * 64 + " ", None),
        ("a" * 65, TOO_LONG),
        ("鍵\n二本目", CONTROL),
        ("鍵\t二本目", CONTROL),
        ("鍵\x00", CONTROL),
        ("鍵\x7f", CONTROL),
        ("鍵\u202e", CONTROL),
        ("iPhone 15 のパスキー", None),
    ],
)
def test_name_rules(alice, raw, message):
    assert passkeys.name_error(alice, raw) == message


def test_a_name_is_unique_among_the_members_own_keys(alice, bob):
    key = register(alice, SoftAuthenticator(), name="caf\u00e9")
    assert passkeys.name_error(alice, "caf\u00e9") == TAKEN
    assert passkeys.name_error(alice, " cafe\u0301 ") == TAKEN  # the same name, decomposed
    assert passkeys.name_error(alice, "Café") is None
    assert passkeys.name_error(alice, "caf\u00e9", key_id=key.id) is None  # renaming to itself
    other = register(alice, SoftAuthenticator(), name="二本目")
    assert passkeys.name_error(alice, "caf\u00e9", key_id=other.id) == TAKEN
    assert passkeys.name_error(bob, "caf\u00e9") is None  # another member's names do not count


def test_rename(alice, bob):
    key = register(alice, SoftAuthenticator(), name="古い名前")
    bobs = register(bob, SoftAuthenticator(), name="ボブの鍵", session="bob-session")

    assert passkeys.rename(alice, key.id, "  新しい名前 ").name == "新しい名前"
    assert stored(key).name == "新しい名前"

    assert passkeys.rename(alice, bobs.id, "乗っ取り") is None
    assert passkeys.rename(alice, 10**6, "ない鍵") is None
    assert stored(bobs).name == "ボブの鍵"


def test_remove_one_and_all(alice, bob):
    first = register(alice, SoftAuthenticator(), name="一本目")
    second = register(alice, SoftAuthenticator(), name="二本目")
    bobs = register(bob, SoftAuthenticator(), name="ボブの鍵", session="bob-session")

    assert passkeys.remove(alice, bobs.id) == []
    assert stored(bobs) is not None
    assert passkeys.remove(alice, first.id) == ["一本目"]
    assert [key.name for key in passkeys.listed(alice)] == ["二本目"]

    third = register(alice, SoftAuthenticator(), name="三本目")
    assert sorted(passkeys.remove(alice)) == ["三本目", "二本目"]
    assert passkeys.count(alice) == 0
    assert stored(second) is None and stored(third) is None
    assert passkeys.count(bob) == 1


def test_removing_keys_ends_the_members_ceremonies_in_progress(alice):
    register(alice, SoftAuthenticator(), name="一本目")
    device = SoftAuthenticator()
    options = passkeys.begin_registration(alice, "二本目", RP, SESSION, NOW)
    passkeys.remove(alice)
    assert passkeys.finish_registration(alice, device.create(options), RP, SESSION, NOW) is (
        Failure.GONE
    )


# --- assertion: the challenge -------------------------------------------------------------


@pytest.fixture
def device(alice):
    """Alice's authenticator with one registered passkey."""
    authenticator = SoftAuthenticator()
    register(alice, authenticator)
    return authenticator


def test_the_second_step_accepts_the_members_passkey(alice, device):
    options = json.loads(passkeys.begin_authentication(alice, RP, SESSION, "second", NOW))
    assert options["rpId"] == RP.id
    assert options["userVerification"] == "preferred"
    assert [c["id"] for c in options["allowCredentials"]] == [device.credentials[0].b64id]

    outcome = check(alice, device.get(json.dumps(options)))
    assert outcome.ok and outcome.key.member_id == alice.id


def test_a_response_is_used_once(alice, device):
    response = prompt(alice, device)
    assert check(alice, response).ok
    assert check(alice, response).failure is Failure.GONE

    passkeys.begin_authentication(alice, RP, SESSION, "second", NOW)  # a fresh prompt
    assert check(alice, response).failure is Failure.INVALID


def test_only_the_latest_prompt_can_be_answered(alice, device):
    first = passkeys.begin_authentication(alice, RP, SESSION, "second", NOW)
    second = passkeys.begin_authentication(alice, RP, SESSION, "second", NOW)
    assert check(alice, device.get(first)).failure is Failure.INVALID

    first = passkeys.begin_authentication(alice, RP, SESSION, "second", NOW)
    second = passkeys.begin_authentication(alice, RP, SESSION, "second", NOW)
    assert check(alice, device.get(second)).ok


def test_a_challenge_belongs_to_its_session(alice, device):
    response = prompt(alice, device, session="alices-browser")
    assert check(alice, response, session="attackers-browser").failure is Failure.GONE
    assert check(alice, response, session="").failure is Failure.GONE
    assert check(alice, response, session="alices-browser").ok


def test_a_challenge_expires_after_five_minutes(alice, device):
    response = prompt(alice, device)
    assert check(alice, response, now=NOW + 5 * MINUTE).failure is Failure.GONE
    response = prompt(alice, device)
    assert check(alice, response, now=NOW + 5 * MINUTE - SECOND).ok


@pytest.mark.parametrize(
    "asked, answered",
    [("second", "reauth"), ("reauth", "second"), ("second", "passwordless")],
)
def test_a_challenge_belongs_to_its_purpose(alice, device, asked, answered):
    response = prompt(alice, device, purpose=asked)
    member = None if answered == "passwordless" else alice
    assert check(member, response, purpose=answered).failure is Failure.GONE
    assert check(alice, response, purpose=asked).ok  # still there for its own purpose


def test_a_registration_challenge_is_no_assertion_challenge(alice, device):
    options = json.loads(passkeys.begin_registration(alice, "鍵", RP, SESSION, NOW))
    response = device.get(json.dumps({"challenge": options["challenge"], "rpId": RP.id}))
    assert check(alice, response).failure is Failure.GONE


def test_a_challenge_asked_for_one_member_is_not_anothers(alice, bob, device):
    """Bob, signed in with his password in the browser where Alice's prompt is open,
    cannot pass his own second step with Alice's challenge."""
    bobs_device = SoftAuthenticator()
    register(bob, bobs_device, session="bob-session")
    options = passkeys.begin_authentication(alice, RP, SESSION, "second", NOW)
    response = bobs_device.get(options, bobs_device.credentials[0])
    assert check(bob, response).failure is Failure.GONE


def test_a_member_cannot_begin_passwordless_nor_anyone_a_second_step(alice):
    with pytest.raises(ValueError):
        passkeys.begin_authentication(alice, RP, SESSION, "passwordless", NOW)
    with pytest.raises(ValueError):
        passkeys.begin_authentication(None, RP, SESSION, "second", NOW)


# --- assertion: the response --------------------------------------------------------------


@pytest.mark.parametrize(
    "knob",
    [
        {"origin": "https://portal.example.com.evil.test"},
        {"origin": "https://portal.example.com:8443"},
        {"rp_id": "evil.test"},
        {"rp_id": "example.com"},
        {"user_present": False},
    ],
    ids=["origin", "port", "rp-id", "parent-rp-id", "no-presence"],
)
def test_an_assertion_from_elsewhere_is_refused(alice, device, knob):
    key = passkeys.listed(alice)[0]
    for name, value in knob.items():
        setattr(device, name, value)
    outcome = check(alice, prompt(alice, device, now=NOW + MINUTE), now=NOW + MINUTE)
    assert outcome.failure is Failure.INVALID
    assert stored(key).last_used_at is None and stored(key).sign_count == 0


def test_a_tampered_signature_is_refused(alice, device):
    key = passkeys.listed(alice)[0]
    outcome = check(alice, tampered_signature(prompt(alice, device)))
    assert outcome.failure is Failure.INVALID
    assert stored(key).sign_count == 0 and stored(key).last_used_at is None


def test_a_phishing_pages_origin_rewritten_after_signing_is_refused(alice, device):
    device.origin = "https://portal-example.evil.test"
    response = tampered_client_data(prompt(alice, device), origin=RP.origin)
    assert check(alice, response).failure is Failure.INVALID


def test_a_client_data_changed_after_signing_is_refused(alice, device):
    response = tampered_client_data(prompt(alice, device), crossOrigin=True)
    assert check(alice, response).failure is Failure.INVALID


def test_another_members_passkey_is_no_second_step(alice, bob, device):
    bobs_device = SoftAuthenticator()
    bobs = register(bob, bobs_device, session="bob-session")
    response = prompt(alice, bobs_device, credential=bobs_device.credentials[0])
    outcome = check(alice, response)
    assert outcome.failure is Failure.UNKNOWN and outcome.key is None
    assert stored(bobs).sign_count == 0 and stored(bobs).last_used_at is None


def test_an_unknown_or_removed_passkey_is_refused(alice, device):
    stranger = SoftAuthenticator()
    stranger.create(passkeys.begin_registration(alice, "未登録", RP, "elsewhere", NOW))
    assert check(alice, prompt(alice, stranger, credential=stranger.credentials[0])).failure is (
        Failure.UNKNOWN
    )
    assert check(None, prompt(None, stranger, "passwordless"), "passwordless").failure is (
        Failure.UNKNOWN
    )

    passkeys.remove(alice)
    assert check(alice, prompt(alice, device, credential=device.credentials[0])).failure is (
        Failure.UNKNOWN
    )
    assert check(None, prompt(None, device, "passwordless"), "passwordless").failure is (
        Failure.UNKNOWN
    )


def test_a_mismatched_id_and_raw_id_are_refused(alice, device):
    response = json.loads(prompt(alice, device))
    response["id"] = b64url(b"something else")
    assert check(alice, json.dumps(response)).failure is Failure.INVALID


# --- assertion: the sign count ------------------------------------------------------------


def test_a_sign_count_going_backwards_means_a_clone(alice, device):
    key = passkeys.listed(alice)[0]
    assert check(alice, prompt(alice, device)).ok
    assert check(alice, prompt(alice, device, now=NOW + MINUTE), now=NOW + MINUTE).ok
    assert stored(key).sign_count == 2

    device.credentials[0].sign_count = 0  # a copy made after the first use signs 1 next
    later = NOW + 2 * MINUTE
    outcome = check(alice, prompt(alice, device, now=later), now=later)
    assert outcome.failure is Failure.CLONED and outcome.key.id == key.id
    row = stored(key)
    assert row.sign_count == 2 and row.last_used_at == NOW + MINUTE


def test_an_equal_non_zero_sign_count_is_refused(alice, device):
    key = passkeys.listed(alice)[0]
    assert check(alice, prompt(alice, device)).ok
    device.counts = False  # signs 1 again
    assert check(alice, prompt(alice, device)).failure is Failure.CLONED
    assert stored(key).sign_count == 1


def test_a_counter_that_drops_to_zero_is_refused(alice, device):
    key = passkeys.listed(alice)[0]
    assert check(alice, prompt(alice, device)).ok
    device.credentials[0].sign_count = -1  # signs 0
    assert check(alice, prompt(alice, device)).failure is Failure.CLONED
    assert stored(key).sign_count == 1


def test_authenticators_that_do_not_count_are_accepted(alice):
    """Apple's synced passkeys report 0 every time: both sides zero is no clone."""
    device = SoftAuthenticator(counts=False)
    key = register(alice, device)
    for minute in range(3):
        now = NOW + minute * MINUTE
        assert check(alice, prompt(alice, device, now=now), now=now).ok
    row = stored(key)
    assert row.sign_count == 0 and row.last_used_at == NOW + 2 * MINUTE


def test_a_count_from_registration_must_grow(alice):
    device = SoftAuthenticator()
    key = register(alice, device, sign_count=41)
    assert check(alice, prompt(alice, device)).ok
    assert stored(key).sign_count == 42


# --- user verification --------------------------------------------------------------------


def test_the_second_step_and_reauth_accept_presence_alone(alice, device):
    device.user_verified = False
    assert check(alice, prompt(alice, device)).ok
    assert check(alice, prompt(alice, device, "reauth"), "reauth").ok


def test_passwordless_needs_user_verification(alice, device):
    options = json.loads(passkeys.begin_authentication(None, RP, SESSION, "passwordless", NOW))
    assert options["userVerification"] == "required"
    assert options["allowCredentials"] == []

    device.user_verified = False
    outcome = check(None, device.get(json.dumps(options)), "passwordless")
    assert outcome.failure is Failure.INVALID

    device.user_verified = True
    outcome = check(None, prompt(None, device, "passwordless"), "passwordless")
    assert outcome.ok and outcome.key.member_id == alice.id


def test_passwordless_refuses_the_user_handle_of_another_member(alice, bob, device):
    register(bob, SoftAuthenticator(), session="bob-session")
    bobs_handle = fresh(bob.id).webauthn_user_id
    response = edited(prompt(None, device, "passwordless"), userHandle=b64url(bobs_handle))
    assert check(None, response, "passwordless").failure is Failure.UNKNOWN


def test_passwordless_needs_a_user_handle(alice):
    """A security key without room for a resident key keeps no user handle: it still
    serves as a second step, but cannot sign in alone."""
    device = SoftAuthenticator(resident=False)
    register(alice, device)
    outcome = check(None, prompt(None, device, "passwordless"), "passwordless")
    assert outcome.failure is Failure.UNKNOWN
    assert check(alice, prompt(alice, device)).ok


# --- garbage ------------------------------------------------------------------------------


def _whole(text: str | None):
    return lambda real: text


def _merged(**fields):
    return lambda real: json.dumps(json.loads(real) | fields)


def _part(**fields):
    return lambda real: edited(real, **fields)


# Answers no browser would send: not JSON at all, the wrong shape, far too large, or a
# real answer to the live challenge (naming the member's real credential) with one
# part broken. Each is refused as INVALID, never with an exception.
NOT_A_RESPONSE = {
    "none": _whole(None),
    "empty": _whole(""),
    "blank": _whole("   "),
    "null": _whole("null"),
    "list": _whole("[]"),
    "number": _whole("42"),
    "string": _whole('"text"'),
    "unclosed": _whole("{"),
    "text": _whole("not json at all"),
    "binary": _whole("\x00\xff"),
    "deep-list": _whole("[" * 5000),
    "deep-object": _whole('{"a":' * 3000 + "1" + "}" * 3000),
    "huge": _whole(json.dumps({"id": "A" * 70_000})),
    "wrong-types": _whole(json.dumps({"id": 1, "rawId": [], "response": "x", "type": "x"})),
    "huge-padding": _merged(padding="x" * 70_000),
    "type": _merged(type="password"),
    "raw-id": _merged(rawId=5),
    "response-list": _merged(response=[]),
    "client-data-text": _part(clientDataJSON=b64url(b"not json")),
    "client-data-list": _part(clientDataJSON=b64url(b"[]")),
    "client-data-base64": _part(clientDataJSON="!!!"),
    "client-data-number": _part(clientDataJSON=5),
}
BROKEN_ASSERTION = {
    "auth-data-short": _part(authenticatorData="AAAA"),
    "auth-data-flags": _part(authenticatorData=b64url(b"\xff" * 40)),
    "signature-empty": _part(signature=""),
    "signature-short": _part(signature="a"),
    "user-handle-number": _part(userHandle=5),
    "user-handle-base64": _part(userHandle="\u00e9"),
}
BROKEN_REGISTRATION = {
    "attestation-empty-map": _part(attestationObject=b64url(cbor2.dumps({}))),
    "attestation-no-auth-data": _part(attestationObject=b64url(cbor2.dumps({"fmt": "none"}))),
    "attestation-base64": _part(attestationObject="!!!"),
    "attestation-list": _part(attestationObject=b64url(cbor2.dumps([1, 2]))),
    "attestation-number": _part(attestationObject=5),
}


@pytest.mark.parametrize(
    "breakage",
    [*NOT_A_RESPONSE.values(), *BROKEN_ASSERTION.values()],
    ids=[*NOT_A_RESPONSE, *BROKEN_ASSERTION],
)
def test_garbage_assertions_are_refused_without_a_crash(alice, device, breakage):
    key = passkeys.listed(alice)[0]
    assert check(alice, breakage(prompt(alice, device))).failure is Failure.INVALID
    assert check(alice, prompt(alice, device)).ok  # the key itself still works
    assert stored(key).sign_count == device.credentials[0].sign_count


@pytest.mark.parametrize("breakage", NOT_A_RESPONSE.values(), ids=list(NOT_A_RESPONSE))
def test_garbage_passwordless_is_refused_without_a_crash(alice, device, breakage):
    response = breakage(prompt(None, device, "passwordless"))
    assert twofactor.passwordless(response, NOW, RP, SESSION).failure is Failure.INVALID


@pytest.mark.parametrize(
    "breakage",
    [*NOT_A_RESPONSE.values(), *BROKEN_REGISTRATION.values()],
    ids=[*NOT_A_RESPONSE, *BROKEN_REGISTRATION],
)
def test_garbage_registrations_are_refused_without_a_crash(alice, breakage):
    device = SoftAuthenticator()
    options = passkeys.begin_registration(alice, "鍵", RP, SESSION, NOW)
    response = breakage(device.create(options))
    assert passkeys.finish_registration(alice, response, RP, SESSION, NOW) is Failure.INVALID
    assert passkeys.count(alice) == 0


def test_a_padded_but_reasonable_response_still_counts(alice, device):
    """The size limit refuses what is far larger than any browser's answer, not a
    response with a little extra in it."""
    response = json.loads(prompt(alice, device))
    assert check(alice, json.dumps(response | {"padding": "x" * 1000})).ok


# --- twofactor: enabling and removing -------------------------------------------------------


def enable(m, authenticator, now=NOW, name="鍵") -> list[str]:
    options = passkeys.begin_registration(m, name, RP, SESSION, now)
    key, codes = twofactor.enable_passkey(m, authenticator.create(options), now, RP, SESSION)
    assert isinstance(key, Passkey), key
    return codes


def test_the_first_passkey_brings_recovery_codes_and_the_next_do_not(alice):
    device = SoftAuthenticator()
    codes = enable(alice, device)
    assert len(codes) == 10 and recovery.remaining(alice) == 10
    assert fresh(alice.id).preferred_method == "passkey"
    assert enable(alice, device, name="二本目") == []
    assert recovery.remaining(alice) == 10
    assert recovery.use(alice, codes[0], NOW)


def test_a_passkey_after_the_app_brings_no_new_recovery_codes(ctx, member_with_totp):
    member_id, _, codes = member_with_totp
    alice = get_member(member_id)
    assert enable(alice, SoftAuthenticator()) == []
    assert recovery.use(alice, codes[0], NOW)  # the old set still works
    assert fresh(member_id).preferred_method == "app"


def test_a_refused_registration_changes_nothing(alice):
    device = SoftAuthenticator(origin="https://evil.test")
    options = passkeys.begin_registration(alice, "鍵", RP, SESSION, NOW)
    outcome, codes = twofactor.enable_passkey(alice, device.create(options), NOW, RP, SESSION)
    assert outcome is Failure.INVALID and codes == []
    assert recovery.remaining(alice) == 0 and not twofactor.has_two_factor(alice)


def test_the_passkey_is_a_method_since_its_first_key(ctx, member_with_totp):
    member_id, _, _ = member_with_totp
    alice = get_member(member_id)
    assert "passkey" not in twofactor.enabled_methods(alice)
    assert twofactor.method_since(alice, "passkey") is None
    enable(alice, SoftAuthenticator(), now=NOW)
    enable(alice, SoftAuthenticator(), now=NOW + 60 * MINUTE, name="二本目")
    assert twofactor.enabled_methods(alice) == ["app", "passkey"]
    assert twofactor.method_since(alice, "passkey") == NOW
    assert twofactor.set_preferred(alice, "passkey")
    assert twofactor.preferred_method(alice) == "passkey"


def remember_device(m) -> None:
    devices.remember(m, NOW, timedelta(days=30), label="Firefox", ip="192.0.2.1")


def test_removing_the_last_passkey_without_another_method_ends_the_second_step(alice):
    enable(alice, SoftAuthenticator(), name="一本目")
    enable(alice, SoftAuthenticator(), name="二本目")
    first, second = passkeys.listed(alice)
    remember_device(alice)

    assert twofactor.remove_passkey(alice, first.id) == "一本目"
    assert recovery.remaining(alice) == 10  # a key is left
    assert devices.listed(alice, NOW) == []  # the skip was granted on the old set
    remember_device(alice)

    assert twofactor.remove_passkey(alice, second.id) == "二本目"
    assert recovery.remaining(alice) == 0
    assert devices.listed(alice, NOW) == []
    assert twofactor.enabled_methods(alice) == []


def test_removing_the_last_passkey_keeps_the_codes_of_another_method(ctx, member_with_totp):
    member_id, _, _ = member_with_totp
    alice = get_member(member_id)
    enable(alice, SoftAuthenticator())
    assert twofactor.remove_passkey(alice, passkeys.listed(alice)[0].id) == "鍵"
    assert recovery.remaining(alice) == 10
    assert twofactor.enabled_methods(alice) == ["app"]


def test_removing_another_members_passkey_does_nothing(alice, bob):
    enable(alice, SoftAuthenticator())
    enable(bob, SoftAuthenticator(), name="ボブの鍵")
    remember_device(alice)
    bobs = passkeys.listed(bob)[0]
    assert twofactor.remove_passkey(alice, bobs.id) is None
    assert stored(bobs) is not None
    assert recovery.remaining(alice) == 10 and len(devices.listed(alice, NOW)) == 1


def test_disabling_the_method_removes_every_passkey(alice):
    enable(alice, SoftAuthenticator(), name="一本目")
    enable(alice, SoftAuthenticator(), name="二本目")
    twofactor.disable_method(alice, "passkey")
    assert passkeys.count(alice) == 0
    assert recovery.remaining(alice) == 0
    assert "passkey" not in twofactor.enabled_methods(alice)


def test_the_operators_reset_removes_passkeys_and_their_ceremonies(alice):
    device = SoftAuthenticator()
    enable(alice, device)
    options = passkeys.begin_authentication(alice, RP, SESSION, "second", NOW)
    assert twofactor.reset_all(alice, now=NOW) == ["passkey"]
    assert passkeys.count(alice) == 0
    assert db.session.scalar(db.select(WebAuthnChallenge).filter_by(member_id=alice.id)) is None
    assert check(alice, device.get(options)).failure is Failure.GONE
    with pytest.raises(twofactor.NoSecondStep):
        twofactor.reset_all(alice, now=NOW)


# --- twofactor: the second step and the lock ----------------------------------------------


def verify(m, authenticator, now=NOW, purpose="second", response=None, **kw):
    if response is None:
        response = prompt(m, authenticator, purpose, now, **kw)
    return twofactor.verify_passkey(m, response, now, RP, SESSION, purpose)


def test_verify_passkey_passes_the_second_step(app, alice, device):
    alice.tfa_failures = 3
    db.session.commit()
    result = verify(alice, device)
    assert result.outcome is Outcome.OK
    member = fresh(alice.id)
    assert member.tfa_failures == 0 and member.last_second_step_at == NOW


def test_a_refused_passkey_counts_toward_the_lock(app, alice, device):
    tries = limit(app)
    for attempt in range(1, tries):
        response = tampered_signature(prompt(alice, device))
        result = verify(alice, device, response=response)
        assert result.outcome is Outcome.WRONG and result.passkey is Failure.INVALID
        assert fresh(alice.id).tfa_failures == attempt
    result = verify(alice, device, response=tampered_signature(prompt(alice, device)))
    assert result.outcome is Outcome.LOCKED and result.lock.new
    assert result.locked_until == NOW + timedelta(seconds=app.config["PORTAL_TFA_LOCK_SECONDS"])

    key = passkeys.listed(alice)[0]
    result = verify(alice, device, now=NOW + MINUTE)  # a good response, but locked
    assert result.outcome is Outcome.LOCKED and not result.lock.new
    assert stored(key).last_used_at is None


def test_a_passkey_refusal_is_reported(app, alice, bob, device):
    bobs_device = SoftAuthenticator()
    register(bob, bobs_device, session="bob-session")
    response = prompt(alice, bobs_device, credential=bobs_device.credentials[0])
    result = verify(alice, device, response=response)
    assert result.outcome is Outcome.WRONG and result.passkey is Failure.UNKNOWN

    result = verify(alice, device, response="garbage")  # no live challenge left
    assert result.outcome is Outcome.WRONG and result.passkey is Failure.GONE
    assert fresh(alice.id).tfa_failures == 2

    assert verify(alice, device).ok
    device.credentials[0].sign_count = 0
    result = verify(alice, device)
    assert result.outcome is Outcome.WRONG and result.passkey is Failure.CLONED


def test_reauth_with_a_passkey(alice, device):
    assert verify(alice, device, purpose="reauth").ok
    response = prompt(alice, device, "second")
    result = twofactor.verify_passkey(alice, response, NOW, RP, SESSION, "reauth")
    assert result.passkey is Failure.GONE


# --- twofactor: passwordless ----------------------------------------------------------------


def passwordless(authenticator, now=NOW, response=None):
    if response is None:
        response = prompt(None, authenticator, "passwordless", now)
    return twofactor.passwordless(response, now, RP, SESSION)


def test_passwordless_signs_the_owner_in(alice, bob, device):
    register(bob, SoftAuthenticator(), session="bob-session")
    alice.tfa_failures = 4
    db.session.commit()
    result = passwordless(device)
    assert result.ok
    assert result.member.id == alice.id and result.key.member_id == alice.id
    member = fresh(alice.id)
    assert member.tfa_failures == 0 and member.last_second_step_at == NOW


def test_passwordless_refusals_do_not_lock_the_owner(app, alice, device):
    for _ in range(limit(app) + 2):
        response = tampered_signature(prompt(None, device, "passwordless"))
        result = passwordless(device, response=response)
        assert not result.ok and result.failure is Failure.INVALID
        assert result.member.id == alice.id  # the views may name whose key it was
    assert fresh(alice.id).tfa_failures == 0
    assert lockout.current_lock(alice, NOW) is None
    assert verify(alice, device).ok


def test_passwordless_refuses_a_locked_owner(app, alice, device):
    for _ in range(limit(app)):
        verify(alice, device, response=tampered_signature(prompt(alice, device)))
    assert lockout.current_lock(alice, NOW) is not None

    result = passwordless(device, now=NOW + MINUTE)
    assert not result.ok
    assert result.member.id == alice.id and result.failure is None
    assert result.lock is not None and result.lock.until > NOW + MINUTE
    assert fresh(alice.id).last_second_step_at is None


def test_passwordless_refuses_a_permanently_blocked_owner(alice, device):
    alice.tfa_blocked_at = NOW - MINUTE
    db.session.commit()
    result = passwordless(device)
    assert not result.ok and result.lock is not None and result.lock.permanent


def test_passwordless_without_user_verification_signs_nobody_in(alice, device):
    device.user_verified = False
    result = passwordless(device)
    assert not result.ok and result.failure is Failure.INVALID


def test_passwordless_with_an_unknown_passkey_names_nobody(alice):
    stranger = SoftAuthenticator()
    stranger.create(passkeys.begin_registration(alice, "未登録", RP, "elsewhere", NOW))
    result = passwordless(stranger)
    assert not result.ok and result.member is None and result.failure is Failure.UNKNOWN


# --- found by mutation testing --------------------------------------------------------------


def _named(m, *names: str) -> None:
    for name in names:
        db.session.add(
            Passkey(
                member_id=m.id,
                credential_id=f"named-{name}".encode(),
                public_key=b"-",
                name=name,
                created_at=NOW,
            )
        )
    db.session.commit()


def test_a_name_taken_meanwhile_is_numbered_within_the_length_limit(alice):
    long = "あ" * passkeys.NAME_MAX
    _named(alice, long)
    assert passkeys._free_name(alice, long) == "あ" * (passkeys.NAME_MAX - 4) + " (2)"


def test_numbering_goes_up_to_eleven_then_a_random_name(alice):
    _named(alice, "鍵", *[f"鍵 ({n})" for n in range(2, 8)])
    assert passkeys._free_name(alice, "鍵") == "鍵 (8)"
    _named(alice, *[f"鍵 ({n})" for n in range(8, passkeys.MAX_KEYS + 2)])
    fallback = passkeys._free_name(alice, "鍵")
    assert re.fullmatch(r"passkey-[0-9a-f]{8}", fallback), fallback


def test_owned_handles_ids_up_to_a_database_integer(alice):
    db.session.add(
        Passkey(id=500, member_id=alice.id, credential_id=b"x", public_key=b"-", name="n")
    )
    db.session.commit()
    assert passkeys.owned(alice, 500).name == "n"
    assert passkeys.owned(alice, 2**63) is None  # larger than SQLite's integer: no query
    assert passkeys.owned(alice, 2**63 - 1) is None


def test_refused_answers_still_name_the_key_they_came_with(app, alice):
    """The views audit and report with the key (and passwordless, its owner)."""
    device = SoftAuthenticator(origin=RP.origin)
    key = register(alice, device)
    assert check(alice, tampered_signature(prompt(alice, device))).key.id == key.id
    device.client_extra = {"crossOrigin": True}  # signed: only the frame is wrong
    refused = check(alice, prompt(alice, device))
    assert refused.failure is Failure.INVALID and refused.key.id == key.id
    device.client_extra = {}
    result = twofactor.passwordless(
        tampered_signature(prompt(None, device, "passwordless")), NOW, RP, SESSION
    )
    assert result.member.id == alice.id and result.key.id == key.id
    for _ in range(limit(app)):
        twofactor.verify_code(alice, "000000", NOW)  # no app: every code is wrong
    locked = twofactor.passwordless(prompt(None, device, "passwordless"), NOW, RP, SESSION)
    assert locked.lock is not None and locked.key.id == key.id


def test_verify_passkey_is_a_second_step_unless_told_otherwise(alice):
    device = SoftAuthenticator(origin=RP.origin)
    register(alice, device)
    answer = prompt(alice, device, "second")
    assert twofactor.verify_passkey(alice, answer, NOW, RP, SESSION).ok


def test_a_ceremony_in_a_frame_is_refused_whichever_field_says_so(alice):
    """crossOrigin true alone, or a topOrigin alone (WebAuthn L3 7.2 steps 13-14), each
    signed by the key as a framed browser would send it."""
    device = SoftAuthenticator(origin=RP.origin)
    register(alice, device)
    for extra in ({"crossOrigin": True}, {"topOrigin": "https://evil.example"}):
        device.client_extra = extra
        assert check(alice, prompt(alice, device)).failure is Failure.INVALID, extra
    device.client_extra = {"crossOrigin": False}
    assert check(alice, prompt(alice, device)).ok


def test_a_response_of_exactly_the_size_limit_is_read(alice):
    device = SoftAuthenticator(origin=RP.origin)
    register(alice, device)
    answer = prompt(alice, device)
    padded = answer[:-1] + " " * (passkeys.RESPONSE_MAX - len(answer)) + "}"
    assert len(padded) == passkeys.RESPONSE_MAX
    assert check(alice, padded).ok
    assert check(alice, padded + " ").failure is Failure.GONE  # challenge spent above


def test_prompts_give_the_browser_five_minutes_and_ask_for_resident_keys(alice):
    device = SoftAuthenticator(origin=RP.origin)
    options = json.loads(passkeys.begin_registration(alice, "鍵", RP, SESSION, NOW))
    assert options["timeout"] == 5 * 60 * 1000
    assert options["authenticatorSelection"] == {
        "residentKey": "preferred",
        "requireResidentKey": False,
        "userVerification": "preferred",
    }
    register(alice, device)
    options = json.loads(passkeys.begin_authentication(alice, RP, SESSION, "second", NOW))
    assert options["timeout"] == 5 * 60 * 1000
    with pytest.raises(ValueError, match="only a passwordless sign-in has no member"):
        passkeys.begin_authentication(None, RP, SESSION, "second", NOW)


def test_a_security_key_without_user_verification_can_be_registered(alice):
    """A key touched without a PIN proves presence: enough for a second step."""
    key = register(alice, SoftAuthenticator(origin=RP.origin, user_verified=False))
    assert key.id is not None


def test_the_pending_name_is_this_sessions_live_registration_only(alice, bob):
    passkeys.begin_registration(alice, "仕事用", RP, SESSION, NOW)
    assert passkeys.pending_name(alice, SESSION, NOW) == "仕事用"
    ends = NOW + timedelta(seconds=passkeys.CHALLENGE_SECONDS)
    assert passkeys.pending_name(alice, SESSION, ends - SECOND) == "仕事用"
    assert passkeys.pending_name(alice, SESSION, ends) is None
    assert passkeys.pending_name(bob, SESSION, NOW) is None
    passkeys.begin_authentication(alice, RP, "another-session", "second", NOW)
    assert passkeys.pending_name(alice, "another-session", NOW) is None


def test_the_first_passkey_counts_as_a_second_step_passed_now(alice):
    device = SoftAuthenticator(origin=RP.origin)
    options = passkeys.begin_registration(alice, "鍵", RP, SESSION, NOW)
    key, codes = twofactor.enable_passkey(alice, device.create(options), NOW, RP, SESSION)
    assert isinstance(key, Passkey) and len(codes) == 10
    assert fresh(alice.id).last_second_step_at == NOW


def test_transports_are_stored_once_each(alice):
    key = register(alice, SoftAuthenticator(origin=RP.origin, transports=("usb",) * 80 + ("nfc",)))
    assert key.transports == "usb,nfc"


def test_a_challenge_needs_a_session_and_a_known_purpose(alice):
    with pytest.raises(ValueError, match="a challenge needs a session and a known purpose"):
        passkeys.begin_authentication(alice, RP, "", "second", NOW)
    with pytest.raises(ValueError, match="a challenge needs a session and a known purpose"):
        passkeys.begin_authentication(alice, RP, SESSION, "other", NOW)


def test_other_members_keys_do_not_count_towards_the_ten(alice, bob):
    other = SoftAuthenticator(origin=RP.origin)
    for n in range(5):
        register(bob, other, name=f"bob {n}")
    device = SoftAuthenticator(origin=RP.origin)
    for n in range(passkeys.MAX_KEYS):
        register(alice, device, name=f"alice {n}")
    assert passkeys.count(alice) == passkeys.MAX_KEYS
