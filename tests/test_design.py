"""What the design promises in the HTML itself: every one-time-code field asks the phone
for a code keyboard and offers the code from a text message; the current page is marked
in both menus; dialogs have a close button; the key and the recovery codes have copy
and print buttons that stay hidden without JavaScript; the overview's chart has
gridlines, labels and a summary; no page carries an inline style (the CSP forbids it)."""

from __future__ import annotations

import re

import pytest
from conftest import PASSWORD, enrol_app, get_member
from test_contact_methods import HX, mails_with, sign_in

from portal.admin.overview_views import chart_points, nice_step

CODE_INPUT = re.compile(r'<input[^>]*\bname="code"[^>]*>')


def code_inputs(html: str) -> list[str]:
    found = CODE_INPUT.findall(html)
    assert found, "no code field on the page"
    return found


def assert_code_fields(html: str, *, digits_only: bool = True) -> None:
    for tag in code_inputs(html):
        assert 'autocomplete="one-time-code"' in tag, tag
        if digits_only:
            assert 'inputmode="numeric"' in tag, tag


# --- one-time-code fields -------------------------------------------------------------------


def test_app_code_fields_offer_the_code_keyboard(app, client, member, auth):
    # Set-up dialog (and its page without JavaScript), then the sign-in code page.
    sign_in(client)
    assert_code_fields(client.get("/settings/2fa/app/setup", headers=HX).text)
    assert_code_fields(client.get("/settings/2fa/app/setup").text)
    client.post("/logout")
    with app.app_context():
        phone = enrol_app(get_member(member))
    auth.login()
    assert_code_fields(client.get("/login/verify").text)
    auth.verify(phone.now())
    # Re-authentication takes an app code or a recovery code (letters): no digit keyboard.
    reauth = client.get("/settings/reauth?next=/settings/2fa/app/replace", headers=HX).text
    assert_code_fields(reauth, digits_only=False)
    assert 'inputmode="numeric"' not in CODE_INPUT.search(reauth).group(0)


@pytest.mark.wired
def test_emailed_code_fields_offer_the_code_keyboard(app, client, member, smtp_server):
    sign_in(client)
    # The email set-up dialog once the code was sent.
    assert_code_fields(client.post("/settings/2fa/email/send", headers=HX).text)
    # A pending change of address on the member-info page.
    client.post(
        "/settings/profile",
        data={"name": "Alice", "email": "new@example.org", "current_password": PASSWORD},
    )
    mails_with(smtp_server, "連絡先変更の確認コード")
    assert_code_fields(client.get("/settings/profile").text)


# --- the current page, the dialog's close button, copy and print -------------------------


def current_links(html: str, nav_class: str) -> list[str]:
    nav = re.search(rf'<nav[^>]*class="{nav_class}"[^>]*>(.*?)</nav>', html, re.S)
    assert nav, nav_class
    return re.findall(r'<a [^>]*aria-current="page"[^>]*>([^<]+)</a>', nav.group(1))


@pytest.mark.parametrize(
    ("path", "marked"),
    [
        ("/", "マイページ"),
        ("/settings/2fa", "二段階認証設定"),
        ("/settings/2fa/app/setup", "二段階認証設定"),
        ("/settings/profile", "メンバー情報"),
        ("/settings/password", "メンバー情報"),
    ],
)
def test_the_menu_marks_the_current_page(client, member, path, marked):
    sign_in(client)
    html = client.get(path).text
    assert current_links(html, "site-nav") == [marked]
    assert 'class="menu-button" aria-expanded="false" aria-controls="site-nav" hidden' in html


@pytest.mark.parametrize(
    ("path", "marked"),
    [
        ("/admin/", "概要"),
        ("/admin/members", "メンバー"),
        ("/admin/members?tfa=off", "二段階認証が未設定のメンバー"),
        ("/admin/members/boss", "メンバー"),
        ("/admin/audit", "監査ログ"),
        ("/admin/pages", "メンバーページ"),
        ("/admin/pages/new", "メンバーページ"),
        ("/admin/policy", "二段階認証方式の設定"),
    ],
)
def test_the_admin_menu_marks_the_current_page(admin_client, path, marked):
    html = admin_client.get(path).text
    assert current_links(html, "admin-nav") == [marked]
    assert current_links(html, "site-nav") == ["管理画面"]


def test_signed_out_pages_have_no_menu(client):
    html = client.get("/login").text
    assert 'class="signed-out"' in html and "menu-button" not in html


def test_dialogs_have_a_close_button(client, member):
    sign_in(client)
    html = client.get("/settings/2fa").text
    dialog = html[html.index('<dialog id="dialog"') : html.index("</dialog>")]
    assert '<button type="button" class="dialog-close" aria-label="閉じる" data-close-dialog>' in (
        dialog
    )


def test_the_key_and_the_codes_have_copy_and_print_buttons(client, member):
    sign_in(client)
    setup = client.get("/settings/2fa/app/setup", headers=HX).text
    assert re.search(r'<button [^>]*data-copy-target="totp-secret"[^>]*hidden>', setup)
    secret = re.search(r'<code id="totp-secret">([A-Z2-7 ]+)</code>', setup).group(1)
    import pyotp

    code = pyotp.TOTP(secret.replace(" ", "")).now()
    done = client.post("/settings/2fa/app/setup", data={"code": code}, headers=HX).text
    assert re.search(r'<button [^>]*data-copy-target="recovery-codes"[^>]*hidden>', done)
    assert re.search(r"<button [^>]*data-print hidden>", done)
    assert 'role="status"' in done  # where コピーしました is announced
    assert len(re.findall(r"<li><code>[a-z0-9-]{11}</code></li>", done)) == 10


# --- the overview -------------------------------------------------------------------------


def test_gridlines_fall_on_round_numbers():
    assert [nice_step(n) for n in (0, 3, 7, 16, 100, 1234)] == [1, 1, 2, 5, 20, 500]


def test_chart_has_gridlines_labels_and_a_summary():
    from datetime import date, timedelta

    start = date(2026, 1, 1)
    series = [(start + timedelta(days=i), 3 + i // 10) for i in range(90)]
    chart = chart_points(series)
    assert [t["value"] for t in chart["y_ticks"]] == [0, 5, 10, 15]  # 11 at most
    assert chart["y_ticks"][0]["y"] == chart["plot_bottom"]  # 0 sits on the axis
    assert [t["day"] for t in chart["x_ticks"]][0] == start
    assert chart["x_ticks"][-1]["day"] == series[-1][0]
    assert (chart["first"], chart["last"]) == (3, 11)


def test_overview_shows_stat_cards_and_the_summary(admin_client):
    html = admin_client.get("/admin/").text
    assert re.search(r'<dl class="stats">', html)
    assert re.search(r'id="stat-on">1<', html) and "全体の100%" in html
    assert "過去90日で 1人 → 1人" in html or "過去90日で 0人 → 1人" in html
    chart = html[html.index('<svg class="chart"') : html.rindex("</svg>")]
    assert chart.count('class="grid"') >= 1 and 'class="axis"' in chart
    assert re.search(r'<text class="y-label"[^>]*>1</text>', chart)


# --- the CSP: no inline style anywhere ---------------------------------------------------------


def test_no_page_carries_an_inline_style(admin_client):
    for path in ("/", "/settings/2fa", "/settings/profile", "/admin/", "/admin/members"):
        html = admin_client.get(path).text
        assert not re.search(r"<[^>]+\sstyle=", html), path
        assert "<style" not in html, path
