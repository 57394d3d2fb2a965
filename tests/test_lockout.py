"""Guessing is bounded: 10 consecutive wrong second steps lock for 15 minutes."""

from __future__ import annotations

from datetime import timedelta

from conftest import NOW, get_member

from portal import twofactor
from portal.twofactor import Outcome


def test_ten_wrong_attempts_lock_even_the_right_code(ctx, member_with_totp):
    member_id, totp_obj, codes = member_with_totp
    m = get_member(member_id)
    for _ in range(9):
        assert twofactor.verify_code(m, "000000", NOW).outcome is Outcome.WRONG
    tenth = twofactor.verify_code(m, "000000", NOW)
    assert tenth.outcome is Outcome.LOCKED
    assert tenth.locked_until == NOW + timedelta(minutes=15)
    assert twofactor.verify_code(m, totp_obj.at(NOW), NOW).outcome is Outcome.LOCKED
    assert twofactor.verify_recovery_code(m, codes[0], NOW).outcome is Outcome.LOCKED
    # The locked attempt did not spend the recovery code.
    assert twofactor.recovery.remaining(m) == 10
    later = NOW + timedelta(minutes=15, seconds=1)
    assert twofactor.verify_code(m, totp_obj.at(later), later).ok


def test_codes_and_recovery_codes_share_the_counter(ctx, member_with_totp):
    member_id, _, _ = member_with_totp
    m = get_member(member_id)
    for _ in range(5):
        twofactor.verify_code(m, "000000", NOW)
    for _ in range(4):
        twofactor.verify_recovery_code(m, "aaaaa-aaaaa", NOW)
    assert twofactor.verify_any(m, "111111", NOW).outcome is Outcome.LOCKED


def test_success_resets_the_count(ctx, member_with_totp):
    member_id, totp_obj, _ = member_with_totp
    m = get_member(member_id)
    for _ in range(9):
        twofactor.verify_code(m, "000000", NOW)
    assert twofactor.verify_code(m, totp_obj.at(NOW), NOW).ok
    for _ in range(9):
        assert twofactor.verify_code(m, "000000", NOW).outcome is Outcome.WRONG


def test_lock_survives_a_new_session(app, member_with_totp):
    """Stored on the member, so another app instance (a new sign-in) sees it."""
    member_id, totp_obj, _ = member_with_totp
    with app.app_context():
        m = get_member(member_id)
        for _ in range(10):
            twofactor.verify_code(m, "000000", NOW)
    with app.app_context():
        m = get_member(member_id)
        assert twofactor.verify_code(m, totp_obj.at(NOW), NOW).outcome is Outcome.LOCKED


def test_parallel_guesses_cannot_exceed_the_limit(app, member_with_totp, monkeypatch):
    """Each attempt is counted before its code is checked, so 30 racing guesses get at
    most 10 code checks before the lock."""
    import threading

    from portal.twofactor import totp

    member_id, _, _ = member_with_totp
    checked = []
    real_accept = totp.accept

    def counting_accept(member, code, now):
        checked.append(code)
        return real_accept(member, code, now)

    monkeypatch.setattr(totp, "accept", counting_accept)
    barrier = threading.Barrier(30)
    outcomes = []

    def guess(i):
        barrier.wait(timeout=30)
        with app.app_context():
            m = get_member(member_id)
            outcomes.append(twofactor.verify_code(m, f"{i:06d}", NOW).outcome)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(outcomes) == 30
    assert len(checked) <= 10
    assert outcomes.count(Outcome.LOCKED) >= 20
    with app.app_context():
        m = get_member(member_id)
        assert twofactor.lockout.locked_until(m, NOW) is not None
