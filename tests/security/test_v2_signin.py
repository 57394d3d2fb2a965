"""OWASP ASVS 4.0.3, V2 Authentication: sign-in attacks, performed over HTTP.

Each test name carries the ASVS item it proves (``v2_8_4`` is 2.8.4). The attacker
knows member IDs, may hold a password, another member's codes or an old code, and
talks to the portal only through its URLs."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest
from argon2 import PasswordHasher
from attack_helpers import (
    HARMFUL_FORM,
    SECOND_STEP_URLS,
    add_member,
    audit_count,
    every_route,
    member_state,
    sign_in,
)
from conftest import PASSWORD
from mail_server import body_text

from portal import members
from portal.extensions import db
from portal.models import ContactMethod

WRONG_CODE = "認証コードが正しくありません。"
WRONG_RECOVERY = "リカバリーコードが正しくないか、既に使用されています。"
BAD_LOGIN = "ログインIDまたはパスワードが正しくありません。"
TOO_MANY = "ログインの試行回数が多すぎます。"
ALICE_PHONE, BOB_PHONE = "+819012345678", "+819087654321"
LOGIN_ERROR = re.compile(r'<p id="login-error"[^>]*>.*?</p>', re.S)


@pytest.fixture
def alice(app):
    return add_member(app, "alice", name="Alice", phone=ALICE_PHONE)


@pytest.fixture
def bob(app):
    return add_member(app, "bob", name="Bob", phone=BOB_PHONE)


def still_pending(client) -> bool:
    response = client.get("/")
    return response.status_code == 302 and response.location == "/login/verify"


def signed_in_as(client, name: str) -> bool:
    response = client.get("/")
    return response.status_code == 200 and f"{name}さん、ようこそ" in response.text


def attempt(app, login_id: str, password: str):
    """One password attempt from a browser that never visited before."""
    return app.test_client().post("/login", data={"login_id": login_id, "password": password})


# --- 2.2.1 user enumeration -------------------------------------------------------------

ENUMERATION_ATTEMPTS = [
    ("nobody", PASSWORD),  # unknown ID, a password someone uses
    ("nobody", "wrong password"),  # unknown ID
    ("NoBody.Else-1", "wrong password"),  # unknown ID, every allowed character
    ("no body!", "wrong password"),  # not even a valid ID
    ("alice", "wrong password"),  # known ID with an app, wrong password
    ("ALICE", "wrong password"),  # known ID in other case
    ("carol", "wrong password"),  # known ID without 2FA
]


def test_v2_2_1_unknown_id_and_wrong_password_give_the_same_answer(app, alice):
    """The error text is byte-identical and so is the rest of the page, but for the ID
    typed back into its field and the CSRF token (it carries a timestamp)."""
    add_member(app, "carol", app_2fa=False)
    seen = {}
    for login_id, password in ENUMERATION_ATTEMPTS:
        response = attempt(app, login_id, password)
        errors = LOGIN_ERROR.findall(response.text)
        assert len(errors) == 1, (login_id, response.text)
        page = response.text.replace(f'value="{login_id}"', 'value="ID"')
        page = re.sub(r'name="csrf-token" content="[^"]+"', "", page)
        page = re.sub(r'name="csrf_token" value="[^"]+"', "", page)
        seen[login_id, password] = (
            response.status_code,
            errors[0],
            page,
            sorted(
                set_cookie.split("=")[0] for set_cookie in response.headers.getlist("Set-Cookie")
            ),
            response.location,
        )
    first = next(iter(seen.values()))
    assert first[0] == 200 and BAD_LOGIN in first[1] and first[4] is None
    for key, answer in seen.items():
        assert answer == first, key


@pytest.mark.parametrize(
    ("login_id", "password", "outcome"),
    [
        ("nobody", "wrong password", "refused"),
        ("no body!", "wrong password", "refused"),
        ("x" * 100, "wrong password", "refused"),
        ("alice", "wrong password", "refused"),
        ("carol", "wrong password", "refused"),
        ("carol", PASSWORD, "/"),
        ("alice", PASSWORD, "/login/verify"),
    ],
)
def test_v2_2_1_every_attempt_costs_exactly_one_hash_check(
    app, alice, monkeypatch, login_id, password, outcome
):
    """An unknown ID is checked against a dummy hash: its cost (and so its timing)
    matches a wrong password, and a right password costs no extra check."""
    add_member(app, "carol", app_2fa=False)
    attempt(app, "warm-up", "wrong password")  # the dummy hash is made once per process
    verified = []
    real_verify = PasswordHasher.verify

    def counting_verify(self, stored, typed):
        verified.append(stored)
        return real_verify(self, stored, typed)

    monkeypatch.setattr(PasswordHasher, "verify", counting_verify)
    response = attempt(app, login_id, password)
    assert len(verified) == 1, verified
    if outcome == "refused":
        assert response.status_code == 200 and BAD_LOGIN in response.text
    else:
        assert response.location == outcome


@pytest.mark.settings(
    RATELIMIT_ENABLED=True,
    PORTAL_LIMIT_LOGIN_ADDRESS="1000 per minute",
    PORTAL_LIMIT_LOGIN_ACCOUNT_ADDRESS="3 per minute",
    PORTAL_LIMIT_LOGIN_ACCOUNT="1000 per minute",
)
def test_v2_2_1_the_throttle_tells_nothing_about_the_id_or_the_password(app, alice, monkeypatch):
    """Over the per-account limit, an unknown ID, a wrong password and even the right
    password get the same answer, and none of them costs a hash check (no oracle)."""
    client = app.test_client()
    for login_id in ("nobody", "alice"):
        for _ in range(3):
            response = client.post("/login", data={"login_id": login_id, "password": "wrong"})
            assert response.status_code == 200 and BAD_LOGIN in response.text
    verified = []
    real_verify = PasswordHasher.verify
    monkeypatch.setattr(
        PasswordHasher, "verify", lambda self, h, p: verified.append(h) or real_verify(self, h, p)
    )
    answers = []
    for login_id, password in (("nobody", "wrong"), ("alice", "wrong"), ("alice", PASSWORD)):
        response = client.post("/login", data={"login_id": login_id, "password": password})
        error = LOGIN_ERROR.findall(response.text)
        answers.append((response.status_code, error, "Retry-After" in response.headers))
    assert answers[0][0] == 429 and TOO_MANY in answers[0][1][0] and answers[0][2]
    assert answers[0] == answers[1] == answers[2]
    assert verified == []
    assert client.get("/").location.startswith("/login")  # not even pending


# --- 2.2.7 the second step is required ----------------------------------------------------


def test_v2_2_7_a_pending_sign_in_cannot_skip_the_second_step(app, client, alice):
    """With the password alone: every URL, every way of choosing "no method", the
    password again, duplicated fields. The member stays pending and unchanged."""
    before = member_state(app, "alice")
    assert client.post("/login", data={"login_id": "alice", "password": PASSWORD}).location == (
        "/login/verify"
    )
    for method, url in every_route(app):
        if url not in SECOND_STEP_URLS:
            client.open(url, method=method, data=HARMFUL_FORM)
    for choice in ("recovery", "password", "none", "", "app\x00", "email", "sms", "APP"):
        response = client.post("/login/method", data={"method": choice})
        assert response.location == "/login/verify", choice
        assert still_pending(client), choice
    # The password again only starts another pending sign-in.
    assert client.post("/login", data={"login_id": "alice", "password": PASSWORD}).location == (
        "/login/verify"
    )
    for data in (
        {},
        {"code": ""},
        {"code": "000000"},
        {"code": ["000000", alice.code()]},  # only the first value counts
        {"recovery_code": alice.codes[0]},  # the recovery field on the code page
    ):
        response = client.post("/login/verify", data=data)
        assert response.status_code == 200 and WRONG_CODE in response.text, data
        assert still_pending(client), data
    for data in ({"recovery_code": ""}, {"code": alice.codes[0]}, {"recovery_code": "*"}):
        response = client.post("/login/recovery", data=data)
        assert response.status_code == 200 and WRONG_RECOVERY in response.text, data
        assert still_pending(client), data
    after = member_state(app, "alice")
    assert after == before
    # The test can fail: the real second step does sign in.
    assert client.post("/login/verify", data={"code": alice.code()}).location == "/"
    assert signed_in_as(client, "Alice")


# --- 2.6.1 recovery codes -----------------------------------------------------------------


def test_v2_6_1_a_recovery_code_signs_in_once_in_any_spelling(app, alice):
    code = alice.codes[0]
    first = app.test_client()
    first.post("/login", data={"login_id": "alice", "password": PASSWORD})
    assert first.post("/login/recovery", data={"recovery_code": code}).location == "/"
    assert signed_in_as(first, "Alice")
    assert member_state(app, "alice")["unused_recovery_codes"] == 9
    first.post("/logout")
    for spelling in (
        code,
        code.upper(),
        code.replace("-", ""),
        f"  {code}  ",
        code.replace("-", " "),
    ):
        again = app.test_client()
        again.post("/login", data={"login_id": "alice", "password": PASSWORD})
        response = again.post("/login/recovery", data={"recovery_code": spelling})
        assert response.status_code == 200 and WRONG_RECOVERY in response.text, spelling
        assert still_pending(again), spelling
    # An unused code still works, so the refusals above were about the used one.
    fresh = app.test_client()
    fresh.post("/login", data={"login_id": "alice", "password": PASSWORD})
    assert fresh.post("/login/recovery", data={"recovery_code": alice.codes[1]}).location == "/"


def test_v2_6_1_a_recovery_code_spent_on_reauthentication_cannot_sign_in(app, client, alice):
    sign_in(client, alice)
    with client.session_transaction() as s:
        s["tfa_at"] -= 11 * 60  # the change below needs a fresh second step
    response = client.post("/settings/reauth", data={"code": alice.codes[0]})
    assert response.status_code == 302
    thief = app.test_client()
    thief.post("/login", data={"login_id": "alice", "password": PASSWORD})
    response = thief.post("/login/recovery", data={"recovery_code": alice.codes[0]})
    assert WRONG_RECOVERY in response.text and still_pending(thief)


def test_v2_6_1_another_members_recovery_code_does_not_sign_in(app, client, alice, bob):
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    for code in bob.codes[:3]:
        response = client.post("/login/recovery", data={"recovery_code": code})
        assert response.status_code == 200 and WRONG_RECOVERY in response.text
        assert still_pending(client)
    # Nothing of bob's was spent, and alice's own code works.
    assert member_state(app, "bob")["unused_recovery_codes"] == 10
    assert client.post("/login/recovery", data={"recovery_code": alice.codes[0]}).location == "/"
    assert signed_in_as(client, "Alice")
    other = app.test_client()
    other.post("/login", data={"login_id": "bob", "password": PASSWORD})
    assert other.post("/login/recovery", data={"recovery_code": bob.codes[0]}).location == "/"
    assert signed_in_as(other, "Bob")


# --- 2.7.3 email and SMS codes ------------------------------------------------------------


def enable_contact(app, login_id: str, kind: str) -> None:
    with app.app_context():
        m = members.find(login_id)
        db.session.add(ContactMethod(member_id=m.id, kind=kind, created_at=datetime.now(UTC)))
        m.preferred_method = kind
        db.session.commit()


def code_sent_to(kind: str, destination: str, smtp_server, sms_gateway) -> str:
    """The code in the last message that reached ``destination`` (waits a little)."""
    deadline = time.monotonic() + 5
    while True:
        if kind == "email":
            texts = [body_text(m) for m in smtp_server.messages if m["To"] == destination]
        else:
            texts = [r.json["text"] for r in sms_gateway.requests if r.json["to"] == destination]
        if texts or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert texts, f"nothing reached {destination}"
    return re.search(r"認証コード: (\d{6})", texts[-1]).group(1)


@pytest.mark.wired
@pytest.mark.parametrize("kind", ["email", "sms"])
def test_v2_7_3_another_members_code_does_not_sign_in(
    app, alice, bob, smtp_server, sms_gateway, kind
):
    """Both members are signing in at once; each was sent a code. Bob's code, typed
    into alice's pending sign-in, is wrong there and is not spent by the attempt."""
    for account in ("alice", "bob"):
        enable_contact(app, account, kind)
    alice_client, bob_client = app.test_client(), app.test_client()
    for client, login_id in ((alice_client, "alice"), (bob_client, "bob")):
        response = client.post("/login", data={"login_id": login_id, "password": PASSWORD})
        assert response.location == "/login/verify"
    where = {"email": ("alice@example.com", "bob@example.com"), "sms": (ALICE_PHONE, BOB_PHONE)}[
        kind
    ]
    alice_code = code_sent_to(kind, where[0], smtp_server, sms_gateway)
    bob_code = code_sent_to(kind, where[1], smtp_server, sms_gateway)
    assert alice_code != bob_code, "the two codes happened to match (1 in 10**6): rerun"
    response = alice_client.post("/login/verify", data={"code": bob_code})
    assert response.status_code == 200 and WRONG_CODE in response.text
    assert still_pending(alice_client)
    assert bob_client.post("/login/verify", data={"code": bob_code}).location == "/"
    assert signed_in_as(bob_client, "Bob")
    assert alice_client.post("/login/verify", data={"code": alice_code}).location == "/"
    assert signed_in_as(alice_client, "Alice")


@pytest.mark.wired
def test_v2_7_3_a_mailed_code_is_used_once(app, alice, smtp_server):
    """A second sign-in within a minute sends no new code (resend waits 60 s); the
    first one's code, already used, does not complete it."""
    enable_contact(app, "alice", "email")
    first = app.test_client()
    first.post("/login", data={"login_id": "alice", "password": PASSWORD})
    code = code_sent_to("email", "alice@example.com", smtp_server, None)
    assert first.post("/login/verify", data={"code": code}).location == "/"
    second = app.test_client()
    assert second.post("/login", data={"login_id": "alice", "password": PASSWORD}).location == (
        "/login/verify"
    )
    response = second.post("/login/verify", data={"code": code})
    assert response.status_code == 200 and "認証コード" in response.text
    assert still_pending(second)


# --- 2.8.2 / 2.8.4 / 2.8.5 app codes ------------------------------------------------------


def test_v2_8_2_another_members_app_code_does_not_sign_in(app, client, alice, bob):
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    for steps in (-1, 0, 1):
        response = client.post("/login/verify", data={"code": bob.code(steps)})
        if bob.code(steps) == alice.code(steps):  # one chance in a million
            continue
        assert response.status_code == 200 and WRONG_CODE in response.text
        assert still_pending(client)
    # Bob's codes were not spent by the attempts, and alice's own code works.
    bob_client = app.test_client()
    sign_in(bob_client, bob)
    assert signed_in_as(bob_client, "Bob")
    assert client.post("/login/verify", data={"code": alice.code()}).location == "/"
    assert signed_in_as(client, "Alice")


def test_v2_8_2_another_members_app_code_does_not_reauthenticate(app, client, alice, bob):
    sign_in(client, alice)
    with client.session_transaction() as s:
        s["tfa_at"] -= 11 * 60
    response = client.post("/settings/reauth", data={"code": bob.code(1)})
    assert response.status_code == 200 and WRONG_CODE in response.text
    # Still stale: disabling is asked for a second step again, and 2FA stays on.
    client.post("/settings/2fa/app/disable", data={"confirm": "y"})
    assert member_state(app, "alice")["methods"] == ["app"]


def test_v2_8_4_an_app_code_is_used_once_even_across_two_sessions(app, alice):
    """Someone who saw the code types it in a sign-in of their own, started after the
    owner's (one started before it ended with the owner's success)."""
    code = alice.code()
    first, second = app.test_client(), app.test_client()
    first.post("/login", data={"login_id": "alice", "password": PASSWORD})
    assert first.post("/login/verify", data={"code": code}).location == "/"
    second.post("/login", data={"login_id": "alice", "password": PASSWORD})
    response = second.post("/login/verify", data={"code": code})
    assert response.status_code == 200 and WRONG_CODE in response.text
    assert still_pending(second)
    # Nor in the same browser after signing out, nor for re-authentication.
    first.post("/logout")
    first.post("/login", data={"login_id": "alice", "password": PASSWORD})
    assert WRONG_CODE in first.post("/login/verify", data={"code": code}).text
    assert still_pending(first)


def test_v2_8_4_an_older_code_is_refused_after_a_newer_one(app, alice):
    newer, older = alice.code(1), alice.code(0)
    first, second = app.test_client(), app.test_client()
    first.post("/login", data={"login_id": "alice", "password": PASSWORD})
    assert first.post("/login/verify", data={"code": newer}).location == "/"
    second.post("/login", data={"login_id": "alice", "password": PASSWORD})
    if older != newer:
        response = second.post("/login/verify", data={"code": older})
        assert response.status_code == 200 and WRONG_CODE in response.text
    assert still_pending(second)


def test_v2_8_4_a_replayed_code_does_not_reauthenticate(app, client, alice):
    code = alice.code()
    sign_in(client, alice)
    with client.session_transaction() as s:
        s["tfa_at"] -= 11 * 60
    response = client.post("/settings/reauth", data={"code": code})
    assert response.status_code == 200 and WRONG_CODE in response.text


def test_v2_8_5_a_replayed_code_is_logged(app, alice):
    code = alice.code()
    first, second = app.test_client(), app.test_client()
    first.post("/login", data={"login_id": "alice", "password": PASSWORD})
    first.post("/login/verify", data={"code": code})
    second.post("/login", data={"login_id": "alice", "password": PASSWORD})
    before = audit_count(app, "signin.second_step_failed")
    second.post("/login/verify", data={"code": code})
    assert audit_count(app, "signin.second_step_failed") == before + 1
