"""When the second step may be skipped: remembered devices (この端末では次回からコード入力を
スキップする), trusted networks and shared terminals; and when it never is."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from conftest import NOW, OPERATOR_PASSWORD, PASSWORD, enrol_app, get_member
from test_policy import set_policy

from portal import members, twofactor
from portal.extensions import db
from portal.models import AuditEvent, RememberedDevice, SharedTerminal
from portal.twofactor import devices

REMEMBER = "この端末では次回からコード入力をスキップする"


def password(client, login_id="alice", pw=PASSWORD, **kw):
    return client.post("/login", data={"login_id": login_id, "password": pw}, **kw)


def remembered(app, login_id="alice") -> list[RememberedDevice]:
    with app.app_context():
        m = members.find(login_id)
        return list(
            db.session.scalars(
                db.select(RememberedDevice).where(RememberedDevice.member_id == m.id)
            )
        )


def signin_methods(app) -> list[str | None]:
    with app.app_context():
        return [
            e.method
            for e in db.session.scalars(
                db.select(AuditEvent)
                .where(AuditEvent.event == "signin.success")
                .order_by(AuditEvent.id)
            )
        ]


def later(totp_obj, steps: int) -> str:
    return totp_obj.at(datetime.now(UTC) + timedelta(seconds=30 * steps))


def remember_this_browser(client, totp_obj, step=0):
    assert password(client).location == "/login/verify"
    page = client.get("/login/verify").text
    assert REMEMBER in page and 'name="remember_device"' in page
    response = client.post(
        "/login/verify", data={"code": later(totp_obj, step), "remember_device": "y"}
    )
    assert response.location == "/"
    return response


# --- remembered devices -----------------------------------------------------------------


def test_a_remembered_browser_skips_the_code_next_time(app, client, member_with_totp):
    _, totp_obj, _ = member_with_totp
    response = remember_this_browser(client, totp_obj)
    cookie = [h for h in response.headers.getlist("Set-Cookie") if h.startswith("portal_remember=")]
    assert cookie and "HttpOnly" in cookie[0] and "SameSite=Lax" in cookie[0]
    assert "Secure" not in cookie[0]  # plain http in tests; see the HTTPS test below
    client.post("/logout")
    assert password(client).location == "/"  # no code asked
    assert client.get("/").status_code == 200
    assert signin_methods(app) == ["app", "device"]
    [device] = remembered(app)
    assert device.label and device.ip == "127.0.0.1"
    assert device.expires_at - device.created_at == timedelta(days=30)


@pytest.mark.settings(PORTAL_HTTPS=True)
def test_behind_tls_the_cookie_is_secure_and_host_prefixed(app, member_with_totp):
    _, totp_obj, _ = member_with_totp
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    password(client)
    response = client.post("/login/verify", data={"code": totp_obj.now(), "remember_device": "y"})
    cookie = [
        h for h in response.headers.getlist("Set-Cookie") if h.startswith("__Host-portal_remember=")
    ]
    assert cookie and "Secure" in cookie[0] and "Path=/" in cookie[0]
    assert "Domain" not in cookie[0]


def test_the_database_keeps_only_a_hash_that_is_no_token(app, client, member_with_totp):
    _, totp_obj, _ = member_with_totp
    remember_this_browser(client, totp_obj)
    token = client.get_cookie("portal_remember").value
    [device] = remembered(app)
    assert token not in device.token_hash
    thief = app.test_client()
    thief.set_cookie("portal_remember", device.token_hash)  # the stolen hash as a cookie
    assert password(thief).location == "/login/verify"


def test_another_member_on_the_same_browser_is_still_asked(app, client, member_with_totp):
    _, totp_obj, _ = member_with_totp
    remember_this_browser(client, totp_obj)
    client.post("/logout")
    with app.app_context():
        bob = members.create("bob", email="bob@example.com", password=PASSWORD)
        enrol_app(bob)
    assert password(client, "bob").location == "/login/verify"


def test_the_box_is_hidden_and_ignored_when_the_policy_disallows_it(app, client, member_with_totp):
    _, totp_obj, _ = member_with_totp
    set_policy(app, allow_remember_device="no")
    password(client)
    assert REMEMBER not in client.get("/login/verify").text
    forged = client.post("/login/verify", data={"code": totp_obj.now(), "remember_device": "y"})
    assert forged.location == "/"
    assert remembered(app) == [] and client.get_cookie("portal_remember") is None


def test_a_remembered_device_expires(app, client, member_with_totp):
    _, totp_obj, _ = member_with_totp
    remember_this_browser(client, totp_obj)
    client.post("/logout")
    with app.app_context():
        device = db.session.scalar(db.select(RememberedDevice))
        device.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        db.session.commit()
    assert password(client).location == "/login/verify"


def test_shortening_the_policy_shortens_devices_remembered_before(app, client, member_with_totp):
    _, totp_obj, _ = member_with_totp
    remember_this_browser(client, totp_obj)
    client.post("/logout")
    with app.app_context():
        device = db.session.scalar(db.select(RememberedDevice))
        device.created_at -= timedelta(days=10)
        db.session.commit()
    set_policy(app, remember_days="7")
    assert password(client).location == "/login/verify"


def voiders():
    """Each way a remembered device must be voided, as a call on (app, client, totp)."""

    def revoke_one(app, client, totp_obj):
        [device] = remembered(app)
        assert client.post(f"/settings/2fa/devices/{device.id}/forget").status_code == 302

    def revoke_all(app, client, totp_obj):
        assert client.post("/settings/2fa/devices/forget").status_code == 302

    def change_password(app, client, totp_obj):
        client.post(
            "/settings/password",
            data={
                "current_password": PASSWORD,
                "new_password": "a completely new passphrase",
                "new_password_confirm": "a completely new passphrase",
            },
        )

    def turn_off_a_method(app, client, totp_obj):
        give = datetime.now(UTC)
        with app.app_context():
            from portal.models import ContactMethod

            m = members.find("alice")
            db.session.add(ContactMethod(member_id=m.id, kind="email", created_at=give))
            db.session.commit()
            twofactor.disable_method(m, "email")

    def operator_reset(app, client, totp_obj):
        with app.app_context():
            twofactor.reset_all(members.find("alice"))

    return [revoke_one, revoke_all, change_password, turn_off_a_method, operator_reset]


@pytest.mark.parametrize("void", voiders(), ids=lambda f: f.__name__)
def test_every_way_of_voiding_a_remembered_device(app, client, member_with_totp, void):
    _, totp_obj, _ = member_with_totp
    remember_this_browser(client, totp_obj)
    void(app, client, totp_obj)
    assert remembered(app) == []
    client.post("/logout")
    pw = "a completely new passphrase" if void.__name__ == "change_password" else PASSWORD
    again = password(client, pw=pw)
    with app.app_context():
        has = twofactor.has_two_factor(members.find("alice"))
    # Asked for a code again; after an operator's reset, sent to set it up again.
    after_reset = "/settings/2fa/setup" if void.__name__ == "operator_reset" else "/"
    assert again.location == ("/login/verify" if has else after_reset)


def test_the_policy_page_turning_remembering_off_voids_every_device(
    app, client, member_with_totp, admin_client
):
    from test_policy import post_policy

    _, totp_obj, _ = member_with_totp
    remember_this_browser(app.test_client(), totp_obj)
    response = post_policy(admin_client, allow_remember_device="no")
    assert response.location == "/admin/policy"
    assert "記憶を解除しました" in admin_client.get("/admin/policy").text
    assert remembered(app) == []


def test_a_recovery_code_voids_every_device_remembered_before(app, member_with_totp):
    _, totp_obj, codes = member_with_totp
    first, second = app.test_client(), app.test_client()
    remember_this_browser(first, totp_obj)
    password(second)
    assert second.post("/login/recovery", data={"recovery_code": codes[0]}).location == "/"
    assert remembered(app) == []
    first.post("/logout")
    assert password(first).location == "/login/verify"


def test_the_settings_page_lists_devices_and_marks_this_one(app, client, member_with_totp):
    _, totp_obj, _ = member_with_totp
    remember_this_browser(client, totp_obj)
    page = client.get("/settings/2fa").text
    assert "この端末の記憶を解除" in page and "すべての端末の記憶を解除する" in page
    assert "この端末</span>" in page and "127.0.0.1" in page
    elsewhere = app.test_client()
    password(elsewhere)
    elsewhere.post("/login/verify", data={"code": later(totp_obj, 1)})
    assert "この端末</span>" not in elsewhere.get("/settings/2fa").text


@pytest.mark.wired
def test_a_newly_remembered_device_is_mailed(app, client, member_with_totp, smtp_server):
    _, totp_obj, _ = member_with_totp
    remember_this_browser(client, totp_obj)
    mail = smtp_server.wait_for(1)[0]
    assert "コード入力のスキップが設定されました" in mail["Subject"]


def test_the_admin_member_page_shows_remembered_devices(
    app, client, member_with_totp, admin_client
):
    _, totp_obj, _ = member_with_totp
    remember_this_browser(app.test_client(), totp_obj, step=1)
    page = admin_client.get("/admin/members/alice").text
    assert "コード入力をスキップする端末" in page and "127.0.0.1" in page


def test_operators_are_not_offered_the_box_and_never_skip(app, client, operator_totp):
    password(client, "boss", OPERATOR_PASSWORD)
    assert REMEMBER not in client.get("/login/verify").text
    client.post("/login/verify", data={"code": operator_totp.now(), "remember_device": "y"})
    assert remembered(app, "boss") == []


# --- trusted networks -------------------------------------------------------------------


def from_address(app, address, **headers):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    for name, value in headers.items():
        client.environ_base[f"HTTP_{name.upper()}"] = value
    return client


@pytest.mark.parametrize("address", ["192.0.2.15", "2001:db8:5::7"])
def test_a_skip_network_skips_the_second_step(app, member_with_totp, address):
    set_policy(app, trusted_networks="192.0.2.0/24 skip\n2001:db8:5::/48 skip")
    client = from_address(app, address)
    assert password(client).location == "/"
    assert signin_methods(app) == ["network"]
    other = from_address(app, "198.51.100.1")
    assert password(other).location == "/login/verify"


def test_an_always_network_asks_even_a_remembered_device(app, member_with_totp):
    _, totp_obj, _ = member_with_totp
    client = from_address(app, "192.0.2.15")
    remember_this_browser(client, totp_obj)
    client.post("/logout")
    set_policy(app, trusted_networks="192.0.2.0/24 always")
    assert password(client).location == "/login/verify"
    assert REMEMBER not in client.get("/login/verify").text


def test_a_spoofed_forwarded_for_never_grants_skip(app, member_with_totp):
    set_policy(app, trusted_networks="192.0.2.0/24 skip")
    client = from_address(app, "198.51.100.1", X_Forwarded_For="192.0.2.15")
    assert password(client).location == "/login/verify"


@pytest.mark.settings(PORTAL_PROXY_COUNT=1)
def test_behind_one_trusted_proxy_the_forwarded_address_counts(app, member_with_totp):
    set_policy(app, trusted_networks="192.0.2.0/24 skip")
    via_proxy = from_address(app, "10.0.0.2", X_Forwarded_For="192.0.2.15")
    assert password(via_proxy).location == "/"
    # A client that adds its own header in front still gets only the proxy's view.
    spoofed = from_address(app, "10.0.0.2", X_Forwarded_For="192.0.2.15, 198.51.100.1")
    assert password(spoofed).location == "/login/verify"


def test_a_skip_network_never_spares_an_operator(app, operator_totp):
    set_policy(app, trusted_networks="192.0.2.0/24 skip")
    client = from_address(app, "192.0.2.15")
    assert password(client, "boss", OPERATOR_PASSWORD).location == "/login/verify"


# --- shared terminals -------------------------------------------------------------------


def mark_terminal(admin_client, label="本社1階 受付PC"):
    response = admin_client.post("/admin/policy/terminal", data={"label": label})
    assert response.location == "/admin/policy#terminals"
    return admin_client.get_cookie("portal_terminal").value


def test_a_shared_terminal_skips_the_second_step_when_the_policy_says_so(
    app, admin_client, member_with_totp
):
    token = mark_terminal(admin_client)
    page = admin_client.get("/admin/policy").text
    assert "本社1階 受付PC" in page and "この端末</span>" in page
    terminal = app.test_client()
    terminal.set_cookie("portal_terminal", token)
    assert password(terminal).location == "/login/verify"  # skip is off by default
    assert REMEMBER not in terminal.get("/login/verify").text  # never on a shared PC
    terminal.post("/logout")
    set_policy(app, shared_terminal_skip="yes")
    assert password(terminal).location == "/"
    assert signin_methods(app)[-1] == "terminal"
    with app.app_context():
        marked = db.session.scalar(db.select(SharedTerminal))
        assert marked.last_used_at is not None and token not in marked.token_hash
        assert db.session.scalar(
            db.select(AuditEvent).where(AuditEvent.event == "admin.terminal_marked")
        )


def test_a_removed_terminal_is_asked_again(app, admin_client, member_with_totp):
    token = mark_terminal(admin_client)
    set_policy(app, shared_terminal_skip="yes")
    with app.app_context():
        terminal_id = db.session.scalar(db.select(SharedTerminal.id))
    dialog = admin_client.get(f"/admin/policy/terminals/{terminal_id}/remove").text
    assert "登録を解除" in dialog
    admin_client.post(f"/admin/policy/terminals/{terminal_id}/remove")
    terminal = app.test_client()
    terminal.set_cookie("portal_terminal", token)
    assert password(terminal).location == "/login/verify"


def test_a_shared_terminal_never_spares_an_operator(app, admin_client, operator_totp):
    token = mark_terminal(admin_client)
    set_policy(app, shared_terminal_skip="yes")
    terminal = app.test_client()
    terminal.set_cookie("portal_terminal", token)
    assert password(terminal, "boss", OPERATOR_PASSWORD).location == "/login/verify"


def test_a_terminal_needs_a_name(app, admin_client):
    response = admin_client.post("/admin/policy/terminal", data={"label": "  "})
    assert response.status_code == 400 and "端末の名前を入力してください。" in response.text
    assert admin_client.get_cookie("portal_terminal") is None


def test_forgetting_a_device_id_beyond_any_database_integer_is_harmless(
    app, client, member_with_totp
):
    """Found by the fuzzer: /settings/2fa/devices/9223372036854775808/forget was a 500."""
    _, totp_obj, _ = member_with_totp
    remember_this_browser(client, totp_obj)
    for device_id in (2**63, 10**30):
        response = client.post(f"/settings/2fa/devices/{device_id}/forget")
        assert response.status_code == 302 and response.location.endswith("#section-devices")
    assert len(remembered(app)) == 1


# --- the domain: remembered devices and shared terminals ---------------------------------


@pytest.fixture
def two_members(ctx, member):
    """Alice and Bob, created long before NOW."""
    bob = members.create("bob", email="bob@example.com", password=PASSWORD)
    return get_member(member), bob


def test_remember_stores_the_device_as_given(two_members):
    alice, _ = two_members
    token, device = devices.remember(
        alice, NOW, timedelta(days=30), label="L" * 100, ip="2001:db8::1" + "f" * 50
    )
    stored = db.session.get(RememberedDevice, device.id)
    assert stored.member_id == alice.id
    assert stored.label == "L" * 80 and stored.ip == ("2001:db8::1" + "f" * 50)[:45]
    assert stored.created_at == stored.last_used_at == NOW
    assert stored.expires_at == NOW + timedelta(days=30)
    assert token not in stored.token_hash
    # 32 random bytes, URL-safe base64 without padding: 43 characters.
    assert len(token) == 43 and len(base64.urlsafe_b64decode(token + "=")) == 32


def test_recognise_until_just_before_either_limit(two_members):
    alice, _ = two_members
    token, device = devices.remember(alice, NOW, timedelta(days=30), label="x", ip="192.0.2.1")
    month, week = timedelta(days=30), timedelta(days=7)
    last = NOW + month - timedelta(microseconds=1)
    assert devices.recognise(alice, ["", token], last, month).id == device.id
    assert db.session.get(RememberedDevice, device.id).last_used_at == last
    assert devices.recognise(alice, [token], NOW + month, month) is None  # its own expiry
    # The policy lengthened to 90 days: the device still ends at its own expiry.
    assert devices.recognise(alice, [token], NOW + month, 3 * month) is None
    # The policy shortened to 7 days: gone exactly 7 days after it was remembered.
    assert devices.recognise(alice, [token], NOW + week - timedelta(microseconds=1), week)
    assert devices.recognise(alice, [token], NOW + week, week) is None
    assert devices.recognise(alice, [""], NOW, month) is None


def test_owned_by_names_only_this_members_devices_among_the_tokens(two_members):
    alice, bob = two_members
    month = timedelta(days=30)
    token_a, device_a = devices.remember(alice, NOW, month, label="a", ip="192.0.2.1")
    _, device_a2 = devices.remember(alice, NOW, month, label="a2", ip="192.0.2.1")
    token_b, device_b = devices.remember(bob, NOW, month, label="b", ip="192.0.2.1")
    assert devices.owned_by(alice, [token_a, token_b]) == {device_a.id}
    assert devices.owned_by(bob, [token_a, token_b]) == {device_b.id}
    assert devices.owned_by(alice, [token_b]) == set()
    assert devices.owned_by(alice, ["", ""]) == set()
    assert device_a2.id not in devices.owned_by(alice, [token_a])


def test_listed_are_the_members_unexpired_devices_last_used_first(two_members):
    alice, bob = two_members
    month = timedelta(days=30)
    _, old = devices.remember(alice, NOW - timedelta(days=20), month, label="old", ip="")
    _, new = devices.remember(alice, NOW - timedelta(days=10), month, label="new", ip="")
    devices.remember(alice, NOW - month, month, label="ends now", ip="")
    devices.remember(bob, NOW, month, label="bob's", ip="")
    old.last_used_at = NOW - timedelta(hours=1)  # used after "new" was last used
    db.session.commit()
    assert [d.label for d in devices.listed(alice, NOW)] == ["old", "new"]
    new.last_used_at = NOW
    db.session.commit()
    assert [d.label for d in devices.listed(alice, NOW)] == ["new", "old"]
    assert [d.label for d in devices.listed(alice, NOW - timedelta(seconds=1))] == [
        "new",
        "old",
        "ends now",
    ]
    assert [d.label for d in devices.listed(bob, NOW)] == ["bob's"]


def test_a_marked_terminal_records_who_and_when(ctx):
    token, marked = devices.mark_terminal("受付", "boss", NOW)
    stored = db.session.get(SharedTerminal, marked.id)
    assert (stored.label, stored.created_by, stored.created_at) == ("受付", "boss", NOW)
    assert stored.last_used_at is None
    assert devices.terminal(token).id == marked.id
    assert devices.terminal(token, NOW + timedelta(days=1)).last_used_at == NOW + timedelta(days=1)
    assert devices.terminals() == [stored]


def test_terminal_by_id_up_to_the_largest_database_integer(ctx):
    """Ids at or beyond 2**63 name no terminal (the database cannot even take them):
    None, not an error; the largest id the database takes is still looked up."""
    largest = SharedTerminal(id=2**63 - 1, token_hash="h1", label="奥", created_at=NOW)
    small = SharedTerminal(id=5, token_hash="h2", label="受付", created_at=NOW)
    db.session.add_all([largest, small])
    db.session.commit()
    assert devices.terminal_by_id(2**63 - 1).label == "奥"
    assert devices.terminal_by_id(5).label == "受付"
    assert devices.terminal_by_id(6) is None
    for beyond in (2**63, 2**64, 10**30):
        assert devices.terminal_by_id(beyond) is None


def test_forget_takes_any_id_up_to_the_largest_database_integer(two_members):
    """Ids beyond what the database can hold forget nothing (0, not a 500); a large id
    the database does hold is forgotten like any other."""
    alice, _ = two_members
    for device_id in (200, 2**63 - 1):
        db.session.add(
            RememberedDevice(
                id=device_id,
                member_id=alice.id,
                token_hash=f"h{device_id}",
                created_at=NOW,
                last_used_at=NOW,
                expires_at=NOW + timedelta(days=30),
            )
        )
    db.session.commit()
    for beyond in (2**63, 2**64, -1, 0):
        assert devices.forget(alice, beyond) == 0
    assert devices.forget(alice, 200) == 1
    assert devices.forget(alice, 2**63 - 1) == 1
    assert db.session.scalars(db.select(RememberedDevice)).all() == []
