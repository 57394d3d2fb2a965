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
    assert otp_codes.check(m, PURPOSE, code, NOW) == (Status.EXPIRED, None)


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
