"""The sign-in path after its round of fewer queries, commits and Redis round trips:
what must still hold under races and across requests (on SQLite and PostgreSQL).

- one app code (time step) signs in once when two browsers send it at the same moment,
  and the refused one is audited as a replay;
- a copy of a pending cookie raced with the original completes the sign-in once, now
  that what spends it (the member's new last second step) is committed with the audit
  row instead of on its own;
- a late copy stays refused while new sign-ins of the same member go through;
- an operator's reset racing an accepted code leaves one whole outcome, no deadlock;
- a member's methods, read with the member, follow every change of the request, keep
  members apart and are not carried into the next request;
- the password step looks the typed ID up once and still costs one argon2 check;
- Redis counts every rule of a check once, with the window limits itself would give.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from conftest import NOW, PASSWORD, built_app, enrol_app, get_member
from redis_server import redis_server  # noqa: F401  (fixture)
from sqlalchemy import func, insert
from sqlalchemy.exc import OperationalError

from portal import audit, members, sessions, throttle, twofactor
from portal.extensions import db, limiter
from portal.models import AuditEvent, ContactMethod, Member, TotpCredential
from portal.twofactor import crypto, lockout, recovery

WRONG = "認証コードが正しくありません。"
HOLD = 0.5  # seconds a racer is held once the other one is on its way
TIMEOUT = 20


def events(app, name: str) -> int:
    with app.app_context():
        return db.session.scalar(
            db.select(func.count(AuditEvent.id)).where(AuditEvent.event == name)
        )


def pending_client(app, login_id: str = "alice", password: str = PASSWORD):
    client = app.test_client()
    response = client.post("/login", data={"login_id": login_id, "password": password})
    assert response.location == "/login/verify", response.text
    return client


def race(first, second, held: threading.Event, release: threading.Event, arrived=None):
    """Run ``first`` until it sets ``held`` (it then waits for ``release``), start
    ``second``, give it time to reach what ``first`` holds (until ``arrived`` is set, or
    HOLD), release ``first``; both results (an exception in either is re-raised)."""
    results: list = [None, None]
    errors: list[BaseException] = []

    def run(i, job):
        try:
            results[i] = job()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)
            held.set()  # a failed first racer must not keep the second waiting

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate((first, second))]
    threads[0].start()
    assert held.wait(TIMEOUT)
    threads[1].start()
    if arrived is not None:
        arrived.wait(HOLD)  # on SQLite the second waits for the first's lock before it
    time.sleep(HOLD)  # the second is now waiting on the first's rows (or SQLite's lock)
    release.set()
    for thread in threads:
        thread.join(timeout=TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a racer never finished"
    if errors:
        raise errors[0]
    return results


# --- one app code, two requests at once ---------------------------------------------------


def test_one_app_code_sent_by_two_browsers_at_once_signs_in_once(
    app, member_with_totp, monkeypatch
):
    """The first request has spent the time step but not committed it yet (its success
    is committed with it) when the second sends the same code: the second is refused as
    a replay, shown the wrong-code message and audited."""
    _, totp_obj, _ = member_with_totp
    first, second = pending_client(app), pending_client(app)
    code = totp_obj.now()
    held, second_counting, release = threading.Event(), threading.Event(), threading.Event()
    real_success, real_reserve = lockout.record_success, lockout.reserve
    lock = threading.Lock()

    def held_success(member, now, **options):
        with lock:
            hold = not held.is_set()
            held.set()
        if hold:
            release.wait(TIMEOUT)  # the spent step is written, not yet committed
        return real_success(member, now, **options)

    def reserve(*args, **options):
        if held.is_set():
            second_counting.set()  # it has read its pending sign-in: the race is on
        return real_reserve(*args, **options)

    monkeypatch.setattr(lockout, "record_success", held_success)
    monkeypatch.setattr(lockout, "reserve", reserve)
    won, lost = race(
        lambda: first.post("/login/verify", data={"code": code}),
        lambda: second.post("/login/verify", data={"code": code}),
        held,
        release,
        arrived=second_counting,
    )
    assert won.status_code == 302 and won.location == "/", won.text[:500]
    assert lost.status_code == 200 and WRONG in lost.text
    assert first.get("/").status_code == 200
    # The first one's success spent every sign-in waiting for a second step before it.
    assert second.get("/").location == "/login?next=/"
    assert events(app, "signin.success") == 1
    assert events(app, "signin.code_replayed") == 1


# --- a copy of the pending cookie, raced ---------------------------------------------------


def test_a_copied_pending_cookie_raced_with_its_original_signs_in_once(
    app, member_with_totp, monkeypatch
):
    """The original completes with the app code and is held after writing its success
    (the member's new last second step, which spends the pending sign-in), before the
    audit row's commit that carries it; the copy completes its own second step (a
    recovery code) meanwhile. Only the original is signed in."""
    _, totp_obj, codes = member_with_totp
    original = pending_client(app)
    copy = app.test_client()
    copy.set_cookie("portal_session", original.get_cookie("portal_session").value)
    held, copy_counting, release = threading.Event(), threading.Event(), threading.Event()
    real_success, real_reserve = lockout.record_success, lockout.reserve
    racer = threading.local()

    def success(member, now, **options):
        written = real_success(member, now, **options)
        if getattr(racer, "original", False):
            held.set()
            release.wait(TIMEOUT)  # the success is written, not committed
        return written

    def reserve(*args, **options):
        if not getattr(racer, "original", False):
            copy_counting.set()  # before it waits on the original's rows (or SQLite's lock)
        return real_reserve(*args, **options)

    monkeypatch.setattr(lockout, "record_success", success)
    monkeypatch.setattr(lockout, "reserve", reserve)

    def complete_original():
        racer.original = True
        return original.post("/login/verify", data={"code": totp_obj.now()})

    signed_in, refused = race(
        complete_original,
        lambda: copy.post("/login/recovery", data={"recovery_code": codes[0]}),
        held,
        release,
        arrived=copy_counting,
    )
    assert signed_in.status_code == 302 and signed_in.location == "/", signed_in.text[:500]
    assert refused.status_code == 302 and refused.location == "/login", refused.text[:500]
    assert original.get("/").status_code == 200
    assert copy.get("/").status_code == 302
    assert copy.get("/settings/2fa").status_code == 302
    assert events(app, "signin.success") == 1


def test_a_failed_sign_in_commit_signs_nobody_in_and_a_copy_once_at_most(
    app, member_with_totp, monkeypatch
):
    """The database fails the commit that carries the audit row and the success of a
    completed second step (SQLite's lock wait running out, a dropped PostgreSQL
    connection): that browser gets the error page and is not signed in (the commit comes
    before the sign-in; it used to be signed in with the mark lost). Nothing was spent, so
    the pending sign-in completes once afterwards, in one browser only: a copy of the
    cookie that completes it leaves the original refused."""
    _, totp_obj, codes = member_with_totp
    app.config["PROPAGATE_EXCEPTIONS"] = False  # the error page, as in production
    original = pending_client(app)
    copy = app.test_client()
    copy.set_cookie("portal_session", original.get_cookie("portal_session").value)
    real_record = audit.record
    failed = []

    def record(event, **detail):
        if event == "signin.success" and not failed:
            failed.append(event)
            raise OperationalError("COMMIT", {}, Exception("database is locked"))
        return real_record(event, **detail)

    monkeypatch.setattr(audit, "record", record)
    assert original.post("/login/verify", data={"code": totp_obj.now()}).status_code == 500
    assert original.get("/").status_code == 302  # not signed in
    assert copy.post("/login/recovery", data={"recovery_code": codes[0]}).location == "/"
    assert copy.get("/").status_code == 200
    again = original.post("/login/recovery", data={"recovery_code": codes[1]})
    assert again.location == "/login", again.location
    assert original.get("/").status_code == 302


# --- a copy used late ------------------------------------------------------------------


def test_a_late_copy_stays_refused_while_new_sign_ins_go_through(
    app, member_with_totp, monkeypatch
):
    """A pending sign-in is spent by the member's next passed second step, so its copy is
    refused for the rest of the cookie's life, while a new sign-in of the same member
    (and another member's) completes as usual: no mark per sign-in is kept anywhere."""
    _, totp_obj, _ = member_with_totp
    with app.app_context():
        bob = members.create("bob", email="bob@example.com", password=PASSWORD)
        bob_app = enrol_app(bob)
    start = datetime.now(UTC)
    clock = [start]
    monkeypatch.setattr(sessions, "now", lambda: clock[0])
    lifetime = app.config["PORTAL_PENDING_SECONDS"]

    original = pending_client(app)
    pending_cookie = original.get_cookie("portal_session").value
    assert original.post("/login/verify", data={"code": totp_obj.at(start)}).location == "/"

    def copy_refused() -> bool:
        copy = app.test_client()
        copy.set_cookie("portal_session", pending_cookie)
        response = copy.post("/login/verify", data={"code": totp_obj.at(clock[0])})
        return response.location == "/login" and copy.get("/").status_code == 302

    clock[0] = start + timedelta(seconds=lifetime - 5)  # just before the cookie expires
    assert copy_refused()
    later = pending_client(app)  # alice again, from another browser
    assert later.post("/login/verify", data={"code": totp_obj.at(clock[0])}).location == "/"
    bob_client = pending_client(app, "bob")
    assert bob_client.post("/login/verify", data={"code": bob_app.at(clock[0])}).location == "/"
    assert copy_refused()
    assert events(app, "signin.success") == 3  # alice twice, bob once


# --- an operator's reset racing a sign-in -------------------------------------------------


def test_a_reset_racing_an_accepted_code_waits_for_it_and_removes_everything(
    app, member_with_totp, monkeypatch
):
    """The code's spent step is written (its row held) when the operator's reset starts:
    the reset waits, then removes the method; no deadlock, nothing half done."""
    member_id, totp_obj, _ = member_with_totp
    held, release = threading.Event(), threading.Event()
    real_success = lockout.record_success

    def held_success(member, now, **options):
        held.set()
        release.wait(TIMEOUT)
        return real_success(member, now)

    monkeypatch.setattr(lockout, "record_success", held_success)

    def sign_in():
        with app.app_context():
            return twofactor.verify_code(get_member(member_id), totp_obj.at(NOW), NOW)

    def reset():
        with app.app_context():
            return twofactor.reset_all(get_member(member_id), now=NOW)

    attempt, removed = race(sign_in, reset, held, release)
    assert attempt.ok and removed == ["app"]
    with app.app_context():
        m = get_member(member_id)
        assert twofactor.enabled_methods(m) == [] and recovery.remaining(m) == 0
        assert (m.tfa_failures, m.tfa_streak, m.tfa_blocked_at) == (0, 0, None)
        assert m.tfa_reset_at is not None and m.preferred_method is None


def test_a_sign_in_racing_an_uncommitted_reset_is_refused_after_it(app, member_with_totp):
    """The reset has removed the app (its rows held) when a code arrives: the code waits
    and then finds no app to accept it."""
    member_id, totp_obj, _ = member_with_totp
    held, release = threading.Event(), threading.Event()

    def reset():
        with app.app_context():
            removed = twofactor.reset_all(get_member(member_id), now=NOW, commit=False)
            held.set()
            release.wait(TIMEOUT)
            db.session.commit()
            return removed

    def sign_in():
        with app.app_context():
            return twofactor.verify_code(get_member(member_id), totp_obj.at(NOW), NOW)

    removed, attempt = race(reset, sign_in, held, release)
    assert removed == ["app"] and not attempt.ok
    with app.app_context():
        m = get_member(member_id)
        assert twofactor.enabled_methods(m) == []
        assert lockout.current_lock(m, NOW) is None and m.tfa_blocked_at is None


# --- a member's methods, read with the member ----------------------------------------


def test_methods_read_in_a_request_follow_its_changes_and_keep_members_apart(app, member_with_totp):
    member_id, _, _ = member_with_totp
    with app.app_context():
        bob_id = members.create("bob", email="bob@example.com", password=PASSWORD).id
    with app.test_request_context("/settings/2fa"):
        alice, bob = get_member(member_id), get_member(bob_id)
        assert twofactor.enabled_methods(alice) == ["app"]
        assert twofactor.enabled_methods(bob) == []  # not alice's answer
        assert twofactor.has_two_factor(alice) and not twofactor.has_two_factor(bob)

        twofactor.disable_method(alice, "app")
        assert twofactor.enabled_methods(alice) == [] and not twofactor.has_two_factor(alice)

        # A method written in this request's transaction, not committed yet, and gone again
        # with its rollback.
        db.session.execute(
            insert(ContactMethod).values(
                member_id=bob_id, kind="email", created_at=NOW, last_used_at=NOW
            )
        )
        assert twofactor.enabled_methods(bob) == ["email"]
        db.session.rollback()
        assert twofactor.enabled_methods(bob) == []


def test_methods_remembered_by_a_request_are_not_carried_into_the_next(app, member_with_totp):
    member_id, _, _ = member_with_totp
    with app.test_request_context("/"):
        assert twofactor.enabled_methods(get_member(member_id)) == ["app"]
        # Another request (another worker) turns the app off meanwhile.
        other = threading.Thread(target=lambda: disable_app_elsewhere(app, member_id))
        other.start()
        other.join(timeout=TIMEOUT)
    with app.test_request_context("/"):
        assert twofactor.enabled_methods(get_member(member_id)) == []


def disable_app_elsewhere(app, member_id: int) -> None:
    with app.app_context():
        twofactor.disable_method(get_member(member_id), "app")


# --- the password step ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("login_id", "password"),
    [("nobody", PASSWORD), ("x", PASSWORD), ("alice", "wrong password!!"), ("alice", PASSWORD)],
)
def test_each_password_step_costs_one_hash_check_and_keeps_the_password_out(
    app, client, member, hash_checks, caplog, login_id, password
):
    """An unknown or malformed ID, a wrong password and the right one: one argon2
    verification each (no enumeration by timing), and what was typed as the password
    reaches neither the audit log nor the application log."""
    caplog.set_level("DEBUG")
    client.post("/login", data={"login_id": login_id, "password": password})
    assert len(hash_checks) == 1
    with app.app_context():
        details = db.session.scalars(db.select(AuditEvent)).all()
        assert details, "the attempt was not audited"
        for row in details:
            assert password not in f"{row.detail} {row.subject_label} {row.actor_label}"
    assert password not in caplog.text


# --- rate limits in Redis ----------------------------------------------------------------


@pytest.fixture
def redis_app(database_url, redis_server, request):  # noqa: F811
    redis_server.flushall()
    config = {
        "REDIS_URL": redis_server.url,
        "PORTAL_LIMIT_VERIFY": "5 per minute;8 per hour;20 per day",
    }
    with built_app(database_url, **config | getattr(request, "param", {})) as app:
        yield app


def counters(redis_server, address: str) -> dict[str, tuple[int, int]]:  # noqa: F811
    """Each counter key of ``address``: (its count, seconds it has left)."""
    client = redis_server.client()
    return {
        key.replace(address, "ADDR"): (int(client.get(key)), client.ttl(key))
        for key in client.keys(f"*{address}*")
    }


def test_one_check_counts_each_rule_once_with_the_window_limits_gives(
    redis_app,
    redis_server,  # noqa: F811
):
    """Through the portal's one round trip and through limits rule by rule (another
    address), the same counters: one per rule, each expiring with its own window."""
    with redis_app.test_request_context("/", environ_base={"REMOTE_ADDR": "192.0.2.1"}):
        assert throttle.hit("PORTAL_LIMIT_VERIFY", "verify", "192.0.2.1") is None
        throttle.record("PORTAL_LIMIT_VERIFY", "verify", "192.0.2.1")
        for item in throttle._rules("PORTAL_LIMIT_VERIFY"):
            for _ in range(2):
                limiter.limiter.hit(item, "verify", "192.0.2.2")
    ours, theirs = counters(redis_server, "192.0.2.1"), counters(redis_server, "192.0.2.2")
    assert sorted(ours) == sorted(theirs) and len(ours) == 3
    for key, (count, left) in ours.items():
        assert count == theirs[key][0] == 2, key
        assert abs(left - theirs[key][1]) <= 1, key
    assert sorted(left for _, left in ours.values()) == pytest.approx([60, 3600, 86400], abs=2)


def test_the_fifth_check_is_the_last_and_every_rule_went_on_counting(
    redis_app,
    redis_server,  # noqa: F811
):
    with redis_app.test_request_context("/", environ_base={"REMOTE_ADDR": "192.0.2.1"}):
        waits = [throttle.hit("PORTAL_LIMIT_VERIFY", "verify", "192.0.2.1") for _ in range(7)]
    assert waits[:5] == [None] * 5 and all(1 <= w <= 60 for w in waits[5:])
    # The refused checks were counted too, on every rule (the windows stay honest).
    assert sorted(count for count, _ in counters(redis_server, "192.0.2.1").values()) == [7] * 3


@pytest.mark.parametrize("redis_app", [{"RATELIMIT_STRATEGY": "moving-window"}], indirect=True)
def test_a_moving_window_storage_is_counted_by_limits_itself(redis_app):
    with redis_app.test_request_context("/", environ_base={"REMOTE_ADDR": "192.0.2.1"}):
        waits = [throttle.hit("PORTAL_LIMIT_VERIFY", "verify", "192.0.2.1") for _ in range(6)]
        assert waits[:5] == [None] * 5 and waits[5] is not None
        for item in throttle._rules("PORTAL_LIMIT_VERIFY"):
            stats = limiter.limiter.get_window_stats(item, "verify", "192.0.2.1")
            assert stats.remaining == item.amount - min(6, item.amount)


def test_without_redis_the_password_step_fails_closed(database_url, tmp_path, monkeypatch):
    no_redis = f"unix://{tmp_path}/no-redis.sock"
    with built_app(database_url, PROPAGATE_EXCEPTIONS=False, REDIS_URL=no_redis) as app:
        with app.app_context():
            members.create("alice", email="alice@example.com", password=PASSWORD)
        checked = []
        monkeypatch.setattr(members, "authenticate_member", lambda *a: checked.append(a))
        client = app.test_client()
        response = client.post("/login", data={"login_id": "alice", "password": PASSWORD})
        assert response.status_code == 500 and not checked
        assert client.get("/").status_code == 302


def test_methods_read_in_a_request_follow_a_change_not_yet_flushed(app, member_with_totp):
    """A method added or removed through the ORM and not yet flushed is seen by the next
    read of the member's methods in the same request (the remembered answer would be
    stale: the query's autoflush is what brings the change in)."""
    with app.test_request_context("/"):
        alice = members.find("alice")
        assert twofactor.enabled_methods(alice) == ["app"]
        with db.session.no_autoflush:
            db.session.add(ContactMethod(member_id=alice.id, kind="email", created_at=NOW))
        assert twofactor.enabled_methods(alice) == ["app", "email"]
        db.session.rollback()


# --- review of the one-write app code (fast path) ---------------------------------------


def test_an_app_code_used_to_re_authenticate_is_spent_and_resets_the_counters(
    app, member_with_totp
):
    """Review finding: the fast path left its writes to a commit only sign-in makes, so
    re-authentication spent nothing: the same code worked again, for re-authentication
    and for a sign-in."""
    member_id, totp_obj, _ = member_with_totp
    client = app.test_client()
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    assert client.post("/login/verify", data={"code": totp_obj.now()}).location == "/"
    with app.app_context():
        db.session.execute(db.update(Member).values(tfa_failures=3, tfa_streak=3))
        db.session.commit()
    later = time.time() + 30
    code = totp_obj.at(later)  # the next step's code: not used by the sign-in
    with client.session_transaction() as s:
        s["tfa_at"] -= 11 * 60
    assert client.post("/settings/reauth", data={"code": code}).status_code == 302
    with app.app_context():
        m = get_member(member_id)
        assert (m.tfa_failures, m.tfa_streak) == (0, 0)
        assert m.totp.last_step == int(later) // 30
    with client.session_transaction() as s:
        s["tfa_at"] -= 11 * 60
    again = client.post("/settings/reauth", data={"code": code})
    assert again.status_code == 200 and WRONG in again.text
    other = pending_client(app)
    refused = other.post("/login/verify", data={"code": code})
    assert refused.status_code == 200 and WRONG in refused.text


def test_a_right_app_code_with_a_full_counter_is_not_checked_and_spends_nothing(
    app, member_with_totp
):
    """Review finding: the fast path checked a code for a member whose counter was full
    but not yet locked (10 attempts reserved, still in flight): a guess past the limit
    was checked uncounted, and the owner's step spent. Now it takes the counted path:
    locked, the step left alone."""
    member_id, totp_obj, _ = member_with_totp
    client = pending_client(app)
    limit = app.config["PORTAL_TFA_MAX_FAILURES"]
    with app.app_context():
        before = get_member(member_id).totp.last_step
        db.session.execute(db.update(Member).values(tfa_failures=limit, tfa_streak=limit))
        db.session.commit()
    response = client.post("/login/verify", data={"code": totp_obj.now()})
    assert response.status_code == 429, response.status_code
    assert client.get("/").location == "/login/verify"  # not signed in
    with app.app_context():
        m = get_member(member_id)
        assert m.totp.last_step == before
        assert m.tfa_locked_until is not None


def test_a_code_of_an_app_replaced_after_the_member_was_read_is_refused(app, member_with_totp):
    """Review finding: the fast path spent the step of the secret read at the start of the
    request; an app replaced meanwhile (by the owner, in another request) let the old
    phone's code through. The step is spent only for the secret still stored."""
    member_id, totp_obj, _ = member_with_totp
    with app.test_request_context("/login/verify"):
        m, _ = members.load_with_policy(Member.id == member_id)
        assert m.totp is not None  # read with the member, as the request does
        with db.engine.begin() as other_request:
            other_request.execute(
                db.update(TotpCredential)
                .where(TotpCredential.member_id == member_id)
                .values(secret_encrypted=crypto.secret_box().encrypt(pyotp.random_base32()))
            )
        result = twofactor.verify_code(m, totp_obj.now(), datetime.now(UTC))
        assert result.outcome is not twofactor.Outcome.OK
        db.session.rollback()
