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
    assert svg.startswith('<svg role="img" ') and "<script" not in svg
    assert svg.count("<svg") == 1 and "<title>QR</title>" in svg  # its name


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


# --- added for mutation testing (tests/MUTATION.md) ---------------------------------

FIXED_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def test_key_uri_drops_base32_padding():
    padded = base64.b32encode(b"1234567890123456").decode()
    assert padded.endswith("======")
    uri = totp.provisioning_uri(padded, "alice", "Member Portal")
    assert parse_qs(urlsplit(uri).query)["secret"] == [padded.rstrip("=")]


def test_qr_is_level_m_with_five_pixel_modules_and_a_quiet_zone():
    """41 modules (version 6: what this key URI needs at error level M, 15 % of the code
    may be unreadable) plus 2 modules of white on each side, 5 px each: 225 px."""
    svg = totp.qr_svg(totp.provisioning_uri(FIXED_SECRET, "alice", "Member Portal"), "QR")
    assert svg.startswith('<svg role="img" width="225" height="225" class="qr">')
    assert '<path fill="#fff" d="M0 0h45v45h-45z"/>' in svg  # white background
    assert 'stroke="#000"' in svg and 'transform="scale(5)"' in svg
    assert "M2 2.5h7" in svg  # the first finder pattern starts after the 2-module border


def test_secret_grouped_in_fours_for_typing():
    assert totp.grouped(FIXED_SECRET) == "JBSW Y3DP EHPK 3PXP JBSW Y3DP EHPK 3PXP"
    assert totp.grouped("ABCDEF") == "ABCD EF"


def test_enrolment_expires_at_its_exact_instant(app, ctx, member):
    m, secret = enrol(member)
    end = NOW + timedelta(seconds=app.config["PORTAL_ENROLMENT_SECONDS"])
    just_before = end - timedelta(microseconds=1)
    # The same session reopening the dialog just before the end sees the same secret…
    assert totp.begin_enrolment(m, just_before, SESSION) == secret
    code = totp.code_at(secret, totp.step_of(end))
    assert twofactor.enable_app(m, code, end, SESSION, replace=False)[0] is Enrolment.GONE
    # …and at the end a new one.
    assert totp.begin_enrolment(m, end, SESSION) != secret


def test_enrolment_confirmed_just_before_it_expires(app, ctx, member):
    m, secret = enrol(member)
    end = NOW + timedelta(seconds=app.config["PORTAL_ENROLMENT_SECONDS"])
    just_before = end - timedelta(microseconds=1)
    code = totp.code_at(secret, totp.step_of(just_before))
    assert twofactor.enable_app(m, code, just_before, SESSION, replace=False)[0] is Enrolment.OK


def test_no_pending_setup_or_no_session_id_confirms_nothing(ctx, member):
    m = get_member(member)
    assert twofactor.enable_app(m, "123456", NOW, SESSION, replace=False)[0] is Enrolment.GONE
    # A session without an id (the empty nonce) cannot confirm a set-up.
    secret = totp.begin_enrolment(m, NOW, "")
    code = totp.code_at(secret, totp.step_of(NOW))
    assert twofactor.enable_app(m, code, NOW, "", replace=False)[0] is Enrolment.GONE
    assert not twofactor.has_two_factor(m)


def test_a_replaced_apps_proving_code_cannot_be_replayed(ctx, member_with_totp):
    member_id, old, _ = member_with_totp
    m = get_member(member_id)
    new = pyotp.TOTP(totp.begin_enrolment(m, NOW, SESSION))
    assert twofactor.enable_app(m, new.at(NOW), NOW, SESSION, replace=True)[0] is Enrolment.OK
    assert not twofactor.verify_code(m, new.at(NOW), NOW).ok
    assert not twofactor.verify_code(m, new.at(NOW - timedelta(seconds=30)), NOW).ok
    cred = db.session.scalar(db.select(TotpCredential))
    assert cred.last_step == totp.step_of(NOW) and cred.created_at == NOW


def test_an_accepted_code_is_recorded(ctx, member_with_totp):
    member_id, totp_obj, _ = member_with_totp
    m = get_member(member_id)
    later = NOW + timedelta(seconds=40)
    assert totp.accept(m, totp_obj.at(NOW), later)
    cred = db.session.scalar(db.select(TotpCredential))
    assert cred.last_used_at == later and cred.last_step == totp.step_of(NOW)


def test_parallel_openings_by_one_session_show_one_secret(app, member, monkeypatch):
    """A double click: both requests find no pending set-up and make a secret; the one
    that stores second must show the first one's secret (a QR code already scanned stays
    valid), not replace it. Both are held after reading until both have read."""
    both_read = threading.Barrier(2, timeout=30)
    real = totp.generate_secret

    def held():
        both_read.wait()
        return real()

    monkeypatch.setattr(totp, "generate_secret", held)
    shown = []

    def open_dialog():
        with app.app_context():
            shown.append(totp.begin_enrolment(get_member(member), NOW, SESSION))

    threads = [threading.Thread(target=open_dialog) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(shown) == 2 and shown[0] == shown[1]
    with app.app_context():
        m = get_member(member)
        code = totp.code_at(shown[0], totp.step_of(NOW))
        assert twofactor.enable_app(m, code, NOW, SESSION, replace=False)[0] is Enrolment.OK


def test_parallel_confirmations_of_one_replacement_succeed_once(app, member_with_totp, monkeypatch):
    """Two tabs confirm the same new phone at once. Both are held after their checks,
    until both have passed them; only the one that takes the pending row wins."""
    member_id, _, _ = member_with_totp
    with app.app_context():
        secret = totp.begin_enrolment(get_member(member_id), NOW, SESSION)
    code = totp.code_at(secret, totp.step_of(NOW))
    both_checked = threading.Barrier(2, timeout=30)
    real = totp.credential

    def held(member):
        row = real(member)
        both_checked.wait()
        return row

    monkeypatch.setattr(totp, "credential", held)
    results = []

    def confirm():
        with app.app_context():
            m = get_member(member_id)
            results.append(totp.confirm_enrolment(m, code, NOW, SESSION, replace=True))

    threads = [threading.Thread(target=confirm) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(r.value for r in results) == ["gone", "ok"]


def test_rotation_reencrypts_credentials_and_pending_setups(app, ctx, member_with_totp):
    from cryptography.fernet import Fernet

    from portal.twofactor import crypto

    member_id, totp_obj, _ = member_with_totp
    m = get_member(member_id)
    pending = totp.begin_enrolment(m, NOW, SESSION)
    new_key = Fernet.generate_key()
    # The key the app used so far (derived from SECRET_KEY), kept second for reading.
    old_key = base64.urlsafe_b64encode(
        crypto.derive_key(app.config["SECRET_KEY"], crypto.ENCRYPTION_LABEL)
    )
    app.extensions["portal.secret_box"] = crypto.SecretBox([new_key, old_key])
    assert totp.rotate_secrets() == 2
    only_new = crypto.SecretBox([new_key])
    cred = db.session.scalar(db.select(TotpCredential))
    row = db.session.scalar(db.select(TotpEnrolment))
    assert only_new.decrypt(cred.secret_encrypted) == totp_obj.secret
    assert only_new.decrypt(row.secret_encrypted) == pending


ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
EXTENDED_ARABIC_INDIC = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")


@pytest.mark.parametrize("digits", [ARABIC_INDIC, EXTENDED_ARABIC_INDIC])
def test_the_right_code_in_arabic_indic_digits_is_refused(ctx, member_with_totp, digits):
    """Six digits, nothing else: refused only because they are not ASCII digits (NFKC
    keeps them as they are, unlike full-width digits)."""
    member_id, totp_obj, _ = member_with_totp
    m = get_member(member_id)
    code = totp_obj.at(NOW)
    assert codes.six_digits(code.translate(digits)) is None
    assert not twofactor.verify_code(m, code.translate(digits), NOW).ok
    assert twofactor.verify_code(m, code, NOW).ok


def test_normalise_keeps_letters_and_drops_separators():
    assert codes.normalise(None) == "" and codes.normalise("") == ""
    # Full-width letters, digits and spaces, a minus sign, a katakana long vowel mark.
    assert codes.normalise("ａｂ　１２\u2212３ー４\t5") == "ab12345"


def test_a_code_shown_again_in_a_later_step_is_that_steps_code(ctx, member, monkeypatch):
    """With FIXED_SECRET, steps 60013143 and 60013145 both show 951716. Typed during
    step 60013144 it matches both; the earliest is recorded as used, so when the phone
    shows 951716 again (step 60013145) it is a fresh code for that step."""
    monkeypatch.setattr(totp, "generate_secret", lambda: FIXED_SECRET)
    m = get_member(member)
    earlier = datetime(2020, 1, 1, tzinfo=UTC)
    secret = totp.begin_enrolment(m, earlier, SESSION)
    code = totp.code_at(secret, totp.step_of(earlier))
    assert twofactor.enable_app(m, code, earlier, SESSION, replace=False)[0] is Enrolment.OK
    assert totp.code_at(FIXED_SECRET, 60013143) == totp.code_at(FIXED_SECRET, 60013145)
    during = datetime.fromtimestamp(60013144 * 30 + 10, UTC)
    assert totp.matching_step(FIXED_SECRET, "951716", during) == 60013143
    assert twofactor.verify_code(m, "951716", during).ok
    assert db.session.scalar(db.select(TotpCredential)).last_step == 60013143
    assert not twofactor.verify_code(m, "951716", during).ok  # the same step again
    shown_again = datetime.fromtimestamp(60013145 * 30 + 40, UTC)  # window 60013145-7
    assert twofactor.verify_code(m, "951716", shown_again).ok


def test_replayed_is_true_only_for_a_used_step(ctx, member_with_totp):
    member_id, totp_obj, _ = member_with_totp
    m = get_member(member_id)
    now_code, next_code = totp_obj.at(NOW), totp_obj.at(NOW + timedelta(seconds=30))
    assert not totp.replayed(m, now_code, NOW)  # not used yet
    assert twofactor.verify_code(m, now_code, NOW).ok
    assert totp.replayed(m, now_code, NOW)
    assert totp.replayed(m, totp_obj.at(NOW - timedelta(seconds=30)), NOW)  # an older step
    assert not totp.replayed(m, next_code, NOW)
    assert not totp.replayed(m, "000000" if now_code != "000000" else "111111", NOW)
    result = twofactor.verify_code(m, now_code, NOW + timedelta(seconds=5))
    assert result.outcome is twofactor.Outcome.WRONG and result.replayed
    assert not twofactor.verify_code(m, "123", NOW).replayed


def test_a_member_without_an_app_has_no_replays(ctx, member):
    assert not totp.replayed(get_member(member), "123456", NOW)


def test_key_uri_keeps_a_secret_that_ends_in_x():
    """Base32 has an X; only the padding is dropped (1 secret in 32 ends in X)."""
    secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXX"
    uri = totp.provisioning_uri(secret, "alice", "Member Portal")
    assert parse_qs(urlsplit(uri).query)["secret"] == [secret]
