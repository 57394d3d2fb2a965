"""Recovery codes: format, keyed hashing, single use, regeneration."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest
from conftest import NOW, get_member

from portal import twofactor
from portal.extensions import db
from portal.models import RecoveryCode
from portal.twofactor import recovery


def test_ten_codes_in_the_documented_format(ctx, member_with_totp):
    _, _, codes = member_with_totp
    assert len(codes) == 10 == len(set(codes))
    assert all(re.fullmatch(r"[a-z0-9]{5}-[a-z0-9]{5}", code) for code in codes)


def test_stored_only_as_keyed_hashes(app, ctx, member_with_totp):
    _, _, codes = member_with_totp
    stored = {row.code_hash for row in db.session.scalars(db.select(RecoveryCode))}
    assert len(stored) == 10
    for code in codes:
        plain = code.replace("-", "")
        assert plain not in stored and code not in stored
        assert hashlib.sha256(plain.encode()).hexdigest() not in stored  # keyed, not bare
    assert recovery.canonical(codes[0]) is not None
    # A different HMAC key gives different hashes: a leaked table is useless alone.
    other = hmac.new(b"other key", codes[0].replace("-", "").encode(), hashlib.sha256)
    assert other.hexdigest() not in stored


def test_accepted_case_insensitively_with_or_without_hyphen(ctx, member_with_totp):
    member_id, _, codes = member_with_totp
    m = get_member(member_id)
    assert recovery.use(m, codes[0].upper(), NOW)
    assert recovery.use(m, codes[1].replace("-", ""), NOW)
    assert recovery.use(m, "  " + codes[2].replace("-", " ") + " ", NOW)
    assert recovery.remaining(m) == 7


def test_single_use(ctx, member_with_totp):
    member_id, _, codes = member_with_totp
    m = get_member(member_id)
    assert recovery.use(m, codes[0], NOW)
    assert not recovery.use(m, codes[0], NOW)
    assert not twofactor.verify_recovery_code(m, codes[0], NOW).ok


def test_another_members_code_is_refused(ctx, member_with_totp):
    from portal import members

    _, _, codes = member_with_totp
    bob = members.create("bob", email="bob@example.com", password="another password 1")
    assert not recovery.use(bob, codes[0], NOW)


def test_garbage_is_refused_without_error(ctx, member_with_totp):
    member_id, _, _ = member_with_totp
    m = get_member(member_id)
    for typed in ["", None, "x" * 5000, "abcde-fghij-k", "'; drop table member; --", "ａｂｃ"]:
        assert not recovery.use(m, typed, NOW)


def test_regenerating_voids_the_old_set(ctx, member_with_totp):
    member_id, _, old = member_with_totp
    m = get_member(member_id)
    new = recovery.issue(m, NOW)
    assert not set(old) & set(new)
    assert not recovery.use(m, old[0], NOW)
    assert recovery.use(m, new[0], NOW)
    assert recovery.remaining(m) == 9


# --- added for mutation testing (tests/MUTATION.md) ---------------------------------

LOOK_ALIKES = set("l1o0")


def test_codes_are_drawn_from_32_symbols_without_look_alikes(monkeypatch):
    """Every character comes from ``secrets.choice`` over lowercase letters and digits
    without l/1 and o/0: 32 symbols, 10 of them per code, so 50 bits."""
    asked = []
    real_choice = recovery.secrets.choice

    def spy(alphabet):
        asked.append(alphabet)
        return real_choice(alphabet)

    monkeypatch.setattr(recovery.secrets, "choice", spy)
    code = recovery.generate()
    assert len(asked) == 10
    alphabet = set(asked[0])
    assert all(set(a) == alphabet for a in asked) and len(asked[0]) == 32 == len(alphabet)
    assert alphabet == set("abcdefghijklmnopqrstuvwxyz0123456789") - LOOK_ALIKES
    assert re.fullmatch(r"[a-z2-9]{5}-[a-z2-9]{5}", code)


def test_codes_use_the_whole_alphabet():
    seen = set()
    for _ in range(300):  # 3000 draws: missing one of 32 symbols has odds below 1e-40
        seen |= set(recovery.generate().replace("-", ""))
    assert seen == set("abcdefghijklmnopqrstuvwxyz0123456789") - LOOK_ALIKES


def test_the_hyphen_splits_a_code_in_two_halves_of_five(monkeypatch):
    letters = iter("abcdefghij")
    monkeypatch.setattr(recovery.secrets, "choice", lambda alphabet: next(letters))
    assert recovery.generate() == "abcde-fghij"


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("abcde-fghij", "abcdefghij"),
        ("ABCDE FGHIJ", "abcdefghij"),
        ("ａｂｃｄｅ－ｆｇｈｉｊ", "abcdefghij"),  # full width from a Japanese IME
        ("abcdefghij", "abcdefghij"),
        ("abcde-fghijk", None),  # 11 symbols
        ("abcd-efghi", None),  # 9
        ("abcde-fghil", None),  # l is not in the alphabet
        ("abcde-fghi1", None),
        ("abcde-fghio", None),
        ("abcde-fghi0", None),
        ("", None),
        (None, None),
    ],
)
def test_canonical_form(typed, expected):
    assert recovery.canonical(typed) == expected


def test_codes_are_stored_with_their_issue_time_and_spent_at_use(ctx, member_with_totp):
    member_id, _, codes = member_with_totp
    m = get_member(member_id)
    later = NOW.replace(year=2027)
    fresh_codes = recovery.issue(m, NOW)
    assert {row.created_at for row in db.session.scalars(db.select(RecoveryCode))} == {NOW}
    assert recovery.use(m, fresh_codes[3], later)
    used = db.session.scalars(db.select(RecoveryCode).where(RecoveryCode.used_at.is_not(None)))
    assert [row.used_at for row in used] == [later]
