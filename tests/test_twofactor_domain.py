"""The two-step verification domain (portal.twofactor) as a member, an attacker holding
the password, and an operator meet it: methods and their order, sign-in and
re-authentication with every method, turning methods on and off, the operator's reset.

Every call gets an explicit ``now``; what is asserted is what a member or attacker sees
(the result) or what is stored (the rows that decide the next attempt)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pyotp
import pytest
from conftest import NOW, PHONE, get_member
from twofactor_helpers import enable_contact, fresh, install_inbox, make_member, signin_code

from portal import twofactor
from portal.extensions import db
from portal.models import (
    ContactMethod,
    Member,
    OneTimeCode,
    RecoveryCode,
    TotpCredential,
    TotpEnrolment,
)
from portal.twofactor import (
    Enrolment,
    Lock,
    Outcome,
    Refusal,
    Result,
    SendRefused,
    Status,
    lockout,
    otp_codes,
    recovery,
    totp,
)

MINUTE = timedelta(minutes=1)
EMAIL = "alice@example.com"
SESSION = "settings-session"


@pytest.fixture
def inbox(monkeypatch):
    return install_inbox(monkeypatch)


@pytest.fixture
def alice(ctx, member):
    return get_member(member)


def enrol_app_at(m, now, nonce=SESSION, replace=False):
    """Set up (or replace) the authenticator app at ``now``; its pyotp.TOTP and codes."""
    secret = totp.begin_enrolment(m, now, nonce)
    app = pyotp.TOTP(secret)
    status, codes = twofactor.enable_app(m, app.at(now), now, nonce, replace=replace)
    assert status is Enrolment.OK
    return app, codes


def other(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


# --- the result ------------------------------------------------------------------------


def test_result_reports_ok_and_the_lock_end():
    end = NOW + 15 * MINUTE
    assert Result(Outcome.OK).ok
    assert not Result(Outcome.WRONG).ok and not Result(Outcome.LOCKED, Lock(end)).ok
    assert Result(Outcome.WRONG).locked_until is None
    assert Result(Outcome.LOCKED, Lock(end)).locked_until == end
    assert Result(Outcome.LOCKED, Lock(None)).locked_until is None
    assert Lock(None).permanent and not Lock(end).permanent


# --- which methods, in which order ---------------------------------------------------


def test_a_member_without_methods(alice):
    assert twofactor.enabled_methods(alice) == []
    assert not twofactor.has_two_factor(alice)
    assert twofactor.preferred_method(alice) is None
    for kind in twofactor.METHODS:
        assert twofactor.method_since(alice, kind) is None
        assert not twofactor.set_preferred(alice, kind)
    assert fresh(alice.id).preferred_method is None


def test_methods_are_listed_in_the_order_they_were_set_up(alice, inbox):
    enable_contact(alice, "sms", inbox, now=NOW)
    enrol_app_at(alice, NOW + MINUTE)
    enable_contact(alice, "email", inbox, now=NOW + 2 * MINUTE)
    assert twofactor.enabled_methods(alice) == ["sms", "app", "email"]
    assert twofactor.has_two_factor(alice)
    assert twofactor.method_since(alice, "sms") == NOW
    assert twofactor.method_since(alice, "app") == NOW + MINUTE
    assert twofactor.method_since(alice, "email") == NOW + 2 * MINUTE
    # Sign-in starts with the first method set up, until the member chooses another.
    assert twofactor.preferred_method(alice) == "sms"
    assert twofactor.set_preferred(alice, "email")
    assert fresh(alice.id).preferred_method == "email"
    assert twofactor.preferred_method(alice) == "email"
    assert not twofactor.set_preferred(alice, "fax")
    assert fresh(alice.id).preferred_method == "email"
    # The chosen method removed: back to the first one still there.
    twofactor.disable_method(alice, "email")
    assert twofactor.preferred_method(alice) == "sms"
    assert not twofactor.set_preferred(alice, "email")


def test_replacing_the_app_makes_it_the_newest_method(alice, inbox):
    enrol_app_at(alice, NOW)
    enable_contact(alice, "email", inbox, now=NOW + MINUTE)
    assert twofactor.enabled_methods(alice) == ["app", "email"]
    later = NOW + 5 * MINUTE
    enrol_app_at(alice, later, replace=True)
    assert twofactor.method_since(alice, "app") == later
    assert twofactor.enabled_methods(alice) == ["email", "app"]
    assert twofactor.totp_credential(alice).last_used_at == later


def test_codes_go_to_the_current_address(alice, inbox):
    enable_contact(alice, "email", inbox)
    enable_contact(alice, "sms", inbox)
    assert twofactor.destination(alice, "email") == EMAIL
    assert twofactor.destination(alice, "sms") == PHONE
    alice.email = "alice@new.example.com"
    db.session.commit()
    assert twofactor.destination(alice, "email") == "alice@new.example.com"
    later = NOW + 2 * MINUTE
    assert twofactor.send_signin_code(alice, "email", later) == "alice@new.example.com"
    assert inbox.last().to == "alice@new.example.com" and inbox.last().channel == "email"
    assert twofactor.send_signin_code(alice, "sms", later) == PHONE
    assert inbox.last().to == PHONE and inbox.last().channel == "sms"


# --- sign-in with email and SMS codes ---------------------------------------------------


def test_a_sign_in_code_by_sms_is_one_short_text_and_by_mail_a_full_mail(alice, inbox):
    enable_contact(alice, "email", inbox)
    enable_contact(alice, "sms", inbox)
    later = NOW + 2 * MINUTE
    sms_code = signin_code(alice, "sms", inbox, later)
    sms = inbox.last()
    assert sms.body.startswith("【会員ページ】認証コード: ") and sms_code in sms.body
    assert "\n" not in sms.body.strip() and len(sms.body.strip()) <= 70
    mail_code = signin_code(alice, "email", inbox, later)
    mail = inbox.last()
    assert mail.subject == "【会員ページ】ログイン用の認証コード"
    assert f"認証コード: {mail_code}" in mail.body and "ログインしようとした覚えがない" in mail.body


@pytest.mark.parametrize(("kind", "address"), [("email", EMAIL), ("sms", PHONE)])
def test_signin_with_a_code_by_email_or_sms(alice, inbox, kind, address):
    assert len(enable_contact(alice, kind, inbox)) == 10
    assert twofactor.preferred_method(alice) == kind
    later = NOW + 2 * MINUTE
    assert twofactor.send_signin_code(alice, kind, later) == address
    message = inbox.last()
    assert (message.channel, message.to) == (kind, address)
    assert len(message.code) == 6 and message.code.isdigit()
    used_at = later + MINUTE
    result = twofactor.verify_code(alice, message.code, used_at, kind)
    assert result.ok and result.status is None and result.lock is None
    assert twofactor.contact_method(alice, kind).last_used_at == used_at
    assert fresh(alice.id).last_second_step_at == used_at
    # The same code again (a replay, or a second tab): refused as no longer valid.
    again = twofactor.verify_code(alice, message.code, used_at, kind)
    assert again.outcome is Outcome.WRONG and again.status is Status.USED
    assert twofactor.contact_method(alice, kind).last_used_at == used_at


def test_a_wrong_email_code_counts_a_failure(alice, inbox):
    enable_contact(alice, "email", inbox)
    code = signin_code(alice, "email", inbox, NOW + MINUTE)
    result = twofactor.verify_code(alice, other(code), NOW + MINUTE, "email")
    assert result.outcome is Outcome.WRONG and result.status is Status.WRONG
    assert fresh(alice.id).tfa_failures == 1
    assert twofactor.contact_method(alice, "email").last_used_at == NOW
    # The right code still works (one wrong try is not five) and resets the count.
    assert twofactor.verify_code(alice, code, NOW + MINUTE, "email").ok
    assert fresh(alice.id).tfa_failures == 0


def test_an_email_code_is_not_an_sms_code(alice, inbox):
    enable_contact(alice, "email", inbox)
    enable_contact(alice, "sms", inbox)
    code = signin_code(alice, "email", inbox, NOW + MINUTE)
    result = twofactor.verify_code(alice, code, NOW + MINUTE, "sms")
    assert result.outcome is Outcome.WRONG and result.status is Status.EXPIRED
    assert twofactor.verify_code(alice, code, NOW + MINUTE, "email").ok
    # Only the method used is marked as used.
    assert twofactor.contact_method(alice, "email").last_used_at == NOW + MINUTE
    assert twofactor.contact_method(alice, "sms").last_used_at == NOW


def test_another_members_method_is_not_this_members(alice, inbox):
    bob = make_member("bob", "bob@example.com", "+819087654321")
    enable_contact(bob, "email", inbox)
    enable_contact(bob, "sms", inbox)
    for kind in ("email", "sms"):
        assert twofactor.contact_method(alice, kind) is None
        assert twofactor.method_since(alice, kind) is None
        with pytest.raises(SendRefused):
            twofactor.send_signin_code(alice, kind, NOW + MINUTE)
    assert twofactor.enabled_methods(alice) == [] and not twofactor.has_two_factor(alice)
    assert twofactor.verify_code(alice, "123456", NOW, "email").status is None


@pytest.mark.parametrize("method", ["sms", "fax", None, ""])
def test_a_method_that_is_not_enabled_never_succeeds(alice, inbox, method):
    """Email enabled, SMS not: a code for a method the member does not have is refused
    and counted, whatever was typed (here the genuine email code)."""
    enable_contact(alice, "email", inbox)
    code = signin_code(alice, "email", inbox, NOW + MINUTE)
    result = twofactor.verify_code(alice, code, NOW + MINUTE, method)
    assert result.outcome is Outcome.WRONG and result.status is None
    assert fresh(alice.id).tfa_failures == 1
    assert otp_codes.pending_destination(alice, "signin:email", NOW + MINUTE) == EMAIL


def test_ten_wrong_email_codes_lock_and_stop_the_sending(alice, inbox):
    enable_contact(alice, "email", inbox)
    now = NOW + MINUTE
    results = []
    for i in range(10):
        code = signin_code(alice, "email", inbox, now + i * MINUTE)
        results.append(twofactor.verify_code(alice, other(code), now + i * MINUTE, "email"))
    assert [r.outcome for r in results] == [Outcome.WRONG] * 9 + [Outcome.LOCKED]
    end = now + 9 * MINUTE + 15 * MINUTE
    assert results[-1].locked_until == end
    sent = len(inbox.messages)
    # No SMS bill (and no mail) for a code that could not be used anyway.
    with pytest.raises(SendRefused) as refused:
        twofactor.send_signin_code(alice, "email", end - timedelta(seconds=1))
    assert refused.value.reason is Refusal.LOCKED and refused.value.until == end
    assert len(inbox.messages) == sent
    assert twofactor.send_signin_code(alice, "email", end) == EMAIL
    assert len(inbox.messages) == sent + 1


def test_no_code_is_sent_while_locked_for_good(alice, inbox):
    enable_contact(alice, "email", inbox)
    db.session.execute(db.update(Member).where(Member.id == alice.id).values(tfa_blocked_at=NOW))
    db.session.commit()
    sent = len(inbox.messages)
    with pytest.raises(SendRefused) as refused:
        twofactor.send_signin_code(alice, "email", NOW + timedelta(days=30))
    assert refused.value.reason is Refusal.LOCKED and refused.value.until is None
    assert len(inbox.messages) == sent


def test_codes_are_sent_only_for_an_enabled_method_with_an_address(alice, inbox):
    for kind in ("email", "sms", "app", "fax"):
        with pytest.raises(SendRefused) as refused:
            twofactor.send_signin_code(alice, kind, NOW)
        assert refused.value.reason is Refusal.FAILED
        assert refused.value.seconds == 0 and refused.value.until is None
        assert str(refused.value) == "failed"
    enable_contact(alice, "sms", inbox)
    alice.phone = ""
    db.session.commit()
    with pytest.raises(SendRefused) as refused:
        twofactor.send_signin_code(alice, "sms", NOW + 2 * MINUTE)
    assert refused.value.reason is Refusal.FAILED
    assert [m.channel for m in inbox.messages] == ["sms"]  # only the set-up code


def test_a_replayed_app_code_is_refused_counted_and_flagged(ctx, member_with_totp):
    """ASVS 2.8.5: a right code of a time step already used is refused like any wrong
    code, and flagged so that the member can be told."""
    member_id, app, _ = member_with_totp
    m = get_member(member_id)
    first = twofactor.verify_code(m, app.at(NOW), NOW)
    assert first.ok and not first.replayed
    for replay in (
        twofactor.verify_code(m, app.at(NOW), NOW + timedelta(seconds=5)),  # same step
        twofactor.verify_code(m, app.at(NOW - timedelta(seconds=30)), NOW),  # older step
        twofactor.verify_any(m, app.at(NOW), NOW),
    ):
        assert replay.outcome is Outcome.WRONG and replay.replayed and replay.lock is None
    assert fresh(member_id).tfa_failures == 3
    wrong = twofactor.verify_code(m, other(app.at(NOW)), NOW)
    assert wrong.outcome is Outcome.WRONG and not wrong.replayed
    assert not twofactor.verify_code(m, "", NOW).replayed
    later = NOW + timedelta(seconds=30)
    fresh_code = twofactor.verify_code(m, app.at(later), later)
    assert fresh_code.ok and not fresh_code.replayed


def test_a_replay_that_completes_the_count_reports_the_lock(ctx, member_with_totp):
    member_id, app, _ = member_with_totp
    m = get_member(member_id)
    assert twofactor.verify_code(m, app.at(NOW), NOW).ok
    for _ in range(9):
        twofactor.verify_code(m, "000000", NOW)
    result = twofactor.verify_code(m, app.at(NOW), NOW)
    assert result.outcome is Outcome.LOCKED and result.locked_until == NOW + 15 * MINUTE


def test_without_an_app_nothing_is_a_replay(alice, inbox):
    enable_contact(alice, "email", inbox)
    for typed in ("000000", "123456"):
        result = twofactor.verify_code(alice, typed, NOW + MINUTE)
        assert result.outcome is Outcome.WRONG and not result.replayed
    assert not twofactor.verify_any(alice, "123456", NOW + MINUTE).replayed
    assert not Result(Outcome.OK).replayed and not Result(Outcome.WRONG).replayed


# --- re-authentication -----------------------------------------------------------------


def test_reauthentication_with_the_app(ctx, member_with_totp):
    member_id, app, _ = member_with_totp
    m = get_member(member_id)
    assert twofactor.verify_any(m, app.at(NOW), NOW).ok
    assert fresh(member_id).last_second_step_at == NOW
    replay = twofactor.verify_any(m, app.at(NOW), NOW)
    assert replay.outcome is Outcome.WRONG
    assert twofactor.verify_any(m, other(app.at(NOW + MINUTE)), NOW + MINUTE).outcome is (
        Outcome.WRONG
    )


def test_reauthentication_spends_the_recovery_code(ctx, member_with_totp):
    member_id, _, codes = member_with_totp
    m = get_member(member_id)
    assert twofactor.verify_any(m, codes[0], NOW).ok
    assert recovery.remaining(m) == 9
    used = db.session.scalar(db.select(RecoveryCode).where(RecoveryCode.used_at.is_not(None)))
    assert used.used_at == NOW
    again = twofactor.verify_any(m, codes[0], NOW + MINUTE)
    assert again.outcome is Outcome.WRONG
    assert twofactor.verify_recovery_code(m, codes[0], NOW + MINUTE).outcome is Outcome.WRONG
    assert recovery.remaining(m) == 9
    # Counted as recovery-code failures, not as code failures.
    stored = fresh(member_id)
    assert (stored.recovery_failures, stored.tfa_failures) == (2, 0)


def test_reauthentication_without_an_app_refuses_any_six_digits(alice, inbox):
    """Email only: with no method named, the app is tried, and there is none."""
    enable_contact(alice, "email", inbox)
    code = signin_code(alice, "email", inbox, NOW + MINUTE)
    for typed in ("000000", "123456", code):
        result = twofactor.verify_any(alice, typed, NOW + MINUTE)
        assert result.outcome is Outcome.WRONG
    assert fresh(alice.id).tfa_failures == 3


@pytest.mark.parametrize("kind", ["email", "sms"])
def test_reauthentication_with_an_email_or_sms_code(alice, inbox, kind):
    enable_contact(alice, kind, inbox)
    now = NOW + MINUTE
    code = signin_code(alice, kind, inbox, now)
    wrong = twofactor.verify_any(alice, other(code), now, method=kind)
    assert wrong.outcome is Outcome.WRONG
    assert twofactor.verify_any(alice, code, now, method=kind).ok
    assert fresh(alice.id).last_second_step_at == now
    spent = twofactor.verify_any(alice, code, now, method=kind)
    assert spent.outcome is Outcome.WRONG
    other_kind = "sms" if kind == "email" else "email"
    code = signin_code(alice, kind, inbox, now + MINUTE)
    bound = twofactor.verify_any(alice, code, now + MINUTE, method=other_kind)
    assert bound.outcome is Outcome.WRONG


def test_reauthentication_is_refused_during_a_lock(ctx, member_with_totp):
    member_id, app, codes = member_with_totp
    m = get_member(member_id)
    for _ in range(10):
        twofactor.verify_any(m, "000000", NOW)
    locked = twofactor.verify_any(m, app.at(NOW), NOW)
    assert locked.outcome is Outcome.LOCKED and locked.locked_until == NOW + 15 * MINUTE
    # A recovery code counts on its own and still works.
    assert twofactor.verify_any(m, codes[0], NOW).ok


# --- turning methods on ----------------------------------------------------------------


def test_the_first_method_issues_recovery_codes_and_proves_the_member(alice, inbox):
    codes = enable_contact(alice, "email", inbox, now=NOW)
    assert len(codes) == 10 and recovery.remaining(alice) == 10
    assert set(db.session.scalars(db.select(RecoveryCode.created_at))) == {NOW}
    stored = fresh(alice.id)
    assert stored.preferred_method == "email" and stored.last_second_step_at == NOW
    row = twofactor.contact_method(alice, "email")
    assert (row.created_at, row.last_used_at) == (NOW, NOW)
    assert recovery.use(alice, codes[0], NOW)


def test_a_second_method_keeps_the_recovery_codes_and_the_choice(alice, inbox):
    codes = enable_contact(alice, "email", inbox, now=NOW)
    later = NOW + MINUTE
    assert enable_contact(alice, "sms", inbox, now=later) == []
    app, new_codes = enrol_app_at(alice, later + MINUTE)
    assert new_codes == []
    assert fresh(alice.id).preferred_method == "email"
    assert recovery.remaining(alice) == 10 and recovery.use(alice, codes[1], later)


def test_enabling_a_method_lifts_a_temporary_lock_but_not_a_permanent_one(alice, inbox):
    enable_contact(alice, "email", inbox)
    for _ in range(10):
        twofactor.verify_code(alice, "000000", NOW + MINUTE, "email")
    assert lockout.current_lock(alice, NOW + MINUTE) is not None
    enable_contact(alice, "sms", inbox, now=NOW + 2 * MINUTE)
    stored = fresh(alice.id)
    assert stored.tfa_failures == 0 and stored.tfa_locked_until is None
    assert stored.last_second_step_at == NOW + 2 * MINUTE
    # An operator's block stays until an operator clears it.
    stored.tfa_blocked_at = NOW
    db.session.commit()
    app, _ = enrol_app_at(stored, NOW + 3 * MINUTE)
    assert lockout.current_lock(stored, NOW + timedelta(days=9)) == Lock(None)
    assert fresh(alice.id).tfa_blocked_at == NOW
    # Blocked with a short streak (the success reset it): even the right code is refused.
    much_later = NOW + timedelta(days=9)
    refused = twofactor.verify_code(stored, app.at(much_later), much_later)
    assert refused.outcome is Outcome.LOCKED and refused.lock.permanent


def test_the_first_app_issues_recovery_codes_and_its_code_is_spent(alice):
    app, codes = enrol_app_at(alice, NOW)
    assert len(codes) == 10 and fresh(alice.id).preferred_method == "app"
    assert fresh(alice.id).last_second_step_at == NOW
    cred = twofactor.totp_credential(alice)
    assert (cred.created_at, cred.last_used_at, cred.last_step) == (NOW, NOW, totp.step_of(NOW))
    # The code that proved the app cannot be replayed to sign in.
    assert twofactor.verify_code(alice, app.at(NOW), NOW).outcome is Outcome.WRONG
    assert twofactor.verify_code(alice, app.at(NOW + 30 * timedelta(seconds=1)), NOW).ok


@pytest.mark.parametrize("kind", ["email", "sms"])
def test_a_wrong_setup_code_enables_nothing(alice, inbox, kind):
    target = twofactor.send_setup_code(alice, kind, NOW)
    assert target == (EMAIL if kind == "email" else PHONE)
    code = inbox.code(target)
    assert twofactor.enable_contact(alice, kind, other(code), NOW) == (Status.WRONG, None)
    assert twofactor.enable_contact(alice, kind, None, NOW) == (Status.WRONG, None)
    assert not twofactor.has_two_factor(alice) and recovery.remaining(alice) == 0
    # A code for one method does not set up the other.
    other_kind = "sms" if kind == "email" else "email"
    assert twofactor.enable_contact(alice, other_kind, code, NOW) == (Status.EXPIRED, None)
    assert twofactor.enable_contact(alice, kind, code, NOW)[0] is Status.OK


def test_a_setup_code_proves_only_the_address_it_went_to(alice, inbox):
    twofactor.send_setup_code(alice, "email", NOW)
    code = inbox.code(EMAIL)
    alice.email = "someone-else@example.com"
    db.session.commit()
    assert twofactor.enable_contact(alice, "email", code, NOW) == (Status.EXPIRED, None)
    assert not twofactor.has_two_factor(alice)
    assert db.session.scalar(db.select(ContactMethod)) is None


def test_a_setup_code_needs_an_address(alice, inbox):
    alice.phone = ""
    db.session.commit()
    with pytest.raises(SendRefused) as refused:
        twofactor.send_setup_code(alice, "sms", NOW)
    assert refused.value.reason is Refusal.FAILED
    assert inbox.messages == []


def test_enabling_voids_a_change_begun_before(alice, inbox):
    otp_codes.send(alice, "change:email", "email", "new@example.com", NOW, lambda c, ch: ("s", c))
    assert otp_codes.pending_destination(alice, "change:email", NOW) == "new@example.com"
    enable_contact(alice, "email", inbox, now=NOW)
    assert otp_codes.pending_destination(alice, "change:email", NOW) is None


def test_enabling_twice_adds_nothing(alice, inbox):
    codes = enable_contact(alice, "email", inbox, now=NOW)
    later = NOW + 2 * MINUTE
    twofactor.send_setup_code(alice, "email", later)
    status, again = twofactor.enable_contact(alice, "email", inbox.code(EMAIL), later)
    assert (status, again) == (Status.OK, [])
    assert db.session.scalar(db.select(db.func.count(ContactMethod.id))) == 1
    assert twofactor.method_since(alice, "email") == NOW
    assert recovery.use(alice, codes[0], later)


# --- turning methods off ---------------------------------------------------------------


def test_removing_email_voids_its_codes_but_not_the_sms_ones(alice, inbox):
    enable_contact(alice, "email", inbox)
    enable_contact(alice, "sms", inbox)
    now = NOW + 2 * MINUTE
    email_code = signin_code(alice, "email", inbox, now)
    sms_code = signin_code(alice, "sms", inbox, now)
    twofactor.send_setup_code(alice, "email", now)
    otp_codes.send(alice, "change:email", "email", "new@example.com", now, lambda c, ch: ("s", c))
    twofactor.disable_method(alice, "email")
    assert twofactor.enabled_methods(alice) == ["sms"]
    for purpose in ("signin:email", "setup:email", "change:email"):
        assert otp_codes.pending_destination(alice, purpose, now) is None
    assert twofactor.verify_code(alice, email_code, now, "email").outcome is Outcome.WRONG
    assert otp_codes.pending_destination(alice, "signin:sms", now) == PHONE
    assert twofactor.verify_code(alice, sms_code, now, "sms").ok
    assert recovery.remaining(alice) == 10


def test_removing_the_app_keeps_recovery_codes_while_another_method_is_left(alice, inbox):
    app, codes = enrol_app_at(alice, NOW)
    enable_contact(alice, "email", inbox, now=NOW + MINUTE)
    replacement = totp.begin_enrolment(alice, NOW + 2 * MINUTE, SESSION)
    twofactor.disable_method(alice, "app")
    assert twofactor.enabled_methods(alice) == ["email"]
    assert db.session.scalar(db.select(TotpCredential)) is None
    # A replacement begun before the removal cannot bring the app back.
    code = pyotp.TOTP(replacement).at(NOW + 2 * MINUTE)
    assert twofactor.enable_app(alice, code, NOW + 2 * MINUTE, SESSION, replace=True) == (
        Enrolment.GONE,
        [],
    )
    # Nor as a new app: the removal voided the pending set-up.
    assert twofactor.enable_app(alice, code, NOW + 2 * MINUTE, SESSION, replace=False) == (
        Enrolment.GONE,
        [],
    )
    assert db.session.scalar(db.select(TotpEnrolment)) is None
    later = NOW + 3 * MINUTE
    assert twofactor.verify_code(alice, app.at(later), later).outcome is Outcome.WRONG
    assert recovery.remaining(alice) == 10
    twofactor.disable_method(alice, "email")
    assert recovery.remaining(alice) == 0
    assert twofactor.verify_recovery_code(alice, codes[0], later).outcome is Outcome.WRONG


# --- the operator's reset --------------------------------------------------------------


def everything_of(member_id):
    rows = {}
    for model in (TotpCredential, TotpEnrolment, ContactMethod, RecoveryCode, OneTimeCode):
        rows[model.__name__] = db.session.scalar(
            db.select(db.func.count(model.id)).where(model.member_id == member_id)
        )
    return rows


def test_reset_all_removes_every_method_code_and_session(alice, inbox):
    app, codes = enrol_app_at(alice, NOW)
    enable_contact(alice, "email", inbox, now=NOW + MINUTE)
    enable_contact(alice, "sms", inbox, now=NOW + MINUTE)
    signin_code(alice, "email", inbox, NOW + 2 * MINUTE)
    totp.begin_enrolment(alice, NOW + 2 * MINUTE, SESSION)
    twofactor.set_preferred(alice, "sms")
    for _ in range(10):
        twofactor.verify_recovery_code(alice, "aaaaa-aaaaa", NOW + 2 * MINUTE)
    db.session.execute(
        db.update(Member)
        .where(Member.id == alice.id)
        .values(tfa_blocked_at=NOW, tfa_failures=4, tfa_streak=99, session_generation=7)
    )
    db.session.commit()
    assert all(everything_of(alice.id).values())

    twofactor.reset_all(alice)

    assert set(everything_of(alice.id).values()) == {0}
    stored = fresh(alice.id)
    assert stored.session_generation == 8  # every session ends: never back to an old one
    assert stored.preferred_method is None
    assert (stored.tfa_failures, stored.tfa_locks, stored.tfa_streak) == (0, 0, 0)
    assert (stored.recovery_failures, stored.recovery_locks) == (0, 0)
    assert stored.tfa_blocked_at is None
    assert stored.tfa_locked_until is None and stored.recovery_locked_until is None
    assert not lockout.is_locked(stored, NOW + 3 * MINUTE)
    assert not twofactor.has_two_factor(stored)
    later = NOW + 3 * MINUTE
    assert twofactor.verify_recovery_code(stored, codes[0], later).outcome is Outcome.WRONG
    assert twofactor.verify_code(stored, app.at(later), later).outcome is Outcome.WRONG


def test_reset_all_is_seen_by_every_other_session(app, alice, inbox):
    enable_contact(alice, "email", inbox)
    generation = alice.session_generation
    twofactor.reset_all(alice)

    def elsewhere():
        with app.app_context():  # another request, with its own database session
            other = get_member(alice.id)
            seen.append((other.session_generation, twofactor.enabled_methods(other)))

    seen = []
    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join(timeout=30)
    assert seen == [(generation + 1, [])]


def test_reset_all_without_commit_is_part_of_the_callers_transaction(alice, inbox):
    enable_contact(alice, "email", inbox)
    generation = fresh(alice.id).session_generation
    twofactor.reset_all(alice, commit=False)
    db.session.rollback()
    assert twofactor.has_two_factor(alice) and recovery.remaining(alice) == 10
    assert fresh(alice.id).session_generation == generation
    twofactor.reset_all(alice, commit=False)
    db.session.commit()
    assert not twofactor.has_two_factor(alice)
    assert fresh(alice.id).session_generation == generation + 1


def test_reset_all_ends_the_sessions_of_the_member_it_holds(alice, inbox):
    """The member object the caller holds sees the reset without a refresh."""
    enable_contact(alice, "email", inbox)
    generation = alice.session_generation
    twofactor.reset_all(alice)
    assert alice.session_generation == generation + 1
    assert alice.preferred_method is None


def test_a_member_without_a_method_is_not_reset(ctx):
    """Nothing to remove: no session ends (and the callers send no mail, write no row)."""
    bob = make_member("bob", "bob@example.com", "")
    with pytest.raises(twofactor.NoSecondStep):
        twofactor.reset_all(bob)
    assert fresh(bob.id).session_generation == 0


def test_a_second_reset_changes_nothing(alice, inbox):
    enable_contact(alice, "email", inbox)
    assert twofactor.reset_all(alice) == ["email"]
    generation = fresh(alice.id).session_generation
    with pytest.raises(twofactor.NoSecondStep):
        twofactor.reset_all(alice)
    assert fresh(alice.id).session_generation == generation


def test_of_two_racing_resets_only_one_goes_through(alice, inbox, monkeypatch):
    """The second read the methods before the first removed them: the rows it deletes
    are counted, so it still changes nothing."""
    enable_contact(alice, "email", inbox)
    twofactor.reset_all(alice)
    generation = fresh(alice.id).session_generation
    monkeypatch.setattr(twofactor, "enabled_methods", lambda member: ["email"])
    with pytest.raises(twofactor.NoSecondStep):
        twofactor.reset_all(alice, commit=False)
    db.session.commit()
    assert fresh(alice.id).session_generation == generation


def test_a_reset_is_told_once_at_the_next_sign_in(alice, inbox):
    """The operator's reset keeps its time; the first sign-in takes it (and clears it),
    so the member is told on screen exactly once."""
    enable_contact(alice, "email", inbox)
    bob = make_member("bob", "bob@example.com", "")
    assert twofactor.take_reset_notice(alice) is None  # never reset
    twofactor.reset_all(alice, now=NOW + MINUTE)
    assert fresh(alice.id).tfa_reset_at == NOW + MINUTE
    assert twofactor.take_reset_notice(bob) is None  # another member's reset is not bob's
    assert twofactor.take_reset_notice(alice) == NOW + MINUTE
    assert twofactor.take_reset_notice(alice) is None
    assert fresh(alice.id).tfa_reset_at is None


def test_a_refused_reset_leaves_no_notice(ctx):
    bob = make_member("bob", "bob@example.com", "")
    with pytest.raises(twofactor.NoSecondStep):
        twofactor.reset_all(bob, now=NOW)
    assert twofactor.take_reset_notice(bob) is None


def hold_email(member: Member, at) -> None:
    """What a password reset by mail leaves behind (password_reset.use)."""
    member.password_reset_at = at
    db.session.commit()


def test_right_after_a_reset_by_mail_a_right_email_code_is_no_second_step(alice, inbox):
    """One mailbox never passes both steps: while held, even the right emailed code is
    refused for re-authentication, and email is not a usable method; SMS still is."""
    enable_contact(alice, "email", inbox)
    enable_contact(alice, "sms", inbox)
    hold_email(alice, NOW + MINUTE)
    assert twofactor.mailbox_only(alice)
    assert twofactor.usable_methods(alice) == ["sms"]
    assert twofactor.preferred_method(alice) == "sms"
    code = signin_code(alice, "email", inbox, NOW + 2 * MINUTE)
    assert not twofactor.verify_any(alice, code, NOW + 2 * MINUTE, "email").ok
    # Another method passed afterwards ends the hold; then the email code counts again.
    sms = signin_code(alice, "sms", inbox, NOW + 3 * MINUTE)
    assert twofactor.verify_code(alice, sms, NOW + 3 * MINUTE, "sms").ok
    assert not twofactor.mailbox_only(fresh(alice.id))
    assert twofactor.usable_methods(alice) == ["email", "sms"]
    again = signin_code(alice, "email", inbox, NOW + 5 * MINUTE)
    assert twofactor.verify_any(alice, again, NOW + 5 * MINUTE, "email").ok


def test_the_hold_needs_a_second_step_after_the_reset_not_at_it(alice, inbox):
    enable_contact(alice, "email", inbox)
    alice.last_second_step_at = NOW
    hold_email(alice, NOW)
    assert not twofactor.mailbox_only(alice)  # a step at that very instant counts
    hold_email(alice, NOW + timedelta(seconds=1))
    assert twofactor.mailbox_only(alice)
    alice.last_second_step_at = None
    assert twofactor.mailbox_only(alice)
    alice.password_reset_at = None
    assert not twofactor.mailbox_only(alice)


def test_taking_the_notice_leaves_other_members_reset_at_the_same_instant(alice, inbox):
    bob = make_member("bob", "bob@example.com", "")
    enable_contact(alice, "email", inbox)
    enable_contact(bob, "email", inbox)
    twofactor.reset_all(alice, now=NOW)
    twofactor.reset_all(bob, now=NOW)
    assert twofactor.take_reset_notice(alice) == NOW
    assert twofactor.take_reset_notice(bob) == NOW  # not cleared with alice's
