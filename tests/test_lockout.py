"""Guessing is bounded: 10 consecutive wrong codes lock for 15 minutes, each further
lock 4 times longer (capped at a day), recovery codes count on their own, and 100
consecutive failures lock the second step until an operator clears it."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from conftest import NOW, get_member

from portal import twofactor
from portal.twofactor import Outcome, lockout

MINUTE = timedelta(minutes=1)


def wrong_codes(m, count, now=NOW):
    return [twofactor.verify_code(m, "000000", now) for _ in range(count)]


def wrong_recovery(m, count, now=NOW):
    return [twofactor.verify_recovery_code(m, "aaaaa-aaaaa", now) for _ in range(count)]


def test_ten_wrong_codes_lock_the_codes_even_the_right_one(ctx, member_with_totp):
    member_id, totp_obj, _ = member_with_totp
    m = get_member(member_id)
    assert [r.outcome for r in wrong_codes(m, 9)] == [Outcome.WRONG] * 9
    tenth = twofactor.verify_code(m, "000000", NOW)
    assert tenth.outcome is Outcome.LOCKED
    assert tenth.locked_until == NOW + 15 * MINUTE
    assert tenth.lock.new and tenth.lock.first and not tenth.lock.permanent
    refused = twofactor.verify_code(m, totp_obj.at(NOW), NOW)
    assert refused.outcome is Outcome.LOCKED and not refused.lock.new
    later = NOW + 15 * MINUTE + timedelta(seconds=1)
    assert twofactor.verify_code(m, totp_obj.at(later), later).ok


def test_the_lock_ends_at_its_exact_instant(ctx, member_with_totp):
    member_id, totp_obj, _ = member_with_totp
    m = get_member(member_id)
    wrong_codes(m, 10)
    end = NOW + 15 * MINUTE
    just_before = end - timedelta(microseconds=1)
    assert lockout.current_lock(m, just_before).until == end
    assert twofactor.verify_code(m, totp_obj.at(just_before), just_before).outcome is (
        Outcome.LOCKED
    )
    assert lockout.current_lock(m, end) is None
    assert twofactor.verify_code(m, totp_obj.at(end), end).ok


def test_recovery_codes_stay_usable_during_a_temporary_lock(ctx, member_with_totp):
    """A password holder who locks the codes cannot keep the owner out: recovery codes
    (50 bits each, not guessable) count on their own."""
    member_id, totp_obj, codes = member_with_totp
    m = get_member(member_id)
    wrong_codes(m, 10)
    assert twofactor.verify_code(m, totp_obj.at(NOW), NOW).outcome is Outcome.LOCKED
    assert twofactor.verify_recovery_code(m, codes[0], NOW).ok
    # The owner's success lifts the codes' lock and starts every count again.
    assert lockout.current_lock(m, NOW) is None
    assert twofactor.verify_code(m, totp_obj.at(NOW), NOW).ok


def test_recovery_failures_lock_only_recovery_codes(ctx, member_with_totp):
    member_id, totp_obj, codes = member_with_totp
    m = get_member(member_id)
    results = wrong_recovery(m, 10)
    assert results[-1].outcome is Outcome.LOCKED
    assert results[-1].locked_until == NOW + 15 * MINUTE
    assert twofactor.verify_recovery_code(m, codes[0], NOW).outcome is Outcome.LOCKED
    assert twofactor.recovery.remaining(m) == 10  # the refused attempt spent nothing
    assert twofactor.verify_code(m, totp_obj.at(NOW), NOW).ok


def test_reauthentication_with_a_recovery_code_counts_as_recovery(ctx, member_with_totp):
    member_id, totp_obj, codes = member_with_totp
    m = get_member(member_id)
    for _ in range(10):
        twofactor.verify_any(m, "zzzzz-zzzzz", NOW)
    assert twofactor.verify_any(m, codes[1], NOW).outcome is Outcome.LOCKED
    assert twofactor.verify_any(m, totp_obj.at(NOW), NOW).ok


def test_each_further_lock_lasts_four_times_longer_up_to_a_day(ctx, member_with_totp):
    member_id, _, _ = member_with_totp
    m = get_member(member_id)
    now = NOW
    seen = []
    for _ in range(6):
        lock = wrong_codes(m, 10, now)[-1].lock
        seen.append(lock.until - now)
        now = lock.until
    assert seen == [
        15 * MINUTE,
        timedelta(hours=1),
        timedelta(hours=4),
        timedelta(hours=16),
        timedelta(hours=24),
        timedelta(hours=24),
    ]


def test_only_the_first_lock_since_a_success_is_flagged_first(ctx, member_with_totp):
    member_id, totp_obj, _ = member_with_totp
    m = get_member(member_id)
    first = wrong_codes(m, 10)[-1].lock
    second = wrong_codes(m, 10, first.until)[-1].lock
    assert first.first and not second.first
    after = second.until
    assert twofactor.verify_code(m, totp_obj.at(after), after).ok
    again = wrong_codes(m, 10, after)[-1].lock
    assert again.first and again.until - after == 15 * MINUTE  # growth starts again


def test_success_resets_the_count(ctx, member_with_totp):
    member_id, totp_obj, _ = member_with_totp
    m = get_member(member_id)
    wrong_codes(m, 9)
    assert twofactor.verify_code(m, totp_obj.at(NOW), NOW).ok
    assert [r.outcome for r in wrong_codes(m, 9)] == [Outcome.WRONG] * 9


def fail_until_blocked(m, attempt):
    """Keep failing, waiting out each temporary lock, until locked for good."""
    now = NOW
    for _ in range(200):
        result = attempt(m, now)
        if result.outcome is Outcome.LOCKED:
            if result.lock.permanent:
                return result
            now = result.locked_until
    raise AssertionError("never locked for good")


@pytest.mark.parametrize(
    "attempt",
    [
        lambda m, now: twofactor.verify_code(m, "000000", now),
        lambda m, now: twofactor.verify_recovery_code(m, "aaaaa-aaaaa", now),
    ],
    ids=["codes", "recovery codes"],
)
def test_a_hundred_consecutive_failures_lock_until_an_operator_clears_it(
    ctx, member_with_totp, attempt
):
    member_id, totp_obj, codes = member_with_totp
    m = get_member(member_id)
    result = fail_until_blocked(m, attempt)
    assert result.lock.permanent and result.lock.new
    assert m.tfa_streak == 100
    much_later = NOW + timedelta(days=365)
    for call in (
        lambda: twofactor.verify_code(m, totp_obj.at(much_later), much_later),
        lambda: twofactor.verify_recovery_code(m, codes[0], much_later),
        lambda: twofactor.verify_any(m, totp_obj.at(much_later), much_later),
    ):
        refused = call()
        assert refused.outcome is Outcome.LOCKED and refused.lock.permanent
    assert twofactor.recovery.remaining(m) == 10
    lockout.clear(m)
    assert twofactor.verify_code(m, totp_obj.at(much_later), much_later).ok


def test_the_permanent_lock_is_the_streak_of_both_counters(ctx, member_with_totp):
    member_id, _, _ = member_with_totp
    m = get_member(member_id)
    now = NOW
    for i in range(100):
        call = twofactor.verify_code if i % 2 else twofactor.verify_recovery_code
        result = call(m, "000000" if i % 2 else "aaaaa-aaaaa", now)
        if result.outcome is Outcome.LOCKED and not result.lock.permanent:
            now = result.locked_until
    assert lockout.current_lock(m, now + timedelta(days=2)).permanent


def test_a_success_before_the_hundredth_failure_starts_the_streak_again(ctx, member_with_totp):
    member_id, totp_obj, _ = member_with_totp
    m = get_member(member_id)
    now = NOW
    for _ in range(9):
        now = wrong_codes(m, 10, now)[-1].locked_until
    assert m.tfa_streak == 90
    assert twofactor.verify_code(m, totp_obj.at(now), now).ok
    assert m.tfa_streak == 0
    lock = wrong_codes(m, 10, now)[-1].lock
    assert not lock.permanent and lock.until - now == 15 * MINUTE


def test_lock_survives_a_new_session(app, member_with_totp):
    """Stored on the member, so another app instance (a new sign-in) sees it."""
    member_id, totp_obj, _ = member_with_totp
    with app.app_context():
        wrong_codes(get_member(member_id), 10)
    with app.app_context():
        m = get_member(member_id)
        assert twofactor.verify_code(m, totp_obj.at(NOW), NOW).outcome is Outcome.LOCKED


def test_locks_are_per_member(ctx, member_with_totp):
    from conftest import enrol_app

    from portal import members

    member_id, _, _ = member_with_totp
    bob = members.create("bob", email="bob@example.com", password="another password 1")
    bob_app = enrol_app(bob)
    wrong_codes(get_member(member_id), 10)
    assert twofactor.verify_code(bob, bob_app.at(NOW), NOW).ok
    assert bob.tfa_failures == 0 and bob.tfa_streak == 0


def test_parallel_guesses_cannot_exceed_the_limit(app, member_with_totp, monkeypatch):
    """Each attempt is counted before its code is checked. The checks that got through
    are held in flight together (a barrier of exactly the limit), so every other racing
    guess arrives while the counter is full: exactly 10 checks, deterministically."""
    from portal.twofactor import totp

    member_id, _, _ = member_with_totp
    limit = app.config["PORTAL_TFA_MAX_FAILURES"]
    in_flight = threading.Barrier(limit, timeout=30)
    checked = []
    real_accept = totp.accept

    def held_accept(member, code, now, **options):
        checked.append(code)
        in_flight.wait()  # released only when `limit` checks are in flight at once
        return real_accept(member, code, now, **options)

    monkeypatch.setattr(totp, "accept", held_accept)
    start = threading.Barrier(30, timeout=30)
    outcomes = []

    def guess(i):
        start.wait()
        with app.app_context():
            m = get_member(member_id)
            outcomes.append(twofactor.verify_code(m, f"{i:06d}", NOW).outcome)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(outcomes) == 30
    assert len(checked) == limit
    # The refused ones (and the check that completes the count, unless a refused one
    # locked first) see the lock; nobody sees more than `limit` wrong answers.
    assert outcomes.count(Outcome.WRONG) <= limit
    assert outcomes.count(Outcome.LOCKED) >= 30 - limit
    with app.app_context():
        assert lockout.current_lock(get_member(member_id), NOW) is not None


# --- added for mutation testing (tests/MUTATION.md) ---------------------------------


def test_blocked_and_is_locked_report_every_kind_of_lock(ctx, member_with_totp):
    member_id, totp_obj, _ = member_with_totp
    m = get_member(member_id)
    assert not lockout.blocked(m) and not lockout.is_locked(m, NOW)
    wrong_recovery(m, 10)
    end = NOW + 15 * MINUTE
    assert lockout.is_locked(m, NOW) and lockout.is_locked(m, end - timedelta(microseconds=1))
    assert not lockout.is_locked(m, end) and not lockout.blocked(m)
    wrong_codes(m, 10, end)
    assert lockout.is_locked(m, end) and not lockout.is_locked(m, end + 15 * MINUTE)
    # 99 failures in a row so far (the temporary locks waited out): the next one blocks.
    from portal.extensions import db
    from portal.models import Member

    db.session.execute(db.update(Member).where(Member.id == member_id).values(tfa_streak=99))
    db.session.commit()
    assert wrong_codes(m, 1, end + 15 * MINUTE)[0].lock.permanent
    assert lockout.blocked(m) and lockout.is_locked(m, NOW + timedelta(days=400))
    lockout.clear(m)
    assert not lockout.blocked(m) and not lockout.is_locked(m, NOW)


def test_a_recovery_lock_ends_at_its_exact_instant(ctx, member_with_totp):
    member_id, _, codes = member_with_totp
    m = get_member(member_id)
    wrong_recovery(m, 10)
    end = NOW + 15 * MINUTE
    assert lockout.current_lock(m, end - timedelta(microseconds=1), lockout.RECOVERY) == (
        lockout.Lock(end)
    )
    assert lockout.current_lock(m, end, lockout.RECOVERY) is None
    assert lockout.current_lock(m, end) is None  # the codes were never locked
    assert twofactor.verify_recovery_code(m, codes[0], end).ok


def test_a_success_records_when_the_member_last_proved_themselves(ctx, member_with_totp):
    member_id, totp_obj, _ = member_with_totp
    m = get_member(member_id)
    wrong_codes(m, 3)
    later = NOW + 5 * MINUTE
    assert twofactor.verify_code(m, totp_obj.at(later), later).ok
    assert m.last_second_step_at == later
    assert (m.tfa_failures, m.tfa_streak) == (0, 0)


def test_a_full_counter_without_a_lock_locks_at_the_next_attempt(ctx, member_with_totp):
    """A crash between counting an attempt and judging it can leave the counter full
    with no lock: the next attempt must lock (with an end), not lock out for ever."""
    from portal.extensions import db
    from portal.models import Member

    member_id, totp_obj, _ = member_with_totp
    db.session.execute(db.update(Member).where(Member.id == member_id).values(tfa_failures=10))
    db.session.commit()
    m = get_member(member_id)
    result = twofactor.verify_code(m, totp_obj.at(NOW), NOW)
    assert result.outcome is Outcome.LOCKED and result.locked_until == NOW + 15 * MINUTE
    assert result.lock.new and result.lock.first
    later = NOW + 15 * MINUTE
    assert twofactor.verify_code(m, totp_obj.at(later), later).ok


def test_lock_lengths_follow_the_settings(app, ctx, member_with_totp):
    app.config.update(PORTAL_TFA_LOCK_SECONDS=60, PORTAL_TFA_LOCK_MAX_SECONDS=600)
    assert [lockout.lock_duration(n) for n in range(4)] == [
        timedelta(minutes=1),
        timedelta(minutes=4),
        timedelta(minutes=10),
        timedelta(minutes=10),
    ]
    assert lockout.lock_duration(1000) == timedelta(minutes=10)


def test_a_member_blocked_for_good_is_not_unblocked_by_a_success(ctx, member_with_totp):
    """Setting up another method calls the success bookkeeping; the block stays."""
    from portal.extensions import db
    from portal.models import Member

    member_id, _, _ = member_with_totp
    db.session.execute(
        db.update(Member).where(Member.id == member_id).values(tfa_blocked_at=NOW, tfa_streak=100)
    )
    db.session.commit()
    m = get_member(member_id)
    before = m.last_second_step_at
    lockout.record_success(m, NOW + MINUTE)
    assert lockout.blocked(m) and m.tfa_streak == 100 and m.last_second_step_at == before


def test_two_failures_reaching_the_permanent_lock_together_report_it_once(
    app, member_with_totp, monkeypatch
):
    """At 98 failures in a row, two wrong codes arrive at once; both are counted (99,
    100) and held in their checks until both are in. The lock for good happens once:
    one attempt reports it as new (the member is mailed once), the other does not."""
    from portal.extensions import db
    from portal.models import Member
    from portal.twofactor import totp

    member_id, _, _ = member_with_totp
    with app.app_context():
        db.session.execute(db.update(Member).where(Member.id == member_id).values(tfa_streak=98))
        db.session.commit()
    both_in = threading.Barrier(2, timeout=30)
    real_accept = totp.accept

    def held_accept(member, code, now, **options):
        both_in.wait()
        return real_accept(member, code, now, **options)

    monkeypatch.setattr(totp, "accept", held_accept)
    results = []

    def guess():
        with app.app_context():
            results.append(twofactor.verify_code(get_member(member_id), "000000", NOW))

    threads = [threading.Thread(target=guess) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 2
    assert [r.lock is not None and r.lock.new for r in results].count(True) == 1
    with app.app_context():
        assert get_member(member_id).tfa_blocked_at == NOW


def test_a_full_recovery_counter_without_a_lock_locks_recovery_codes_only(ctx, member_with_totp):
    """As above for recovery codes: the lock has an end, after which they work again."""
    from portal.extensions import db
    from portal.models import Member

    member_id, totp_obj, codes = member_with_totp
    db.session.execute(db.update(Member).where(Member.id == member_id).values(recovery_failures=10))
    db.session.commit()
    m = get_member(member_id)
    result = twofactor.verify_recovery_code(m, codes[0], NOW)
    assert result.outcome is Outcome.LOCKED and result.locked_until == NOW + 15 * MINUTE
    assert lockout.current_lock(m, NOW) is None  # app codes are not locked
    later = NOW + 15 * MINUTE
    assert twofactor.verify_recovery_code(m, codes[0], later).ok


def test_a_full_streak_without_a_block_blocks_at_the_next_attempt(ctx, member_with_totp):
    """The hundredth failure in a row was counted but not judged (a crash): the next
    attempt, even with the right code, is refused and the block is made."""
    from portal.extensions import db
    from portal.models import Member

    member_id, totp_obj, _ = member_with_totp
    db.session.execute(db.update(Member).where(Member.id == member_id).values(tfa_streak=100))
    db.session.commit()
    m = get_member(member_id)
    result = twofactor.verify_code(m, totp_obj.at(NOW), NOW)
    assert result.outcome is Outcome.LOCKED and result.lock.permanent and result.lock.new
    assert lockout.blocked(m)


def test_each_counter_reports_its_own_lock(ctx, member_with_totp):
    """Codes locked until 12:15, recovery codes until 12:20: each refusal names its own
    end."""
    member_id, _, codes = member_with_totp
    m = get_member(member_id)
    wrong_codes(m, 10)
    wrong_recovery(m, 10, NOW + 5 * MINUTE)
    later = NOW + 6 * MINUTE
    assert twofactor.verify_code(m, "000000", later).locked_until == NOW + 15 * MINUTE
    assert twofactor.verify_recovery_code(m, codes[0], later).locked_until == NOW + 20 * MINUTE
    assert twofactor.verify_any(m, codes[0], later).locked_until == NOW + 20 * MINUTE


@pytest.mark.parametrize("in_flight_guess_right", [False, True], ids=["wrong", "right"])
def test_an_attempt_refused_while_the_count_is_full_reports_a_real_wait(
    app, member_with_totp, monkeypatch, in_flight_guess_right
):
    """Recovery codes, one lock already behind (the next lasts an hour), 9 failures.
    B's attempt is counted (10: full) and held in its check; A's attempt arrives and is
    refused. Then B is judged:

    - wrong: B's failure locks for an hour; A must report that lock, not make one up;
    - right: B's success clears the count; nothing is locked, and A is told to wait the
      first lock's length (15 minutes), never "for good" or a time in the past.
    """
    from portal.extensions import db
    from portal.models import Member
    from portal.twofactor import recovery

    member_id, _, codes = member_with_totp
    with app.app_context():
        db.session.execute(
            db.update(Member)
            .where(Member.id == member_id)
            .values(recovery_failures=9, recovery_locks=1, tfa_streak=9)
        )
        db.session.commit()
    b_in_check, a_refused, b_done = threading.Event(), threading.Event(), threading.Event()
    real_use, real_record_failure = recovery.use, lockout.record_failure

    def held_use(member, raw, now):
        b_in_check.set()
        assert a_refused.wait(30)
        return real_use(member, raw, now)

    def record_failure(member, now, counter=lockout.CODE):
        if threading.current_thread().name == "A":
            a_refused.set()
            assert b_done.wait(30)
        return real_record_failure(member, now, counter)

    monkeypatch.setattr(recovery, "use", held_use)
    monkeypatch.setattr(lockout, "record_failure", record_failure)
    results = {}

    def attempt(name, typed):
        with app.app_context():
            if name == "A":
                assert b_in_check.wait(30)
            results[name] = twofactor.verify_recovery_code(get_member(member_id), typed, NOW)
            if name == "B":
                b_done.set()

    b_typed = codes[0] if in_flight_guess_right else "aaaaa-aaaaa"
    threads = [
        threading.Thread(target=attempt, args=("B", b_typed), name="B"),
        threading.Thread(target=attempt, args=("A", "zzzzz-zzzzz"), name="A"),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    a, b = results["A"], results["B"]
    assert a.outcome is Outcome.LOCKED and not a.lock.new
    if in_flight_guess_right:
        assert b.ok
        assert a.locked_until == NOW + 15 * MINUTE
        with app.app_context():
            assert lockout.current_lock(get_member(member_id), NOW, lockout.RECOVERY) is None
    else:
        assert b.outcome is Outcome.LOCKED and b.lock.new
        assert b.locked_until == a.locked_until == NOW + timedelta(hours=1)
