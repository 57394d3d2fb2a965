"""One-time codes by email/SMS, in the domain: 6 digits from the whole code space,
accepted once, at most 5 tries even under parallel guesses, daily caps per member,
spacing that a failed send does not escape, and no member's code touching another's."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from conftest import NOW, get_member

from portal import members, notify
from portal.extensions import db
from portal.models import CodeSend, OneTimeCode
from portal.twofactor import Refusal, SendRefused, Status, otp_codes

PURPOSE = "signin:email"


class Outbox:
    """The ``message`` callable of :func:`otp_codes.send`: keeps each code it is given."""

    def __init__(self):
        self.codes: list[str] = []

    def __call__(self, code: str, channel: str) -> tuple[str, str]:
        self.codes.append(code)
        return "subject", f"code {code}"


def send(m, now=NOW, purpose=PURPOSE, channel="email") -> str:
    outbox = Outbox()
    to = "+819012345678" if channel == "sms" else "alice@example.com"
    otp_codes.send(m, purpose, channel, to, now, outbox)
    return outbox.codes[-1]


def other(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def test_a_code_is_accepted_once(ctx, member):
    m = get_member(member)
    code = send(m)
    assert otp_codes.check(m, PURPOSE, code, NOW) == (Status.OK, "alice@example.com")
    assert otp_codes.check(m, PURPOSE, code, NOW) == (Status.USED, None)


def test_a_used_code_is_told_as_used_only_to_whoever_types_it(ctx, member):
    """Bug: a used code was called expired. Typing it again says it was used (even once
    it is past its expiry); any other code finds no live code; nothing is counted."""
    m = get_member(member)
    code = send(m)
    assert otp_codes.check(m, PURPOSE, code, NOW)[0] is Status.OK
    assert otp_codes.check(m, PURPOSE, other(code), NOW) == (Status.EXPIRED, None)
    assert otp_codes.check(m, PURPOSE, "", NOW) == (Status.EXPIRED, None)
    later = NOW + timedelta(hours=1)
    assert otp_codes.check(m, PURPOSE, code, later) == (Status.USED, None)
    assert otp_codes.check(m, "setup:email", code, NOW) == (Status.EXPIRED, None)
    assert db.session.scalar(db.select(OneTimeCode)).tries == 1


def test_five_wrong_tries_void_even_the_right_code(ctx, member):
    m = get_member(member)
    code = send(m)
    for _ in range(4):
        assert otp_codes.check(m, PURPOSE, other(code), NOW) == (Status.WRONG, None)
    assert otp_codes.check(m, PURPOSE, other(code), NOW) == (Status.EXHAUSTED, None)
    assert otp_codes.check(m, PURPOSE, code, NOW) == (Status.EXHAUSTED, None)


def test_the_code_expires_at_its_exact_instant(ctx, member):
    m = get_member(member)
    code = send(m)
    end = NOW + timedelta(minutes=10)
    assert otp_codes.check(m, PURPOSE, code, end) == (Status.EXPIRED, None)
    code = send(m, now=end)
    just_before = end + timedelta(minutes=10) - timedelta(microseconds=1)
    assert otp_codes.check(m, PURPOSE, code, just_before)[0] is Status.OK


def test_only_the_latest_code_counts(ctx, member):
    m = get_member(member)
    first = send(m)
    second = send(m, now=NOW + timedelta(seconds=60))
    later = NOW + timedelta(seconds=61)
    if first != second:
        assert otp_codes.check(m, PURPOSE, first, later)[0] is Status.WRONG
    assert otp_codes.check(m, PURPOSE, second, later)[0] is Status.OK


def test_codes_come_from_the_whole_six_digit_space(ctx, member, monkeypatch):
    """``randbelow(10**6)``, zero-padded: a smaller space or a lost leading zero would be
    easier to guess or impossible to type."""
    asked = []

    def fake_randbelow(n):
        asked.append(n)
        return 42

    monkeypatch.setattr(otp_codes.secrets, "randbelow", fake_randbelow)
    code = send(get_member(member))
    assert asked == [10**6] and code == "000042"


@pytest.mark.parametrize("typed", ["٠٠٠٠٤٢", "000042x", "00042", "0000042", " 000 042 "])
def test_only_six_ascii_or_fullwidth_digits_are_a_code(ctx, member, monkeypatch, typed):
    monkeypatch.setattr(otp_codes.secrets, "randbelow", lambda n: 42)
    m = get_member(member)
    send(m)
    expected = Status.OK if typed == " 000 042 " else Status.WRONG
    assert otp_codes.check(m, PURPOSE, typed, NOW)[0] is expected


def test_fullwidth_digits_from_a_japanese_ime_are_accepted(ctx, member, monkeypatch):
    monkeypatch.setattr(otp_codes.secrets, "randbelow", lambda n: 42)
    m = get_member(member)
    send(m)
    assert otp_codes.check(m, PURPOSE, "０００ー０４２", NOW)[0] is Status.OK


def test_parallel_guesses_at_one_code_never_exceed_five(app, member, monkeypatch):
    """The try is counted before the comparison (one UPDATE … RETURNING). The guesses
    that got a try are held in flight together (a barrier of exactly five), so every
    other racing guess arrives while the tries are used up: exactly five compared."""
    with app.app_context():
        code = send(get_member(member))
    limit = app.config["PORTAL_OTP_MAX_TRIES"]
    in_flight = threading.Barrier(limit, timeout=30)
    compared = []
    real_six_digits = otp_codes.codes.six_digits

    def held(raw):
        compared.append(raw)
        in_flight.wait()
        return real_six_digits(raw)

    monkeypatch.setattr(otp_codes.codes, "six_digits", held)
    start = threading.Barrier(20, timeout=30)
    results = []

    def guess(i):
        start.wait()
        with app.app_context():
            guess_code = code if i == 19 else other(code)
            results.append(otp_codes.check(get_member(member), PURPOSE, guess_code, NOW)[0])

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 20 and len(compared) == limit
    assert results.count(Status.OK) <= 1
    with app.app_context():
        row = db.session.scalar(db.select(OneTimeCode))
        assert row.tries == limit


def test_email_has_a_daily_cap_per_member(app, ctx, member):
    app.config.update(PORTAL_EMAIL_MEMBER_DAILY_LIMIT=3, PORTAL_OTP_RESEND_SECONDS=0)
    m = get_member(member)
    for i in range(3):
        send(m, now=NOW + timedelta(minutes=i))
    with pytest.raises(SendRefused) as refused:
        send(m, now=NOW + timedelta(minutes=5))
    assert refused.value.reason is Refusal.MEMBER_CAP
    # SMS has a cap of its own; a day later, mail goes out again.
    send(m, now=NOW + timedelta(minutes=6), purpose="signin:sms", channel="sms")
    send(m, now=NOW + timedelta(days=1, minutes=1))


def test_a_failed_send_counts_toward_spacing_and_the_cap(app, ctx, member, monkeypatch):
    app.config.update(PORTAL_EMAIL_MEMBER_DAILY_LIMIT=2)
    m = get_member(member)

    def broken(*args, **kwargs):
        raise notify.DeliveryError("down")

    monkeypatch.setattr(otp_codes.notify, "send_email", broken)
    with pytest.raises(SendRefused) as failed:
        send(m)
    assert failed.value.reason is Refusal.FAILED
    assert otp_codes.pending_destination(m, PURPOSE, NOW) is None
    with pytest.raises(SendRefused) as too_soon:
        send(m, now=NOW + timedelta(seconds=30))
    assert too_soon.value.reason is Refusal.TOO_SOON and too_soon.value.seconds == 30
    monkeypatch.undo()
    send(m, now=NOW + timedelta(seconds=60))
    with pytest.raises(SendRefused) as capped:
        send(m, now=NOW + timedelta(seconds=120))
    assert capped.value.reason is Refusal.MEMBER_CAP
    assert db.session.scalar(db.select(db.func.count(CodeSend.id))) == 2


def test_one_members_codes_never_touch_anothers(ctx, member):
    alice = get_member(member)
    bob = members.create("bob", email="bob@example.com", password="another password 1")
    alice_code, bob_code = send(alice), send(bob)
    if alice_code != bob_code:
        assert otp_codes.check(alice, PURPOSE, bob_code, NOW)[0] is Status.WRONG
    for _ in range(4):
        otp_codes.check(alice, PURPOSE, other(alice_code), NOW)
    otp_codes.discard(alice, PURPOSE)
    assert otp_codes.check(bob, PURPOSE, bob_code, NOW) == (Status.OK, "alice@example.com")
    assert otp_codes.check(alice, PURPOSE, alice_code, NOW)[0] is Status.EXPIRED


def test_a_code_is_bound_to_its_purpose(ctx, member):
    m = get_member(member)
    code = send(m, purpose="setup:email")
    assert otp_codes.check(m, PURPOSE, code, NOW)[0] is Status.EXPIRED
    assert otp_codes.check(m, "setup:email", code, NOW)[0] is Status.OK


# --- added for mutation testing (tests/MUTATION.md) ---------------------------------

SECOND = timedelta(seconds=1)


def test_what_is_pending_and_where_it_went(app, ctx, member):
    m = get_member(member)
    assert otp_codes.pending_destination(m, PURPOSE, NOW) is None  # nothing sent
    code = send(m)
    assert otp_codes.pending_destination(m, PURPOSE, NOW) == "alice@example.com"
    assert otp_codes.pending_destination(m, "signin:sms", NOW) is None
    end = NOW + timedelta(seconds=app.config["PORTAL_OTP_SECONDS"])
    assert otp_codes.pending_destination(m, PURPOSE, end - SECOND) == "alice@example.com"
    assert otp_codes.pending_destination(m, PURPOSE, end) is None
    for _ in range(4):
        otp_codes.check(m, PURPOSE, other(code), NOW)
    assert otp_codes.pending_destination(m, PURPOSE, NOW) == "alice@example.com"  # one try left
    otp_codes.check(m, PURPOSE, other(code), NOW)
    assert otp_codes.pending_destination(m, PURPOSE, NOW) is None
    code = send(m, now=NOW + timedelta(minutes=1))
    assert otp_codes.check(m, PURPOSE, code, NOW + timedelta(minutes=1))[0] is Status.OK
    assert otp_codes.pending_destination(m, PURPOSE, NOW + timedelta(minutes=1)) is None


def test_a_refusal_carries_only_what_its_reason_needs():
    refused = SendRefused(Refusal.SITE_CAP)
    assert (refused.reason, refused.seconds, refused.until) == (Refusal.SITE_CAP, 0, None)
    assert str(refused) == "site-cap"
    locked = SendRefused(Refusal.LOCKED, until=NOW)
    assert locked.until == NOW and str(locked) == "locked"


@pytest.mark.parametrize(
    ("after", "wait"), [(0, 60), (1, 59), (30.5, 30), (59, 1), (59.5, 1), (59.999999, 1)]
)
def test_a_resend_waits_60_seconds_rounded_up(ctx, member, after, wait):
    m = get_member(member)
    send(m)
    with pytest.raises(SendRefused) as too_soon:
        send(m, now=NOW + timedelta(seconds=after))
    assert too_soon.value.reason is Refusal.TOO_SOON and too_soon.value.seconds == wait
    assert otp_codes.resend_wait(m, PURPOSE, NOW + timedelta(seconds=after)) == wait


def test_the_resend_wait_is_per_purpose_and_ends_at_sixty_seconds(ctx, member):
    m = get_member(member)
    assert otp_codes.resend_wait(m, PURPOSE, NOW) == 0
    send(m)
    assert otp_codes.resend_wait(m, "setup:email", NOW) == 0
    assert otp_codes.resend_wait(m, PURPOSE, NOW + timedelta(seconds=60)) == 0
    assert otp_codes.resend_wait(m, PURPOSE, NOW + timedelta(seconds=61)) == 0


def test_the_day_of_the_daily_cap_ends_at_its_exact_instant(app, ctx, member):
    app.config.update(PORTAL_EMAIL_MEMBER_DAILY_LIMIT=1)
    m = get_member(member)
    send(m)
    day = timedelta(days=1)
    with pytest.raises(SendRefused) as capped:
        send(m, now=NOW + day - timedelta(microseconds=1))
    assert capped.value.reason is Refusal.MEMBER_CAP
    send(m, now=NOW + day)  # the first send is exactly a day old: no longer counted


def test_sms_and_email_caps_are_counted_apart(app, ctx, member):
    app.config.update(PORTAL_SMS_MEMBER_DAILY_LIMIT=2, PORTAL_EMAIL_MEMBER_DAILY_LIMIT=3)
    m = get_member(member)
    for i in range(3):
        send(m, now=NOW + i * timedelta(minutes=1))
    for i in range(2):
        send(m, now=NOW + i * timedelta(minutes=1), purpose="signin:sms", channel="sms")
    later = NOW + timedelta(minutes=5)
    for purpose, channel in (("signin:sms", "sms"), (PURPOSE, "email")):
        with pytest.raises(SendRefused) as capped:
            send(m, now=later, purpose=purpose, channel=channel)
        assert capped.value.reason is Refusal.MEMBER_CAP


def test_the_member_cap_counts_only_the_members_own_sends(app, ctx, member):
    app.config.update(PORTAL_SMS_MEMBER_DAILY_LIMIT=1, PORTAL_SMS_DAILY_LIMIT=100)
    alice = get_member(member)
    bob = members.create("bob", email="bob@example.com", password="another password 1")
    send(bob, purpose="signin:sms", channel="sms")
    send(alice, purpose="signin:sms", channel="sms")
    with pytest.raises(SendRefused) as capped:
        send(alice, now=NOW + timedelta(minutes=1), purpose="signin:sms", channel="sms")
    assert capped.value.reason is Refusal.MEMBER_CAP


def test_the_site_wide_sms_cap_counts_every_members_sms_but_no_mail(app, ctx, member):
    """Toll fraud: many accounts each sending a few SMS. Mail costs nothing, so it is
    capped per member only."""
    app.config.update(PORTAL_SMS_DAILY_LIMIT=2, PORTAL_EMAIL_MEMBER_DAILY_LIMIT=20)
    alice = get_member(member)
    bob = members.create("bob", email="bob@example.com", password="another password 1")
    carol = members.create("carol", email="carol@example.com", password="another password 2")
    send(alice, purpose="signin:sms", channel="sms")
    for i in range(3):
        send(bob, now=NOW + i * timedelta(minutes=1))  # mail does not count
    send(bob, purpose="signin:sms", channel="sms")
    with pytest.raises(SendRefused) as capped:
        send(carol, purpose="signin:sms", channel="sms")
    assert capped.value.reason is Refusal.SITE_CAP
    send(carol)  # mail still goes out
    send(carol, now=NOW + timedelta(days=1), purpose="signin:sms", channel="sms")


def test_a_new_code_replaces_only_the_code_of_its_own_purpose(ctx, member):
    m = get_member(member)
    setup = send(m, purpose="setup:email")
    send(m)
    send(m, now=NOW + timedelta(minutes=1))
    assert otp_codes.check(m, "setup:email", setup, NOW + timedelta(minutes=1))[0] is Status.OK


def test_a_failed_send_voids_only_its_own_code(ctx, member, monkeypatch):
    m = get_member(member)
    setup = send(m, purpose="setup:email")

    def broken(*args, **kwargs):
        raise notify.DeliveryError("down")

    monkeypatch.setattr(otp_codes.notify, "send_email", broken)
    with pytest.raises(SendRefused):
        send(m)
    monkeypatch.undo()
    assert otp_codes.pending_destination(m, "setup:email", NOW) == "alice@example.com"
    assert otp_codes.check(m, "setup:email", setup, NOW)[0] is Status.OK


def test_sms_codes_go_by_sms_and_mail_by_mail(ctx, member, monkeypatch):
    sent = []
    monkeypatch.setattr(otp_codes.notify, "send_sms", lambda to, text: sent.append(("sms", to)))
    monkeypatch.setattr(
        otp_codes.notify, "send_email", lambda to, subject, text: sent.append(("email", to))
    )
    m = get_member(member)
    send(m, purpose="signin:sms", channel="sms")
    send(m)
    assert sent == [("sms", "+819012345678"), ("email", "alice@example.com")]


def test_a_code_is_stored_as_a_hash_bound_to_member_and_purpose(ctx, member, monkeypatch):
    """The same six digits for two members or two purposes are stored differently, so a
    copy of the table shows neither the code nor who got the same one."""
    monkeypatch.setattr(otp_codes.secrets, "randbelow", lambda n: 42)
    alice = get_member(member)
    bob = members.create("bob", email="bob@example.com", password="another password 1")
    send(alice), send(bob), send(alice, purpose="setup:email")
    hashes = list(db.session.scalars(db.select(OneTimeCode.code_hash)))
    assert len(set(hashes)) == 3 and "000042" not in "".join(hashes)


def test_racing_submissions_of_the_right_code_succeed_once(app, member, monkeypatch):
    """Two tabs submit the same emailed code. Both are held after their try is counted
    until both have been counted; then only one may mark it used."""
    with app.app_context():
        code = send(get_member(member))
    both_counted = threading.Barrier(2, timeout=30)
    real_six_digits = otp_codes.codes.six_digits

    def held(raw):
        both_counted.wait()
        return real_six_digits(raw)

    monkeypatch.setattr(otp_codes.codes, "six_digits", held)
    results = []

    def submit():
        with app.app_context():
            results.append(otp_codes.check(get_member(member), PURPOSE, code, NOW))

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results, key=lambda r: r[0].value) == [
        (Status.OK, "alice@example.com"),
        (Status.USED, None),
    ]
    with app.app_context():
        assert db.session.scalar(db.select(OneTimeCode)).used_at == NOW


def race_a_check_with(app, member, monkeypatch, typed, meanwhile, at):
    """Tab B checks ``typed``: B reads the code row, then ``meanwhile`` runs in tab A,
    then B counts its try. Returns what B's check returned (or raised)."""
    b_has_read, a_is_done = threading.Event(), threading.Event()
    real_latest = otp_codes._latest

    def latest(m, purpose):
        row = real_latest(m, purpose)
        if threading.current_thread().name == "B":
            b_has_read.set()
            assert a_is_done.wait(30)
        return row

    monkeypatch.setattr(otp_codes, "_latest", latest)
    results = {}

    def tab_a():
        with app.app_context():
            assert b_has_read.wait(30)
            meanwhile(get_member(member))
            a_is_done.set()

    def tab_b():
        with app.app_context():
            try:
                results["B"] = otp_codes.check(get_member(member), PURPOSE, typed, at)
            except Exception as exc:  # noqa: BLE001 - an error is the finding
                results["B"] = exc

    threads = [threading.Thread(target=tab_a, name="A"), threading.Thread(target=tab_b, name="B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    monkeypatch.setattr(otp_codes, "_latest", real_latest)
    return results["B"]


def test_a_code_used_while_another_request_was_reading_it_is_used(app, member, monkeypatch):
    """Two tabs submit the code; A uses it between B's read and B's try: B finds it
    used, not out of tries, and counts nothing."""
    with app.app_context():
        code = send(get_member(member))

    def use(m):
        assert otp_codes.check(m, PURPOSE, code, NOW) == (Status.OK, "alice@example.com")

    assert race_a_check_with(app, member, monkeypatch, code, use, NOW) == (Status.USED, None)
    with app.app_context():
        assert db.session.scalar(db.select(OneTimeCode)).tries == 1


def test_another_code_typed_while_the_code_was_being_used_finds_none(app, member, monkeypatch):
    with app.app_context():
        code = send(get_member(member))

    def use(m):
        assert otp_codes.check(m, PURPOSE, code, NOW)[0] is Status.OK

    raced = race_a_check_with(app, member, monkeypatch, other(code), use, NOW)
    assert raced == (Status.EXPIRED, None)


def test_a_code_discarded_while_another_request_was_checking_it_is_expired(
    app, member, monkeypatch
):
    """B submits the code while A voids it (the method is removed, or an address change
    begins): B must be told the code expired, not fail."""
    with app.app_context():
        code = send(get_member(member))

    def discard(m):
        otp_codes.discard(m, PURPOSE)

    assert race_a_check_with(app, member, monkeypatch, code, discard, NOW) == (
        Status.EXPIRED,
        None,
    )


def test_a_code_replaced_while_another_request_was_checking_it_is_expired(app, member, monkeypatch):
    """B submits the old code while A asks for a new one (which deletes the old): B's
    old code has expired, and the new code has all its tries left."""
    with app.app_context():
        old_code = send(get_member(member))
    resend_at = NOW + timedelta(seconds=61)

    def resend(m):
        send(m, now=resend_at)

    result = race_a_check_with(app, member, monkeypatch, old_code, resend, resend_at)
    with app.app_context():
        tries = db.session.scalar(db.select(OneTimeCode)).tries
    assert (result, tries) == ((Status.EXPIRED, None), 0)


def test_wrong_tries_at_one_code_leave_the_others_tries(ctx, member):
    m = get_member(member)
    setup = send(m, purpose="setup:email")
    signin = send(m)
    for _ in range(5):
        otp_codes.check(m, PURPOSE, other(signin), NOW)
    assert otp_codes.check(m, PURPOSE, signin, NOW)[0] is Status.EXHAUSTED
    tries = {row.purpose: row.tries for row in db.session.scalars(db.select(OneTimeCode))}
    assert tries == {"setup:email": 0, PURPOSE: 5}
    assert otp_codes.check(m, "setup:email", setup, NOW)[0] is Status.OK


def test_a_resend_deletes_the_old_code(ctx, member):
    """Only the latest code per member and purpose is stored, not merely preferred."""
    m = get_member(member)
    send(m)
    send(m, now=NOW + timedelta(minutes=1))
    send(m, now=NOW + timedelta(minutes=2))
    rows = list(db.session.scalars(db.select(OneTimeCode)))
    assert [row.created_at for row in rows] == [NOW + timedelta(minutes=2)]


def test_the_site_wide_sms_day_ends_at_its_exact_instant(app, ctx, member):
    app.config.update(PORTAL_SMS_DAILY_LIMIT=1, PORTAL_SMS_MEMBER_DAILY_LIMIT=100)
    alice = get_member(member)
    bob = members.create("bob", email="bob@example.com", password="another password 1")
    send(alice, purpose="signin:sms", channel="sms")
    day = timedelta(days=1)
    with pytest.raises(SendRefused) as capped:
        send(bob, now=NOW + day - timedelta(microseconds=1), purpose="signin:sms", channel="sms")
    assert capped.value.reason is Refusal.SITE_CAP
    send(bob, now=NOW + day, purpose="signin:sms", channel="sms")
