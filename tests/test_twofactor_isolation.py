"""One member's two-step verification never touches another's.

Alice, Bob, Carol and Dave all have state: Bob has every method, recovery codes, codes
on their way, a pending app replacement and a few failures; Carol is locked (codes and
recovery codes) and blocked by an operator; Dave's counters are full, his attempts not
yet judged. Each action below is done to Alice; then every row of the others must be
exactly as before (a DELETE or UPDATE that lost
its member filter shows up here), and Bob can still use each of his methods."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pyotp
import pytest
from conftest import NOW, get_member
from twofactor_helpers import enable_contact, install_inbox, make_member, signin_code

from portal import twofactor
from portal.extensions import db
from portal.models import (
    CodeSend,
    ContactMethod,
    Member,
    OneTimeCode,
    RecoveryCode,
    TotpCredential,
    TotpEnrolment,
)
from portal.twofactor import Enrolment, lockout, otp_codes, recovery, totp

MINUTE = timedelta(minutes=1)
SETUP = NOW  # everybody's state is made now
ACTION = NOW + 2 * MINUTE  # then something is done to Alice
CHECK = NOW + 3 * MINUTE  # then Bob signs in
ALICE_SESSION = "alice-session"
BOB_SESSION = "bob-session"


@dataclass
class Person:
    id: int
    app: pyotp.TOTP
    recovery_codes: list[str]
    email_code: str = ""
    sms_code: str = ""
    replacement: str = ""

    @property
    def m(self) -> Member:
        return get_member(self.id)


@dataclass
class World:
    alice: Person
    bob: Person
    others: list[int]  # Carol (locked for good) and Dave (counters full)
    inbox: object


def enrolled(m, inbox) -> Person:
    earlier = NOW - timedelta(days=30)
    secret = totp.begin_enrolment(m, earlier, "first-setup")
    app = pyotp.TOTP(secret)
    status, codes = twofactor.enable_app(m, app.at(earlier), earlier, "first-setup", replace=False)
    assert status is Enrolment.OK
    enable_contact(m, "email", inbox, now=SETUP)
    enable_contact(m, "sms", inbox, now=SETUP)
    person = Person(m.id, app, codes)
    person.email_code = signin_code(m, "email", inbox, SETUP + MINUTE)
    person.sms_code = signin_code(m, "sms", inbox, SETUP + MINUTE)
    return person


@pytest.fixture
def world(ctx, member, monkeypatch):
    inbox = install_inbox(monkeypatch)
    alice = enrolled(get_member(member), inbox)
    bob_member = make_member("bob", "bob@example.com", "+819087654321")
    bob = enrolled(bob_member, inbox)
    bob.replacement = totp.begin_enrolment(bob_member, SETUP + MINUTE, BOB_SESSION)
    # Bob got a few codes wrong; Carol's guessing locked both counters, then for good.
    db.session.execute(
        db.update(Member)
        .where(Member.id == bob.id)
        .values(tfa_failures=3, recovery_failures=4, tfa_streak=7, tfa_locks=2)
    )
    carol = make_member("carol", "carol@example.com", "")
    db.session.execute(
        db.update(Member)
        .where(Member.id == carol.id)
        .values(
            tfa_locked_until=SETUP + 15 * MINUTE,
            tfa_locks=1,
            recovery_locked_until=SETUP + 15 * MINUTE,
            recovery_locks=1,
            tfa_streak=100,
            tfa_blocked_at=SETUP,
        )
    )
    # Dave's tenth wrong code and hundredth failure in a row are being judged right now
    # (counted, not yet locked), or a crash left them so.
    dave = make_member("dave", "dave@example.com", "")
    db.session.execute(
        db.update(Member)
        .where(Member.id == dave.id)
        .values(tfa_failures=10, recovery_failures=10, tfa_streak=100)
    )
    db.session.commit()
    return World(alice, bob, [carol.id, dave.id], inbox)


def snapshot(member_id: int) -> dict:
    """Every stored row of the member, column by column."""
    db.session.expire_all()
    rows = {
        "member": db.session.execute(
            db.select(Member.__table__).where(Member.id == member_id)
        ).all()
    }
    for model in (
        TotpCredential,
        TotpEnrolment,
        ContactMethod,
        RecoveryCode,
        OneTimeCode,
        CodeSend,
    ):
        rows[model.__name__] = db.session.execute(
            db.select(model.__table__).where(model.member_id == member_id).order_by(model.id)
        ).all()
    return rows


def block_alice(w):
    a = w.alice.m
    db.session.execute(db.update(Member).where(Member.id == a.id).values(tfa_streak=99))
    db.session.commit()
    assert twofactor.verify_code(a, "000000", ACTION).lock.permanent


def lock_alice(w):
    for _ in range(10):
        result = twofactor.verify_code(w.alice.m, "000000", ACTION)
    assert result.lock.new


def lock_alice_recovery(w):
    for _ in range(10):
        result = twofactor.verify_recovery_code(w.alice.m, "aaaaa-aaaaa", ACTION)
    assert result.lock.new


def alice_signs_in_with_email(w):
    a = w.alice.m
    code = signin_code(a, "email", w.inbox, ACTION)
    assert twofactor.verify_code(a, code, ACTION, "email").ok


def alice_reauthenticates_by_sms(w):
    a = w.alice.m
    assert twofactor.verify_any(a, w.alice.sms_code, ACTION, method="sms").ok


def alice_guesses_email_codes(w):
    for guess in ("000000", "111111", "222222", "333333", "444444", "555555"):
        if guess != w.alice.email_code:
            twofactor.verify_code(w.alice.m, guess, ACTION, "email")
    assert otp_codes.pending_destination(w.alice.m, "signin:email", ACTION) is None


def alice_send_fails(w):
    w.inbox.failing = True
    with pytest.raises(twofactor.SendRefused):
        twofactor.send_signin_code(w.alice.m, "email", ACTION)
    w.inbox.failing = False


def alice_replaces_her_app(w):
    a = w.alice.m
    secret = totp.begin_enrolment(a, ACTION, ALICE_SESSION)
    code = pyotp.TOTP(secret).at(ACTION)
    assert twofactor.enable_app(a, code, ACTION, ALICE_SESSION, replace=True)[0] is Enrolment.OK


def alice_enables_email_again(w):
    a = w.alice.m
    twofactor.disable_method(a, "email")
    enable_contact(a, "email", w.inbox, now=ACTION)


def alice_removes_everything(w):
    for kind in ("app", "email", "sms"):
        twofactor.disable_method(w.alice.m, kind)
    assert recovery.remaining(w.alice.m) == 0


ACTIONS = {
    "app code": lambda w: twofactor.verify_code(w.alice.m, w.alice.app.at(ACTION), ACTION),
    "wrong codes until locked": lock_alice,
    "wrong recovery codes until locked": lock_alice_recovery,
    "blocked": block_alice,
    "operator clears the lock": lambda w: lockout.clear(w.alice.m),
    "recovery code": lambda w: twofactor.verify_recovery_code(
        w.alice.m, w.alice.recovery_codes[0], ACTION
    ),
    "new recovery codes": lambda w: recovery.issue(w.alice.m, ACTION),
    "recovery codes voided": lambda w: recovery.void(w.alice.m),
    "email sign-in": alice_signs_in_with_email,
    "sms re-authentication": alice_reauthenticates_by_sms,
    "email code guesses": alice_guesses_email_codes,
    "failed send": alice_send_fails,
    "codes discarded": lambda w: otp_codes.discard(
        w.alice.m, "signin:email", "signin:sms", "setup:email", "setup:sms"
    ),
    "app set-up opened": lambda w: totp.begin_enrolment(w.alice.m, ACTION, ALICE_SESSION),
    "app replaced": alice_replaces_her_app,
    "app removed": lambda w: twofactor.disable_method(w.alice.m, "app"),
    "email removed": lambda w: twofactor.disable_method(w.alice.m, "email"),
    "sms removed": lambda w: twofactor.disable_method(w.alice.m, "sms"),
    "every method removed": alice_removes_everything,
    "email enabled again": alice_enables_email_again,
    "preferred method": lambda w: twofactor.set_preferred(w.alice.m, "sms"),
    "operator reset": lambda w: twofactor.reset_all(w.alice.m),
}


@pytest.mark.parametrize("action", ACTIONS.values(), ids=ACTIONS.keys())
def test_nothing_of_another_member_changes(world, action):
    before = [snapshot(member_id) for member_id in [world.bob.id, *world.others]]
    action(world)
    assert [snapshot(member_id) for member_id in [world.bob.id, *world.others]] == before
    # Bob's every way in still works (each use changes his rows, so only now).
    bob = world.bob
    assert otp_codes.pending_destination(bob.m, "signin:email", CHECK) == "bob@example.com"
    assert twofactor.verify_code(bob.m, bob.email_code, CHECK, "email").ok
    assert twofactor.verify_any(bob.m, bob.sms_code, CHECK, method="sms").ok
    assert twofactor.verify_code(bob.m, bob.app.at(CHECK), CHECK).ok
    assert twofactor.verify_recovery_code(bob.m, bob.recovery_codes[-1], CHECK).ok
    assert recovery.remaining(bob.m) == 9
    code = pyotp.TOTP(bob.replacement).at(CHECK)
    assert twofactor.enable_app(bob.m, code, CHECK, BOB_SESSION, replace=True)[0] is (Enrolment.OK)
    # Carol stays locked for good.
    assert lockout.current_lock(get_member(world.others[0]), CHECK).permanent
