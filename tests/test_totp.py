"""Authenticator-app rules, tested against the domain directly with an explicit ``now``."""

from __future__ import annotations

import base64
import threading
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from conftest import NOW, get_member

from portal import twofactor
from portal.extensions import db
from portal.models import TotpCredential, TotpEnrolment
from portal.twofactor import Enrolment, codes, totp

RFC_SEED = "12345678901234567890"
RFC_SECRET = base64.b32encode(RFC_SEED.encode()).decode()


@pytest.mark.parametrize(
    ("unix_time", "expected"),
    [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ],
)
def test_rfc6238_sha1_vectors(unix_time, expected):
    now = datetime.fromtimestamp(unix_time, UTC)
    assert totp.code_at(RFC_SECRET, totp.step_of(now), digits=8) == expected
    # The 6-digit code the portal accepts is the same truncation's last six digits.
    assert totp.code_at(RFC_SECRET, totp.step_of(now)) == expected[-6:]


def test_secret_is_160_bits_base32():
    secret = totp.generate_secret()
    assert len(base64.b32decode(secret)) == 20
    assert secret != totp.generate_secret()


@pytest.mark.parametrize("offset", [-30, 0, 30])
def test_window_accepts_one_step_either_side(offset):
    secret = totp.generate_secret()
    code = totp.code_at(secret, totp.step_of(NOW + timedelta(seconds=offset)))
    assert totp.matching_step(secret, code, NOW) == totp.step_of(NOW) + offset // 30


@pytest.mark.parametrize("offset", [-90, -60, 60, 90])
def test_window_refuses_codes_two_steps_away(offset):
    secret = totp.generate_secret()
    code = totp.code_at(secret, totp.step_of(NOW + timedelta(seconds=offset)))
    assert totp.matching_step(secret, code, NOW) is None


@pytest.mark.parametrize(
    "typed",
    ["１２３４５６", "123 456", "123-456", " 123456 ", "１２３ー４５６"],
)
def test_input_is_normalised(typed):
    assert codes.six_digits(typed) == "123456"


@pytest.mark.parametrize("typed", ["", None, "12345", "1234567", "12a456", "١٢٣٤٥٦x", "12345６7"])
def test_anything_but_six_digits_is_wrong(typed):
    assert codes.six_digits(typed) is None


def test_key_uri_format():
    uri = totp.provisioning_uri("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "alice", "Member Portal")
    assert uri.startswith("otpauth://totp/Member%20Portal:alice?")
    assert "+" not in uri
    query = parse_qs(urlsplit(uri).query)
    assert query["secret"] == ["JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"]
    assert query["issuer"] == ["Member Portal"]
    assert "=" not in query["secret"][0]


def test_qr_is_inline_svg_without_script():
    svg = totp.qr_svg(totp.provisioning_uri(totp.generate_secret(), "a", "b"), "QR")
    assert svg.startswith("<svg") and "<script" not in svg and "<title>QR</title>" in svg


SESSION = "session-of-the-owner"
THIEF = "session-of-a-thief"


def enrol(member_id, now=NOW, session=SESSION):
    """A pending set-up shown to ``session``: (member, secret)."""
    m = get_member(member_id)
    return m, totp.begin_enrolment(m, now, session)


def test_enrolment_secret_is_stored_encrypted_and_reused_by_its_session(ctx, member):
    m, secret = enrol(member)
    row = db.session.scalar(db.select(TotpEnrolment))
    assert secret.encode() not in row.secret_encrypted
    assert SESSION not in row.session_hash  # only a keyed hash of the session id
    assert totp.begin_enrolment(m, NOW + timedelta(minutes=5), SESSION) == secret
    # An old pending secret is replaced rather than revived.
    assert totp.begin_enrolment(m, NOW + timedelta(hours=2), SESSION) != secret


def test_enrolment_confirmed_by_one_valid_code(ctx, member):
    m, secret = enrol(member)
    assert twofactor.enable_app(m, "000000", NOW, SESSION, replace=False) == (
        Enrolment.WRONG_CODE,
        [],
    )
    assert not twofactor.has_two_factor(m)
    code = totp.code_at(secret, totp.step_of(NOW))
    status, new_codes = twofactor.enable_app(m, code, NOW, SESSION, replace=False)
    assert status is Enrolment.OK and len(new_codes) == 10
    assert twofactor.has_two_factor(m)
    assert db.session.scalar(db.select(TotpEnrolment)) is None
    cred = db.session.scalar(db.select(TotpCredential))
    assert secret.encode() not in cred.secret_encrypted


def test_expired_enrolment_is_refused(ctx, member):
    m, secret = enrol(member)
    later = NOW + timedelta(hours=1)
    code = totp.code_at(secret, totp.step_of(later))
    assert twofactor.enable_app(m, code, later, SESSION, replace=False)[0] is Enrolment.GONE
    assert not twofactor.has_two_factor(m)


def test_another_session_cannot_confirm_or_see_the_pending_secret(ctx, member):
    """The attack: a thief with the password opens the set-up and sees secret A; the
    owner, in another browser, must not be shown A (or the thief could sign in with it
    after the owner enrols), and the thief must not be able to confirm the owner's."""
    m, thief_secret = enrol(member, session=THIEF)
    owner_secret = totp.begin_enrolment(m, NOW + timedelta(minutes=1), SESSION)
    assert owner_secret != thief_secret
    # The thief's secret is void: even a right code for it is refused.
    code = totp.code_at(thief_secret, totp.step_of(NOW))
    assert twofactor.enable_app(m, code, NOW, THIEF, replace=False)[0] is Enrolment.GONE
    # The thief cannot confirm the owner's secret from his session either.
    code = totp.code_at(owner_secret, totp.step_of(NOW))
    for other in (THIEF, "", "x" * 32):
        assert twofactor.enable_app(m, code, NOW, other, replace=False)[0] is Enrolment.GONE
    assert not twofactor.has_two_factor(m)
    assert twofactor.enable_app(m, code, NOW, SESSION, replace=False)[0] is Enrolment.OK
    # The thief reopening the set-up now gets neither secret.
    assert totp.begin_enrolment(m, NOW, THIEF) not in (thief_secret, owner_secret)


def test_code_accepted_once(ctx, member_with_totp):
    member_id, totp_obj, _ = member_with_totp
    m = get_member(member_id)
    code = totp_obj.at(NOW)
    assert twofactor.verify_code(m, code, NOW).ok
    # The same code again, even a few seconds later inside the window: replay.
    assert not twofactor.verify_code(m, code, NOW + timedelta(seconds=5)).ok
    # An older step's code after a newer one was used: also refused.
    assert not twofactor.verify_code(m, totp_obj.at(NOW - timedelta(seconds=30)), NOW).ok
    assert twofactor.verify_code(m, totp_obj.at(NOW + timedelta(seconds=30)), NOW).ok


def test_two_racing_requests_with_one_code(app, member_with_totp):
    member_id, totp_obj, _ = member_with_totp
    code = totp_obj.at(NOW)
    results = []
    barrier = threading.Barrier(8)

    def attempt():
        with app.app_context():
            m = get_member(member_id)
            barrier.wait()
            results.append(totp.accept(m, code, NOW))

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == [False] * 7 + [True]


def test_replace_swaps_secret_only_when_new_code_proven(ctx, member_with_totp):
    member_id, old, _ = member_with_totp
    m = get_member(member_id)
    new_secret = totp.begin_enrolment(m, NOW, SESSION)
    assert new_secret != old.secret
    assert twofactor.enable_app(m, "123456", NOW, SESSION, replace=True)[0] is Enrolment.WRONG_CODE
    # Old phone still works while the new one is unproven.
    assert twofactor.verify_code(m, old.at(NOW - timedelta(seconds=30)), NOW).ok
    new_code = pyotp.TOTP(new_secret).at(NOW)
    assert twofactor.enable_app(m, new_code, NOW, SESSION, replace=True) == (Enrolment.OK, [])
    later = NOW + timedelta(seconds=30)
    assert not twofactor.verify_code(m, old.at(later), later).ok
    assert twofactor.verify_code(m, pyotp.TOTP(new_secret).at(later), later).ok


def test_replacement_secret_is_bound_to_its_session_too(ctx, member_with_totp):
    member_id, old, _ = member_with_totp
    m = get_member(member_id)
    seen_by_thief = totp.begin_enrolment(m, NOW, THIEF)
    owners = totp.begin_enrolment(m, NOW, SESSION)
    assert owners != seen_by_thief
    code = pyotp.TOTP(seen_by_thief).at(NOW)
    assert twofactor.enable_app(m, code, NOW, THIEF, replace=True)[0] is Enrolment.GONE
    code = pyotp.TOTP(owners).at(NOW)
    assert twofactor.enable_app(m, code, NOW, THIEF, replace=True)[0] is Enrolment.GONE
    assert twofactor.enable_app(m, code, NOW, SESSION, replace=True)[0] is Enrolment.OK


def test_setup_refused_when_already_set_up(ctx, member_with_totp):
    member_id, _, _ = member_with_totp
    m = get_member(member_id)
    secret = totp.begin_enrolment(m, NOW, SESSION)
    code = pyotp.TOTP(secret).at(NOW)
    assert twofactor.enable_app(m, code, NOW, SESSION, replace=False)[0] is Enrolment.GONE


def test_disabling_last_method_voids_recovery_codes(ctx, member_with_totp):
    member_id, _, recovery_codes = member_with_totp
    m = get_member(member_id)
    twofactor.disable_method(m, "app")
    assert not twofactor.has_two_factor(m)
    assert twofactor.recovery.remaining(m) == 0
    assert not twofactor.verify_recovery_code(m, recovery_codes[0], NOW).ok
