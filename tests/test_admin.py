"""The admin area: access, the member list and its filters, CSV, reset, audit, overview,
and the operators' CLI."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pyotp
import pytest
from conftest import OPERATOR_PASSWORD, PASSWORD, enrol_app
from mail_server import body_text

from portal import members, twofactor
from portal.admin import common as admin_common
from portal.extensions import db
from portal.models import AuditEvent, ContactMethod, RecoveryCode, TotpCredential
from portal.twofactor import recovery

HX = {"HX-Request": "true"}


def give(app, login_id: str, *kinds: str) -> None:
    """Turn methods on directly in the database (the UI is tested elsewhere)."""
    now = datetime.now(UTC)
    with app.app_context():
        m = members.find(login_id)
        for kind in kinds:
            if kind == "app":
                db.session.add(
                    TotpCredential(member_id=m.id, secret_encrypted=b"x", created_at=now)
                )
            else:
                db.session.add(ContactMethod(member_id=m.id, kind=kind, created_at=now))
        db.session.commit()
        if kinds:
            recovery.issue(m, now)


def seed(app, specs: dict[str, tuple[str, ...]]) -> None:
    with app.app_context():
        for login_id in specs:
            members.create(login_id, email=f"{login_id}@example.com", password=PASSWORD)
    for login_id, kinds in specs.items():
        give(app, login_id, *kinds)


def login_ids(html: str) -> list[str]:
    return re.findall(r'<a href="/admin/members/([^"]+)">', html)


# --- access ---------------------------------------------------------------------------


def admin_urls(app) -> list[tuple[str, str]]:
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin."):
            continue
        url = (
            rule.rule.replace("<login_id>", "alice")
            .replace("<int:page_id>", "1")
            .replace("<int:terminal_id>", "1")
            .replace("<int:token_id>", "1")
            .replace("<int:form_id>", "1")
            .replace("<slug>", "apply")
            .replace("<int:submission_id>", "1")
        )
        for method in sorted((rule.methods or set()) & {"GET", "POST"}):
            found.append((method, url))
    return found


def test_admin_urls_exist(app):
    urls = {url for _, url in admin_urls(app)}
    assert {"/admin/", "/admin/members", "/admin/members.csv", "/admin/audit"} <= urls


def test_non_operator_gets_403_everywhere(app, client, member):
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    for method, url in admin_urls(app):
        response = client.open(url, method=method, data={"confirm": "y"})
        assert response.status_code == 403, (method, url)
        assert "権限がありません" in response.text


def test_preflight_requests_are_not_errors(client):
    assert client.options("/admin/").status_code in (200, 403)
    assert client.options("/admin/members").status_code in (200, 403)


def test_huge_page_id_is_not_found(admin_client):
    assert admin_client.get("/admin/pages/99999999999999999999999/edit").status_code == 404


def test_visitor_is_sent_to_sign_in(app, client):
    for method, url in admin_urls(app):
        response = client.open(url, method=method)
        assert response.status_code == 302, (method, url)
        assert response.location.startswith("/login"), (method, url)


def test_pending_operator_has_no_access(app, client, operator):
    give(app, "boss", "email")
    client.post("/login", data={"login_id": "boss", "password": OPERATOR_PASSWORD})
    assert client.get("/admin/").location == "/login/verify"


def test_operator_with_2fa_reaches_admin(admin_client):
    page = admin_client.get("/admin/")
    assert page.status_code == 200 and "管理画面" in page.text


# --- member list ----------------------------------------------------------------------


def test_filters(app, admin_client):
    seed(
        app,
        {
            "apponly": ("app",),
            "mailonly": ("email",),
            "smsonly": ("sms",),
            "both": ("app", "email"),
            "none1": (),
            "none2": (),
        },
    )
    off = login_ids(admin_client.get("/admin/members?tfa=off").text)
    assert set(off) == {"none1", "none2"}
    on = login_ids(admin_client.get("/admin/members?tfa=on").text)
    assert set(on) == {"apponly", "mailonly", "smsonly", "both", "boss"}
    by_app = login_ids(admin_client.get("/admin/members?method=app").text)
    assert set(by_app) == {"apponly", "both", "boss"}
    assert set(login_ids(admin_client.get("/admin/members?method=email").text)) == {
        "mailonly",
        "both",
    }
    assert login_ids(admin_client.get("/admin/members?method=sms").text) == ["smsonly"]
    both = admin_client.get("/admin/members?method=email&tfa=on").text
    assert set(login_ids(both)) == {"mailonly", "both"}


def test_search_by_id_name_or_email_case_insensitive(app, admin_client):
    with app.app_context():
        members.create(
            "Taro.Yamada", email="t.yamada@corp.example", password=PASSWORD, name="山田太郎"
        )
        members.create("hanako", email="HANAKO@Example.org", password=PASSWORD, name="佐藤花子")
    assert login_ids(admin_client.get("/admin/members?q=YAMADA").text) == ["Taro.Yamada"]
    assert login_ids(admin_client.get("/admin/members?q=花子").text) == ["hanako"]
    assert login_ids(admin_client.get("/admin/members?q=example.ORG").text) == ["hanako"]
    assert (
        login_ids(admin_client.get("/admin/members?q=%25").text) == []
    )  # LIKE wildcards are literal
    assert login_ids(admin_client.get("/admin/members?q=_").text) == []


def test_htmx_gets_the_table_only(admin_client):
    response = admin_client.get("/admin/members?tfa=off", headers=HX)
    assert response.text.lstrip().startswith('<div id="member-table">')
    assert "HX-Request" in response.headers["Vary"]


def test_pagination_boundaries(app, admin_client, monkeypatch):
    monkeypatch.setattr("portal.admin.member_views.PAGE_SIZE", 5)
    seed(app, {f"user{i:02d}": () for i in range(12)})  # 13 with the operator
    first = admin_client.get("/admin/members").text
    assert len(login_ids(first)) == 5 and 'rel="prev"' not in first
    next_url = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = admin_client.get(next_url).text
    assert len(login_ids(second)) == 5
    third_url = re.search(r'rel="next" href="([^"]+)"', second).group(1).replace("&amp;", "&")
    third = admin_client.get(third_url).text
    assert len(login_ids(third)) == 3 and 'rel="next"' not in third
    everyone = login_ids(first) + login_ids(second) + login_ids(third)
    assert len(set(everyone)) == 13  # nobody twice, nobody missing
    back_url = re.search(r'rel="prev" href="([^"]+)"', third).group(1).replace("&amp;", "&")
    assert login_ids(admin_client.get(back_url).text) == login_ids(second)


@pytest.mark.parametrize(
    "query",
    [
        "after=abc",
        "after=-1",
        "before=99999999999999999999999",
        "tfa=maybe",
        "method=fax",
        "q=" + "x" * 500,
    ],
)
def test_odd_parameters_are_harmless(admin_client, query):
    assert admin_client.get(f"/admin/members?{query}").status_code == 200


def test_row_details(app, admin_client):
    seed(app, {"carol": ("app", "sms")})
    with app.app_context():
        m = members.find("carol")
        recovery.use(m, recovery.issue(m, datetime.now(UTC))[0], datetime.now(UTC))
    html = admin_client.get("/admin/members?q=carol").text
    row = html[html.index("/admin/members/carol") :]
    assert "アプリ" in row and "SMS" in row and "<td>9</td>" in row.replace(" ", "")


# --- CSV ------------------------------------------------------------------------------


def test_csv_export(app, admin_client):
    seed(app, {"dave": ("email",), "erin": ()})
    with app.app_context():
        members.create("evil", email="evil@example.com", password=PASSWORD, name="=HYPERLINK(1)")
        members.create("plus", email="plus@example.com", password=PASSWORD, name="+1+1")
        members.create("jpn", email="jp@example.com", password=PASSWORD, name="日本語の名前")
    response = admin_client.get("/admin/members.csv?tfa=off")
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response.headers["Content-Disposition"]
    raw = response.data
    assert raw.startswith(b"\xef\xbb\xbf")  # BOM for Excel
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][0] == "ログインID"
    by_id = {r[0]: r for r in rows[1:]}
    assert set(by_id) == {"erin", "evil", "plus", "jpn"}
    assert by_id["evil"][1] == "'=HYPERLINK(1)"
    assert by_id["plus"][1] == "'+1+1"
    assert by_id["jpn"][1] == "日本語の名前"


def test_csv_neutralises_every_formula_start():
    for start in ["=", "+", "-", "@", "\t", "\r"]:
        assert admin_common.safe_cell(start + "x") == "'" + start + "x"
    assert admin_common.safe_cell("safe") == "safe"


@pytest.mark.parametrize("start", ["＝", "＋", "－", "＠", "﹦", "﹢"])
def test_csv_neutralises_full_width_formula_starts(start):
    """Japanese Excel reads full-width signs as formula starts too (NFKC first)."""
    assert admin_common.safe_cell(start + "HYPERLINK(1)") == "'" + start + "HYPERLINK(1)"
    assert admin_common.safe_cell("田中" + start) == "田中" + start


def test_full_width_formula_in_a_name_is_neutralised_in_the_export(app, admin_client):
    with app.app_context():
        members.create("fwd", email="fw@example.com", password=PASSWORD, name="＝cmd|' /C calc'!A0")
    rows = list(
        csv.reader(io.StringIO(admin_client.get("/admin/members.csv").data.decode("utf-8-sig")))
    )
    assert {r[0]: r for r in rows[1:]}["fwd"][1] == "'＝cmd|' /C calc'!A0"


def test_exports_of_personal_data_are_audited(app, admin_client, runner):
    admin_client.get("/admin/members.csv?tfa=off&q=example")
    admin_client.get("/admin/audit.csv?event=signin.success")
    runner.invoke(args=["members", "list", "--csv"])
    with app.app_context():
        exports = db.session.scalars(
            db.select(AuditEvent).where(AuditEvent.event == "admin.export").order_by(AuditEvent.id)
        ).all()
    assert [e.actor_label for e in exports] == ["boss", "boss", "cli"]
    assert '"export": "members.csv"' in exports[0].detail and '"tfa": "off"' in exports[0].detail
    assert '"export": "audit.csv"' in exports[1].detail and "signin.success" in exports[1].detail


# --- member detail and reset ----------------------------------------------------------


def test_member_detail(app, admin_client):
    seed(app, {"frank": ("app", "email")})
    page = admin_client.get("/admin/members/frank")
    assert page.status_code == 200
    assert "アプリ" in page.text and "メール" in page.text and "無効化" in page.text
    assert admin_client.get("/admin/members/nobody").status_code == 404
    assert admin_client.get("/admin/members/bad id!").status_code == 404


@pytest.mark.wired
def test_reset_removes_everything_and_tells_the_member(app, client, admin_client, smtp_server):
    with app.app_context():
        m = members.create("gina", email="gina@example.com", password=PASSWORD)
        gina_totp = enrol_app(m)
        db.session.add(ContactMethod(member_id=m.id, kind="sms", created_at=datetime.now(UTC)))
        db.session.commit()
        gina_id = m.id
    gina = app.test_client()
    gina.post("/login", data={"login_id": "gina", "password": PASSWORD})
    gina.post("/login/verify", data={"code": gina_totp.now()})
    assert gina.get("/").status_code == 200
    dialog = admin_client.get("/admin/members/gina/reset", headers=HX).text
    assert "gina" in dialog and "はい、無効化して問題ありません。" in dialog
    # Never pressable for a moment as the dialog opens (portal.js enables it).
    assert re.search(r'<button[^>]*data-requires-check="confirm"[^>]* disabled>', dialog)
    refused = admin_client.post("/admin/members/gina/reset", data={}, headers=HX)
    assert "チェックを入れてください" in refused.text
    done = admin_client.post("/admin/members/gina/reset", data={"confirm": "y"}, headers=HX)
    assert "二段階認証を無効化しました" in done.text
    with app.app_context():
        for model in (TotpCredential, ContactMethod, RecoveryCode):
            assert db.session.scalar(db.select(model).where(model.member_id == gina_id)) is None
        event = db.session.scalar(
            db.select(AuditEvent).where(AuditEvent.event == "admin.reset_2fa")
        )
        assert event.actor_label == "boss" and event.subject_label == "gina"
        assert "app" in event.detail and "sms" in event.detail
    assert gina.get("/").status_code == 302  # her sessions ended
    notice = smtp_server.wait_for(1)[-1]
    assert notice["To"] == "gina@example.com" and "無効化" in notice["Subject"]
    assert "パスワードだけでログインできます" in body_text(notice)
    assert "IPアドレス" not in body_text(notice)  # the operator's address is not shared
    fresh = app.test_client()
    signed_in = fresh.post("/login", data={"login_id": "gina", "password": PASSWORD})
    assert signed_in.location == "/settings/2fa/setup"  # told on screen, set-up offered
    assert "管理者があなたの二段階認証を無効化しました" in fresh.get(signed_in.location).text


def test_operator_cannot_reset_themselves(app, admin_client):
    give(app, "boss", "email")
    response = admin_client.post("/admin/members/boss/reset", data={"confirm": "y"})
    assert "二段階認証設定ページで変更してください" in response.text
    with app.app_context():
        assert twofactor.has_two_factor(members.find("boss"))


def test_operator_without_2fa_is_sent_to_set_one_up(app, client, operator, member):
    """ASVS 4.3.1: the admin area needs multi-factor; the password alone reaches no
    admin page, export or reset."""
    seed(app, {"ian": ("email",)})
    client.post("/login", data={"login_id": "boss", "password": OPERATOR_PASSWORD})
    for method, url in admin_urls(app):
        response = client.open(url, method=method, data={"confirm": "y"})
        assert response.status_code == 302, (method, url)
        assert response.location == "/settings/2fa", (method, url)
    page = client.get("/settings/2fa")
    assert "管理画面を使うには、先に二段階認証を設定してください。" in page.text
    hx = client.get("/admin/members.csv", headers=HX)
    assert hx.headers["HX-Redirect"] == "/settings/2fa" and "ian" not in hx.text
    with app.app_context():
        assert twofactor.has_two_factor(members.find("ian"))
        assert not db.session.scalar(
            db.select(AuditEvent).where(AuditEvent.event == "admin.reset_2fa")
        )


def test_operator_whose_2fa_was_reset_loses_the_admin_area(app, admin_client, runner):
    assert admin_client.get("/admin/").status_code == 200
    assert runner.invoke(args=["members", "reset-2fa", "boss"]).exit_code == 0
    fresh = app.test_client()
    fresh.post("/login", data={"login_id": "boss", "password": OPERATOR_PASSWORD})
    assert fresh.get("/admin/").location == "/settings/2fa"


def test_stale_operator_must_give_a_second_step_not_the_password(app, admin_client):
    seed(app, {"ian": ("email",)})
    with admin_client.session_transaction() as s:
        s["tfa_at"] -= 11 * 60
    asked = admin_client.post("/admin/members/ian/reset", data={"confirm": "y"})
    assert "本人確認" in asked.text and 'name="code"' in asked.text
    assert 'name="password"' not in asked.text
    refused = admin_client.post(
        "/settings/reauth?next=/admin/members/ian/reset", data={"password": OPERATOR_PASSWORD}
    )
    assert refused.status_code == 200 and "認証コードが正しくありません。" in refused.text
    done = admin_client.post("/admin/members/ian/reset", data={"confirm": "y"})
    assert "本人確認" in done.text
    with app.app_context():
        assert twofactor.has_two_factor(members.find("ian"))


def test_stale_operator_with_2fa_must_reauthenticate(app, admin_client, operator_totp):
    seed(app, {"hal": ("email",)})
    with admin_client.session_transaction() as s:
        s["tfa_at"] -= 11 * 60
    response = admin_client.post("/admin/members/hal/reset", data={"confirm": "y"})
    assert "本人確認" in response.text
    with app.app_context():
        assert twofactor.has_two_factor(members.find("hal"))
    next_code = operator_totp.at(datetime.now(UTC) + timedelta(seconds=30))
    ok = admin_client.post(
        "/settings/reauth?next=/admin/members/hal/reset", data={"code": next_code}
    )
    assert ok.location == "/admin/members/hal/reset"
    done = admin_client.post("/admin/members/hal/reset", data={"confirm": "y"})
    assert "無効化しました" in done.text


@pytest.mark.wired
def test_resetting_an_operator_tells_every_other_operator(app, admin_client, smtp_server):
    with app.app_context():
        for login_id in ("op2", "op3"):
            members.create(
                login_id, email=f"{login_id}@example.com", password=PASSWORD, is_operator=True
            )
        members.create("plain", email="plain@example.com", password=PASSWORD)
    give(app, "op2", "app")
    done = admin_client.post("/admin/members/op2/reset", data={"confirm": "y"})
    assert "無効化しました" in done.text
    mails = smtp_server.wait_for(2)
    by_recipient = {mail["To"]: mail for mail in mails}
    assert set(by_recipient) == {"op2@example.com", "op3@example.com"}
    alert = body_text(by_recipient["op3@example.com"])
    assert "op2" in alert and "boss" in alert and "監査ログ" in alert
    # A plain member's reset tells no operator.
    give(app, "plain", "app")
    admin_client.post("/admin/members/plain/reset", data={"confirm": "y"})
    assert [m["To"] for m in smtp_server.wait_for(3)][2:] == ["plain@example.com"]


# --- audit ----------------------------------------------------------------------------


def test_security_events_are_audited(app, client, member_with_totp, operator):
    _, totp_obj, codes = member_with_totp
    client.post("/login", data={"login_id": "alice", "password": "wrong password!"})
    client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    client.post("/login/verify", data={"code": "000000"})
    client.post("/login/recovery", data={"recovery_code": codes[0]})
    client.post("/settings/2fa/recovery/regenerate")
    client.post("/settings/2fa/app/disable", data={"confirm": "y"})
    page = client.get("/settings/2fa/app/setup").text
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page).group(1).replace(" ", "")
    client.post("/settings/2fa/app/setup", data={"code": pyotp.TOTP(secret).now()})
    client.post("/logout")
    with app.app_context():
        events = [
            (e.event, e.method, e.subject_label)
            for e in db.session.scalars(db.select(AuditEvent).order_by(AuditEvent.id))
        ]
        details = " ".join(e.detail for e in db.session.scalars(db.select(AuditEvent)))
    assert events == [
        ("signin.password_failed", None, "alice"),
        ("signin.second_step_failed", "app", "alice"),
        ("signin.success", "recovery", "alice"),
        ("recovery.used", None, "alice"),
        ("recovery.regenerated", None, "alice"),
        ("method.disabled", "app", "alice"),
        ("method.enabled", "app", "alice"),
        ("signout", None, "alice"),
    ]
    assert PASSWORD not in details and "wrong password" not in details and codes[0] not in details


def test_unknown_login_id_is_audited_without_what_was_typed(app, client, admin_client):
    """People type their password into the ID box: an unknown ID is never stored."""
    app.test_client().post("/login", data={"login_id": "MyS3cretPassw0rd", "password": "x" * 12})
    with app.app_context():
        event = db.session.scalar(
            db.select(AuditEvent).where(AuditEvent.event == "signin.password_failed")
        )
        assert event.subject_id is None and event.subject_label == ""
        assert "MyS3cretPassw0rd" not in event.detail + event.actor_label
    assert "MyS3cretPassw0rd" not in admin_client.get("/admin/audit").text
    assert b"MyS3cretPassw0rd" not in admin_client.get("/admin/audit.csv").data


def test_audit_page_filters(app, admin_client, member):
    other = app.test_client()
    other.post("/login", data={"login_id": "alice", "password": "nope nope nope"})
    other.post("/login", data={"login_id": "alice", "password": PASSWORD})
    page = admin_client.get("/admin/audit").text
    assert "ログイン失敗（パスワード）" in page and "127.0.0.1" in page
    mine = admin_client.get("/admin/audit?member=alice&event=signin.password_failed").text
    assert mine.count("<tr>") == 2  # header + one event
    assert (
        "そのログインIDのメンバーはいません。"
        in admin_client.get("/admin/audit?member=nobody").text
    )
    for odd in ("to=9999-12-31", "from=0001-01-01", "before=¹", "event=%00", "member=%00"):
        assert admin_client.get(f"/admin/audit?{odd}").status_code == 200, odd
        assert admin_client.get(f"/admin/audit.csv?{odd}").status_code == 200, odd
    bad = admin_client.get("/admin/audit?from=2026/13/45")
    assert bad.status_code == 200 and "2026-11-25 の形式" in bad.text
    future = (datetime.now(ZoneInfo("Asia/Tokyo")) + timedelta(days=2)).strftime("%Y-%m-%d")
    assert (
        "条件に合うイベントはありません。" in admin_client.get(f"/admin/audit?from={future}").text
    )
    today = datetime.now(ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-%d")  # dates are Tokyo days
    csv_text = admin_client.get(f"/admin/audit.csv?member=alice&to={today}").data.decode(
        "utf-8-sig"
    )
    rows = list(csv.reader(io.StringIO(csv_text)))
    assert rows[0][0] == "日時" and {r[1] for r in rows[1:]} == {
        "signin.password_failed",
        "signin.success",
    }


# --- overview -------------------------------------------------------------------------


def test_overview_counts_and_chart(app, admin_client):
    seed(app, {"app1": ("app",), "app2": ("app", "email"), "sms1": ("sms",), "non1": ()})
    html = admin_client.get("/admin/").text
    assert re.search(r'id="stat-total">5<', html)
    assert re.search(r'id="stat-on">4<', html)  # with the operator
    assert re.search(r'id="stat-app"><a [^>]*>3<', html)
    assert re.search(r'id="stat-email"><a [^>]*>1<', html)
    assert re.search(r'id="stat-sms"><a [^>]*>1<', html)
    chart = html[
        html.index('<svg class="chart"') : html.index("</svg>", html.index('<svg class="chart"'))
    ]
    assert "<polyline" in chart and "<script" not in chart
    assert re.search(r'id="signins-app">1<', html)  # the operator's own sign-in
    assert re.search(r'id="signins-none">0<', html)


# --- CLI ------------------------------------------------------------------------------


def test_cli_list_and_csv(app, runner):
    seed(app, {"ivy": ("app",), "jack": ()})
    off = runner.invoke(args=["members", "list", "--tfa", "off"])
    assert off.exit_code == 0 and "jack" in off.output and "ivy" not in off.output
    as_csv = runner.invoke(args=["members", "list", "--tfa", "on", "--csv"])
    rows = list(csv.reader(io.StringIO(as_csv.output)))
    assert rows[0][0] == "login_id" and [r[0] for r in rows[1:]] == ["ivy"]
    assert rows[1][3] == "app" and rows[1][4] == "10"


@pytest.mark.wired
def test_cli_reset_and_grant(app, runner, smtp_server):
    seed(app, {"kim": ("app", "email")})
    result = runner.invoke(args=["members", "reset-2fa", "kim"])
    assert result.exit_code == 0 and "app" in result.output
    with app.app_context():
        assert not twofactor.has_two_factor(members.find("kim"))
        event = db.session.scalar(
            db.select(AuditEvent).where(AuditEvent.event == "admin.reset_2fa")
        )
        assert event.actor_label == "cli"
    assert smtp_server.wait_for(1)[-1]["To"] == "kim@example.com"
    granted = runner.invoke(args=["members", "grant-operator", "kim"])
    assert granted.exit_code == 0
    with app.app_context():
        assert members.find("kim").is_operator
    for command in (["members", "reset-2fa", "nobody"], ["members", "grant-operator", "nobody"]):
        failed = runner.invoke(args=command)
        assert failed.exit_code == 1 and "nobody" in failed.output


# --- a reset that has nothing to reset (issue 10, bug 1) ----------------------------------


def reset_rows(app) -> list[AuditEvent]:
    with app.app_context():
        return list(
            db.session.scalars(db.select(AuditEvent).where(AuditEvent.event == "admin.reset_2fa"))
        )


def generation(app, login_id: str) -> int:
    with app.app_context():
        return members.find(login_id).session_generation


@pytest.mark.wired
def test_a_member_without_2fa_is_not_reset(app, admin_client, smtp_server):
    """Bug: the reset of a member without a second step 'succeeded', ended her sessions,
    mailed her and wrote an audit row."""
    seed(app, {"nora": ()})
    before = generation(app, "nora")
    dialog = admin_client.get("/admin/members/nora/reset", headers=HX)
    assert "このメンバーは二段階認証を設定していません。" in dialog.text
    assert 'name="confirm"' not in dialog.text and "<html" not in dialog.text
    hx = admin_client.post("/admin/members/nora/reset", data={"confirm": "y"}, headers=HX)
    assert "このメンバーは二段階認証を設定していません。" in hx.text
    assert "無効化しました" not in hx.text
    plain = admin_client.post("/admin/members/nora/reset", data={"confirm": "y"})
    assert plain.status_code == 200 and "<html" in plain.text
    assert "このメンバーは二段階認証を設定していません。" in plain.text
    # Without JavaScript the dialog's button leads back to the member's page.
    assert re.search(r'href="/admin/members/nora"[^>]*data-close-dialog', plain.text)
    assert reset_rows(app) == [] and smtp_server.messages == []
    assert generation(app, "nora") == before  # her sessions go on


@pytest.mark.wired
def test_a_second_reset_changes_nothing(app, admin_client, smtp_server):
    """Bug: pressing 無効化 again on the stale page reset again, mailed the member a second
    time and wrote a second audit row."""
    seed(app, {"olga": ("app", "sms")})
    assert 'href="/admin/members/olga/reset"' in admin_client.get("/admin/members/olga").text
    done = admin_client.post("/admin/members/olga/reset", data={"confirm": "y"}, headers=HX)
    assert "二段階認証を無効化しました" in done.text
    assert 'href="/admin/members/olga"' in done.text  # 完了 without JavaScript
    assert len(smtp_server.messages) == 1
    page = admin_client.get("/admin/members/olga").text
    methods = page[page.index('id="methods"') : page.index('id="remembered"')]
    assert "未設定" in methods and "/admin/members/olga/reset" not in methods
    before = generation(app, "olga")
    again = admin_client.post("/admin/members/olga/reset", data={"confirm": "y"}, headers=HX)
    assert "このメンバーは二段階認証を設定していません。" in again.text
    plain = admin_client.post("/admin/members/olga/reset", data={"confirm": "y"})
    assert "このメンバーは二段階認証を設定していません。" in plain.text
    assert len(reset_rows(app)) == 1 and len(smtp_server.messages) == 1
    assert generation(app, "olga") == before  # sessions since the first reset go on


def test_the_member_page_fetches_its_cards_again_when_a_dialog_closes(app, admin_client):
    """The hook the browser test exercises: on the dialog's close event, the member page
    is fetched again and its method, detail and device cards are swapped in."""
    seed(app, {"pia": ("email",)})
    html = admin_client.get("/admin/members/pia").text
    hook = re.search(r'<div hidden hx-get="/admin/members/pia"[^>]*>', html)
    assert hook, html
    assert 'hx-trigger="close from:#dialog"' in hook.group(0)
    assert 'hx-select="#methods"' in hook.group(0) and 'hx-target="#methods"' in hook.group(0)
    for card in ("member-facts", "methods", "remembered"):
        assert f'id="{card}"' in html


def test_cli_refuses_to_reset_a_member_without_2fa(app, runner):
    seed(app, {"quin": ()})
    result = runner.invoke(args=["members", "reset-2fa", "quin"])
    assert result.exit_code == 1 and "quin には二段階認証が設定されていません" in result.output
    assert reset_rows(app) == []


# --- the audit log's date range (issue 10, bug 9) ----------------------------------------

RANGE_ERROR = "開始日は終了日以前の日付を指定してください。"


def test_a_start_after_the_end_is_a_field_error(app, admin_client, member):
    app.test_client().post("/login", data={"login_id": "alice", "password": PASSWORD})
    today = datetime.now(ZoneInfo("Asia/Tokyo"))
    later, earlier = (today + timedelta(days=1)).date(), (today - timedelta(days=1)).date()
    query = f"from={later}&to={earlier}"
    page = admin_client.get(f"/admin/audit?{query}")
    assert page.status_code == 200 and RANGE_ERROR in page.text
    assert re.search(r'<input id="from"[^>]*aria-invalid="true"', page.text)
    assert "条件に合うイベントはありません。" in page.text  # not every event, silently
    # The htmx search swaps the table; the form with its error comes out of band.
    hx = admin_client.get(f"/admin/audit?{query}", headers=HX).text
    assert "<html" not in hx and 'id="audit-table"' in hx
    form = hx[hx.index('<form id="audit-filters"') :]
    assert 'hx-swap-oob="true"' in form[:200] and RANGE_ERROR in form
    fixed = admin_client.get(f"/admin/audit?from={earlier}&to={later}", headers=HX).text
    assert RANGE_ERROR not in fixed and 'hx-swap-oob="true"' in fixed  # the error goes
    assert "ログイン成功" in fixed
    same_day = admin_client.get(f"/admin/audit?from={today.date()}&to={today.date()}").text
    assert RANGE_ERROR not in same_day and "ログイン成功" in same_day


@pytest.mark.parametrize(
    ("query", "message"),
    [("from=2026-03-02&to=2026-03-01", RANGE_ERROR), ("from=2026/13/45", "2026-11-25 の形式")],
)
def test_the_csv_export_refuses_a_filter_typed_wrongly(app, admin_client, query, message):
    """Bug: the export ignored a bad date and exported every event without a word."""
    response = admin_client.get(f"/admin/audit.csv?{query}")
    assert response.status_code == 200
    assert response.mimetype == "text/html" and message in response.text
    with app.app_context():
        assert not db.session.scalar(
            db.select(AuditEvent).where(AuditEvent.event == "admin.export")
        )


# --- words, not internal values (issue 10, bug 10) ---------------------------------------

CHROME_ON_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36"
)


def test_admin_screens_and_csv_show_words_not_keys_or_json(app, admin_client):
    seed(app, {"rita": ("app", "sms")})
    admin_client.environ_base["HTTP_USER_AGENT"] = CHROME_ON_WINDOWS
    admin_client.post("/admin/members/rita/reset", data={"confirm": "y"})
    sentence = "無効化した方法：認証アプリ、SMS"

    log = admin_client.get("/admin/audit").text
    table = log[log.index('id="audit-table"') :]
    assert sentence in table and "Chrome / Windows" in table
    assert "<td>認証アプリ</td>" in table  # the operator's own sign-in, by method
    for raw in ("methods", "{", "<td>app</td>", "Mozilla/5.0", "<code>"):
        assert raw not in table, raw

    detail = admin_client.get("/admin/members/rita").text
    events = detail[detail.index("最近のイベント") :]
    assert sentence in events and "methods" not in events and "{" not in events

    rows = list(
        csv.reader(io.StringIO(admin_client.get("/admin/audit.csv").data.decode("utf-8-sig")))
    )
    header = rows[0]
    reset = next(r for r in rows[1:] if r[1] == "admin.reset_2fa")
    signin = next(r for r in rows[1:] if r[1] == "signin.success")
    assert reset[header.index("詳細")] == sentence
    assert reset[header.index("ブラウザ")] == "Chrome / Windows"
    assert reset[header.index("内容")] == "管理者による二段階認証の無効化"
    assert signin[header.index("方法")] == "認証アプリ"
    assert all("{" not in r[header.index("詳細")] for r in rows[1:])

    members_csv = admin_client.get("/admin/members.csv?q=rita").data.decode("utf-8-sig")
    assert list(csv.reader(io.StringIO(members_csv)))[1][3] == ""  # reset: none left
    give(app, "rita", "app", "email")
    members_csv = admin_client.get("/admin/members.csv?q=rita").data.decode("utf-8-sig")
    assert list(csv.reader(io.StringIO(members_csv)))[1][3] == "認証アプリ、メール"


def test_the_raw_user_agent_stays_out_of_the_screens_but_is_kept_for_investigations(
    app, admin_client
):
    """The browser is named from an allow-list; what the client sent is kept only in its
    own CSV column, defused for spreadsheets."""
    attack = '=HYPERLINK("https://evil.example") ignore this, call 0120-000-000'
    stranger = app.test_client()
    stranger.environ_base["HTTP_USER_AGENT"] = attack
    stranger.post("/login", data={"login_id": "nobody", "password": "x" * 12})
    log = admin_client.get("/admin/audit").text
    assert "evil.example" not in log and "0120-000-000" not in log
    assert "不明なブラウザ" in log
    rows = list(
        csv.reader(io.StringIO(admin_client.get("/admin/audit.csv").data.decode("utf-8-sig")))
    )
    failed = next(r for r in rows[1:] if r[1] == "signin.password_failed")
    assert failed[rows[0].index("ブラウザ")] == "不明なブラウザ"
    assert failed[-1] == "'" + attack
