"""The operator's policy (二段階認証方式の設定): the rules in the domain, the admin page
and the CLI, enforcement (recommend, required with and without grace, per role), methods
offered, the issuer and the page after sign-in."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from conftest import NOW, OPERATOR_PASSWORD, PASSWORD, enrol_app, get_member

from portal import members
from portal.extensions import db
from portal.models import AuditEvent, ContactMethod, Policy
from portal.twofactor import policy as rules

BANNER = "二段階認証が設定されていません。"


def exists(path: str) -> bool:
    return path in ("/", "/settings/2fa", "/pages/welcome")


def valid(**changes) -> dict:
    raw = {
        "enforcement": "recommend",
        "operator_enforcement": "required",
        "grace_days": "7",
        "allow_remember_device": "yes",
        "remember_days": "30",
        "trusted_networks": "",
        "shared_terminal_skip": "no",
        "methods": "app,email,sms,passkey",
        "passwordless": "yes",
        "issuer": "",
        "landing_path": "/",
    }
    raw.update(changes)
    return raw


def set_policy(app, **changes) -> None:
    with app.app_context():
        row = rules.current(datetime.now(UTC))
        clean, errors = rules.validate(valid(**(rules.values(row) | changes)), path_exists=exists)
        assert not errors, errors
        rules.save(row, clean, by="test", now=datetime.now(UTC))
        db.session.commit()


# --- the domain -------------------------------------------------------------------------


def test_defaults_of_a_new_install(ctx):
    row = rules.current(NOW)
    assert rules.values(row) == valid()
    assert row.enforcement_since == NOW and row.operator_enforcement_since == NOW
    assert rules.current(NOW + timedelta(days=1)) is row  # one row, created once


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("enforcement", "always", "off・recommend・required"),
        ("operator_enforcement", "", "off・recommend・required"),
        ("grace_days", "366", "0〜365"),
        ("grace_days", "-1", "0〜365"),
        ("grace_days", "７", "0〜365"),
        ("remember_days", "0", "1〜365"),
        # Found by the V5 fuzzer: int() of 10,000 digits raised (a 500), not an error.
        ("remember_days", "0" * 10_000, "1〜365"),
        ("grace_days", "9" * 10_000, "0〜365"),
        ("grace_days", "1000", "0〜365"),
        ("allow_remember_device", "maybe", "yes か no"),
        ("trusted_networks", "10.0.0.0/33 skip", "IPアドレスの範囲として正しくありません"),
        ("trusted_networks", "10.0.0.0/8 skip", "skip に指定できる範囲"),
        ("trusted_networks", "2001:db8::/32 skip", "skip に指定できる範囲"),
        ("trusted_networks", "192.0.2.0/24 maybe", "skip または always"),
        ("trusted_networks", "192.0.2.0/24", "skip または always"),
        ("methods", "", "少なくとも1つ"),
        ("methods", "app,fax", "app・email・sms"),
        ("issuer", "Evil: Corp", "「:」"),
        ("issuer", "x" * 101, "100文字以内"),
        ("landing_path", "https://evil.example/", "ポータル内"),
        ("landing_path", "//evil.example/", "ポータル内"),
        ("landing_path", "/nowhere", "ポータル内"),
    ],
)
def test_bad_values_are_field_errors(ctx, field, value, message):
    _clean, errors = rules.validate(valid(**{field: value}), path_exists=exists)
    assert message in errors[field]


@pytest.mark.parametrize(
    ("raw", "days"), [("030", 30), ("0000000365", 365), ("0", 0), ("0" * 10_000, 0)]
)
def test_leading_zeros_are_still_days(ctx, raw, days):
    clean, errors = rules.validate(valid(grace_days=raw), path_exists=exists)
    assert not errors and clean["grace_days"] == days


def test_good_values_are_normalised(ctx):
    clean, errors = rules.validate(
        valid(
            trusted_networks="192.0.2.7/24 SKIP\n# office\n\n2001:db8::/64 skip; 0.0.0.0/0 always",
            methods=["sms", "app"],
            grace_days=" 0 ",
        ),
        path_exists=exists,
    )
    assert errors == {}
    assert clean["trusted_networks"] == "192.0.2.0/24 skip\n2001:db8::/64 skip\n0.0.0.0/0 always"
    assert clean["methods"] == "app,sms" and clean["grace_days"] == 0


def test_network_modes(ctx):
    row = rules.current(NOW)
    row.trusted_networks = "192.0.2.0/24 skip\n192.0.2.99/32 always\n2001:db8:1::/48 skip"
    assert rules.network_mode(row, "192.0.2.10") == "skip"
    assert rules.network_mode(row, "192.0.2.99") == "always"  # "always" wins
    assert rules.network_mode(row, "198.51.100.1") is None
    assert rules.network_mode(row, "2001:db8:1::5") == "skip"
    assert rules.network_mode(row, "2001:db8:2::5") is None
    assert rules.network_mode(row, "not an address") is None
    assert rules.network_mode(row, None) is None


def test_operators_get_the_stricter_level(ctx, member, operator):
    row = rules.current(NOW)
    alice, boss = get_member(member), get_member(operator)
    row.enforcement, row.operator_enforcement = "recommend", "off"
    assert rules.level_for(row, alice) == "recommend" and rules.level_for(row, boss) == "recommend"
    row.enforcement, row.operator_enforcement = "off", "required"
    assert rules.level_for(row, alice) == "off" and rules.level_for(row, boss) == "required"


def test_grace_counts_from_the_level_or_the_members_creation(ctx, member):
    row = rules.current(NOW)
    alice = get_member(member)
    clean, _ = rules.validate(valid(enforcement="required", grace_days="10"), path_exists=exists)
    rules.save(row, clean, by="t", now=NOW)
    alice.created_at = NOW - timedelta(days=100)
    assert rules.setup_deadline(row, alice) == NOW + timedelta(days=10)
    alice.created_at = NOW + timedelta(days=3)  # joined after the level changed
    assert rules.setup_deadline(row, alice) == NOW + timedelta(days=13)
    # Saving other fields does not restart the grace period.
    clean, _ = rules.validate(
        valid(enforcement="required", grace_days="10", issuer="X"), path_exists=exists
    )
    changes = rules.save(row, clean, by="t", now=NOW + timedelta(days=5))
    assert changes == {"issuer": ("", "X")} and row.enforcement_since == NOW


# --- the admin page and the CLI ----------------------------------------------------------


def post_policy(client, **changes):
    data = valid(**changes)
    data["methods"] = data["methods"].split(",") if data["methods"] else []
    for flag in ("allow_remember_device", "shared_terminal_skip", "passwordless"):
        if data[flag] == "yes":
            data[flag] = "y"
        else:
            del data[flag]
    return client.post("/admin/policy", data=data)


def test_policy_page_saves_and_audits_old_and_new(app, admin_client):
    page = admin_client.get("/admin/policy")
    assert page.status_code == 200 and "二段階認証方式の設定" in page.text
    assert "安全性が低い方法" in page.text  # the NIST note beside email and SMS
    assert 'href="/admin/policy"' in admin_client.get("/admin/").text  # in the menu
    response = post_policy(admin_client, enforcement="required", grace_days="3", methods="app,sms")
    assert response.location == "/admin/policy"
    assert "二段階認証方式の設定を保存しました。" in admin_client.get("/admin/policy").text
    with app.app_context():
        row = db.session.get(Policy, 1)
        assert (row.enforcement, row.grace_days, row.methods) == ("required", 3, "app,sms")
        event = db.session.scalar(
            db.select(AuditEvent).where(AuditEvent.event == "admin.policy_changed")
        )
        assert event.actor_label == "boss"
        assert '"enforcement": ["recommend", "required"]' in event.detail
        assert '"methods": ["app,email,sms,passkey", "app,sms"]' in event.detail


def test_bad_input_is_shown_in_place_and_nothing_is_saved(app, admin_client):
    response = post_policy(
        admin_client,
        trusted_networks="10.0.0.0/8 skip",
        remember_days="400",
        methods="",
        landing_path="http://evil.example/",
    )
    assert response.status_code == 400
    for message in ("skip に指定できる範囲", "1〜365", "少なくとも1つ", "ポータル内"):
        assert message in response.text
    assert 'aria-invalid="true"' in response.text
    assert "10.0.0.0/8 skip" in response.text  # what was typed stays
    with app.app_context():
        assert rules.values(db.session.get(Policy, 1)) == valid()


def test_saving_needs_a_fresh_second_step(app, admin_client):
    with admin_client.session_transaction() as s:
        s["tfa_at"] -= 11 * 60
    response = post_policy(admin_client, enforcement="off")
    assert "本人確認" in response.text
    with app.app_context():
        assert db.session.get(Policy, 1).enforcement == "recommend"


def test_cli_shows_and_sets_with_the_same_validation(app, runner):
    shown = runner.invoke(args=["policy", "show"])
    assert shown.exit_code == 0
    assert shown.output.splitlines() == [f"{k} {v}".rstrip() for k, v in valid().items()]
    ok = runner.invoke(
        args=["policy", "set", "trusted_networks", "192.0.2.0/24 skip;::1/128 always"]
    )
    assert ok.exit_code == 0 and "192.0.2.0/24 skip; ::1/128 always" in ok.output
    for args, words in (
        (["policy", "set", "grace_days", "999"], "grace_days: 0〜365"),
        (["policy", "set", "colour", "red"], "不明な項目です：colour"),
        (["policy", "set", "trusted_networks", "10.0.0.0/8 skip"], "skip に指定できる範囲"),
        (["policy", "set", "landing_path", "/nowhere"], "landing_path"),
    ):
        result = runner.invoke(args=args)
        assert result.exit_code == 1 and words in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    with app.app_context():
        row = db.session.get(Policy, 1)
        assert row.grace_days == 7 and row.updated_by == "cli"
        event = db.session.scalar(
            db.select(AuditEvent).where(AuditEvent.event == "admin.policy_changed")
        )
        assert event.actor_label == "cli" and "192.0.2.0/24 skip" in event.detail


# --- enforcement ------------------------------------------------------------------------


def test_recommend_shows_a_banner_on_member_pages_until_hidden(app, client, member):
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    for url in ("/", "/settings/2fa", "/settings/profile"):
        assert BANNER in client.get(url).text, url
    hidden = client.post("/settings/banner/hide", data={"next": "/settings/profile"})
    assert hidden.location == "/settings/profile"
    assert BANNER not in client.get("/").text


def test_no_banner_with_2fa_or_with_enforcement_off(app, client, member_with_totp, auth):
    _, totp_obj, _ = member_with_totp
    auth.full_login(totp_obj)
    assert BANNER not in client.get("/").text
    set_policy(app, enforcement="off")
    other = app.test_client()
    with app.app_context():
        members.create("bob", email="bob@example.com", password=PASSWORD)
    other.post("/login", data={"login_id": "bob", "password": PASSWORD})
    assert BANNER not in other.get("/").text


def test_required_with_grace_warns_with_the_days_left(app, client, member):
    set_policy(app, enforcement="required", grace_days="5")
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    page = client.get("/")
    assert page.status_code == 200
    assert "あと5日で設定が必須になります。" in page.text


ALLOWED_WHILE_ENROLLING = {
    "/settings/2fa/setup",
    "/settings/2fa/app/setup",
    "/settings/2fa/email/setup",
    "/settings/2fa/sms/setup",
    "/settings/2fa/email/send",
    "/settings/2fa/sms/send",
    "/settings/2fa/passkey/setup",
    "/settings/2fa/passkey/register",
    "/settings/reauth",
    "/settings/reauth/send",
    "/settings/reauth/passkey",
    "/healthz",  # the load balancers' probe
}


def test_required_after_grace_reaches_nothing_but_set_up(app, client, member):
    """Walk the URL map: only the set-up page, its dialogs, sign-out and static files
    answer; everything else sends the member to set-up."""
    set_policy(app, enforcement="required", grace_days="0")
    response = client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    assert response.location == "/"
    assert client.get("/").location == "/settings/2fa/setup"
    page = client.get("/settings/2fa/setup").text
    assert "このサイトでは二段階認証が必須です。" in page and "設定を開始する" in page
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.startswith("auth."):
            continue
        url = re.sub(
            r"<any\((\w+)[^)]*\):kind>",  # the first kind a rule takes
            r"\1",
            re.sub(r"<int:\w+>", "1", rule.rule.replace("<login_id>", "alice")),
        ).replace("<slug>", "welcome")
        for method in sorted((rule.methods or set()) & {"GET", "POST"}):
            response = client.open(url, method=method)
            if rule.endpoint.startswith("api.") and rule.endpoint != "api.openapi":
                # The admin API reads no browser session: a token or nothing (401).
                assert response.status_code == 401, (method, url, response.status_code)
            elif url in ALLOWED_WHILE_ENROLLING or rule.endpoint == "api.openapi":
                assert response.status_code != 302 or "/settings/2fa/setup" not in (
                    response.location or ""
                ), (method, url)
            else:
                assert response.status_code == 302, (method, url, response.status_code)
                assert response.location == "/settings/2fa/setup", (method, url)
    with client.get("/static/portal.css") as css:
        assert css.status_code == 200
    assert client.post("/logout").location == "/login"


def test_forced_set_up_ends_once_a_method_is_set_up(app, client, member):
    import re

    import pyotp

    set_policy(app, enforcement="required", grace_days="0")
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    dialog = client.get("/settings/2fa/app/setup").text
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', dialog).group(1).replace(" ", "")
    done = client.post("/settings/2fa/app/setup", data={"code": pyotp.TOTP(secret).now()})
    assert "リカバリーコード" in done.text
    assert client.get("/").status_code == 200
    assert "マイページへ進む" in client.get("/settings/2fa/setup").text


def test_operators_are_held_by_the_operator_level(app, client, operator, member):
    set_policy(app, enforcement="off", operator_enforcement="required", grace_days="0")
    client.post("/login", data={"login_id": "boss", "password": OPERATOR_PASSWORD})
    assert client.get("/").location == "/settings/2fa/setup"
    plain = app.test_client()
    plain.post("/login", data={"login_id": "alice", "password": PASSWORD})
    assert plain.get("/").status_code == 200


def test_a_policy_change_reaches_signed_in_members_on_their_next_request(app, client, member):
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    assert client.get("/").status_code == 200
    set_policy(app, enforcement="required", grace_days="0")
    assert client.get("/").location == "/settings/2fa/setup"


# --- methods offered ----------------------------------------------------------------------


def give_email(app, login_id="alice"):
    with app.app_context():
        m = members.find(login_id)
        db.session.add(ContactMethod(member_id=m.id, kind="email", created_at=datetime.now(UTC)))
        db.session.commit()


def test_a_withdrawn_method_sends_the_member_to_a_recovery_code(app, client, member_with_totp):
    _, totp_obj, codes = member_with_totp
    set_policy(app, methods="email,sms")
    response = client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    assert response.location == "/login/recovery"
    page = client.get("/login/recovery").text
    assert "管理者の設定により現在使えません" in page
    assert client.get("/login/verify").location == "/login/recovery"
    assert client.post("/login/verify", data={"code": totp_obj.now()}).location == "/login/recovery"
    assert client.get("/").status_code == 302
    assert client.post("/login/recovery", data={"recovery_code": codes[0]}).location == "/"
    sections = client.get("/settings/2fa").text
    assert "管理者の設定により、この方法は現在使えません。" in sections
    refused = client.get("/settings/2fa/app/replace")
    assert "この方法は現在使えません" in refused.text and "totp-secret" not in refused.text


def test_without_recovery_codes_a_withdrawn_method_means_no_2fa(app, client, member_with_totp):
    from portal.twofactor import recovery

    set_policy(app, methods="email,sms", enforcement="required", grace_days="0")
    with app.app_context():
        recovery.void(members.find("alice"))
    response = client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    assert response.location == "/"
    # Never in with the password alone while required: straight to set-up.
    assert client.get("/").location == "/settings/2fa/setup"
    setup = client.get("/settings/2fa/setup").text
    assert "section-email" in setup and "section-app" in setup  # app: to turn it off


@pytest.mark.wired
def test_sign_in_starts_with_an_offered_method(app, client, member_with_totp, smtp_server):
    give_email(app)
    set_policy(app, methods="email")
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    page = client.get("/login/verify").text
    assert "メールで送信した6桁の認証コード" in page
    assert "認証アプリのコードを入力する" not in page  # the withdrawn app is not offered
    assert smtp_server.wait_for(1)[0]["Subject"].endswith("ログイン用の認証コード")


# --- issuer and landing page ------------------------------------------------------------


def test_the_issuer_names_the_site_and_the_authenticator_entry(app, client, member):
    set_policy(app, issuer="Example 会員サイト")
    assert "| Example 会員サイト</title>" in client.get("/login").text
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    dialog = client.get("/settings/2fa/app/setup").text
    assert "Example 会員サイト: alice" in dialog


def test_members_land_on_the_configured_page_unless_they_asked_for_one(app, member):
    from portal import pages

    with app.app_context():
        pages.save(None, title="ようこそ", slug="welcome", body="<p>hi</p>", by="t")
    set_policy(app, landing_path="/pages/welcome")
    client = app.test_client()
    assert client.post("/login", data={"login_id": "alice", "password": PASSWORD}).location == (
        "/pages/welcome"
    )
    other = app.test_client()
    response = other.post(
        "/login?next=/settings/profile", data={"login_id": "alice", "password": PASSWORD}
    )
    assert response.location == "/settings/profile"


def test_an_operator_enrolled_later_is_not_required_early(app, client, operator):
    """Grace counts from the operator's creation when that is later."""
    with app.app_context():
        boss = get_member(operator)
        boss.created_at = datetime.now(UTC) + timedelta(days=1)
        db.session.commit()
    client.post("/login", data={"login_id": "boss", "password": OPERATOR_PASSWORD})
    assert client.get("/").status_code == 200
    assert "日で設定が必須になります。" in client.get("/").text


def test_the_admin_area_still_needs_an_enrolled_second_step(app, client, operator):
    set_policy(app, operator_enforcement="off", enforcement="off")
    client.post("/login", data={"login_id": "boss", "password": OPERATOR_PASSWORD})
    assert client.get("/admin/").location == "/settings/2fa"
    with app.app_context():
        enrol_app(get_member(operator))


def test_the_email_section_names_the_destination_field(app, client, member):
    """The guide's Q2: codes go to the member-info email (and phone), shown here."""
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    page = client.get("/settings/2fa").text
    assert "送信先メールアドレス：a***@example.com" in page
    assert "メンバー情報の「メールアドレス」" in page and "メンバー情報の「携帯電話番号」" in page
