"""Member pages (the guide's FAQ Q4): operators' CRUD, sanitising, the replacement
keywords (the settings-page URL among them) and who may see what."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from conftest import PASSWORD
from sqlalchemy import event

from portal import members, pages
from portal.extensions import db
from portal.models import AuditEvent, MemberPage

HX = {"HX-Request": "true"}
SETTINGS_LINK = '<a href="%url/rel:tfa:setting%">二段階認証設定</a>'


def make_page(app, slug="tfa-guide", title="二段階認証のご案内", body=SETTINGS_LINK) -> int:
    with app.app_context():
        return pages.save(None, title=title, slug=slug, body=body, by="boss").id


def stored(app, slug: str) -> MemberPage | None:
    with app.app_context():
        page = pages.find(slug)
        if page is not None:
            db.session.expunge(page)
        return page


def page_count(app) -> int:
    with app.app_context():
        return db.session.scalar(db.select(db.func.count(MemberPage.id)))


def events(app, name: str) -> list[dict]:
    with app.app_context():
        rows = db.session.scalars(db.select(AuditEvent).where(AuditEvent.event == name))
        return [json.loads(row.detail) | {"actor": row.actor_label} for row in rows]


def sign_in_as_member(app, client, name="Alice") -> None:
    with app.app_context():
        members.create("carol", email="carol@example.com", password=PASSWORD, name=name)
    response = client.post("/login", data={"login_id": "carol", "password": PASSWORD})
    assert response.location == "/"


def member_body(html: str) -> str:
    """The page body as the member's browser gets it (without the layout around it)."""
    match = re.search(r'<div class="member-page-body">(.*?)</div>\s*</article>', html, re.S)
    assert match, html
    return match.group(1)


# --- operators' CRUD --------------------------------------------------------------------


def test_create_list_edit_delete(app, admin_client):
    client = admin_client
    assert "メンバーページ" in client.get("/admin/pages").text
    form = client.get("/admin/pages/new")
    assert form.status_code == 200 and 'name="slug"' in form.text

    response = client.post(
        "/admin/pages/new",
        data={"title": "ご案内", "slug": "tfa-guide", "body": "<p>こんにちは</p>"},
    )
    assert response.status_code == 302 and response.location == "/admin/pages"
    listing = client.get("/admin/pages").text
    assert "メンバーページ「ご案内」を保存しました。" in listing
    assert "ご案内" in listing and "tfa-guide" in listing and "boss" in listing
    page = stored(app, "tfa-guide")
    assert page.body == "<p>こんにちは</p>" and page.updated_by == "boss"
    assert f"/admin/pages/{page.id}/edit" in listing
    assert f"/admin/pages/{page.id}/delete" in listing
    assert "/pages/tfa-guide" in listing

    edit = client.get(f"/admin/pages/{page.id}/edit")
    assert edit.status_code == 200 and 'value="tfa-guide"' in edit.text
    assert "&lt;p&gt;こんにちは&lt;/p&gt;" in edit.text  # the textarea shows the HTML
    response = client.post(
        f"/admin/pages/{page.id}/edit",
        data={"title": "新しいご案内", "slug": "guide", "body": "<p>更新</p>"},
    )
    assert response.status_code == 302
    assert stored(app, "tfa-guide") is None
    assert stored(app, "guide").title == "新しいご案内"

    confirm = client.get(f"/admin/pages/{page.id}/delete")
    assert confirm.status_code == 200 and "削除すると元に戻せません。" in confirm.text
    assert "<html" in confirm.text  # a full page without JavaScript
    assert page_count(app) == 1  # a GET deletes nothing
    response = client.post(f"/admin/pages/{page.id}/delete")
    assert response.status_code == 302 and response.location == "/admin/pages"
    assert "メンバーページ「新しいご案内」を削除しました。" in client.get("/admin/pages").text
    assert page_count(app) == 0

    saved = events(app, "admin.page_saved")
    assert [(e["slug"], e["created"], e["actor"]) for e in saved] == [
        ("tfa-guide", True, "boss"),
        ("guide", False, "boss"),
    ]
    assert [e["slug"] for e in events(app, "admin.page_deleted")] == ["guide"]


def test_delete_dialog_is_a_partial_for_htmx(app, admin_client):
    page_id = make_page(app)
    confirm = admin_client.get(f"/admin/pages/{page_id}/delete", headers=HX)
    assert confirm.status_code == 200
    assert "<html" not in confirm.text and 'id="dialog-title"' in confirm.text
    assert f'hx-post="/admin/pages/{page_id}/delete"' in confirm.text
    response = admin_client.post(f"/admin/pages/{page_id}/delete", headers=HX)
    assert response.headers["HX-Redirect"] == "/admin/pages"
    assert page_count(app) == 0


def test_nav_links_to_member_pages(admin_client):
    assert 'href="/admin/pages"' in admin_client.get("/admin/").text


def test_unknown_page_ids_are_404(admin_client):
    for url in ("/admin/pages/99/edit", "/admin/pages/99/delete"):
        assert admin_client.get(url).status_code == 404
        assert admin_client.post(url).status_code == 404


def test_duplicate_slug_is_a_field_error(app, admin_client):
    make_page(app, slug="taken")
    other = make_page(app, slug="other")
    response = admin_client.post(
        "/admin/pages/new", data={"title": "x", "slug": "taken", "body": "<p>new</p>"}
    )
    assert response.status_code == 200
    assert "このスラッグは既に使われています。" in response.text
    assert 'aria-invalid="true"' in response.text
    assert page_count(app) == 2
    response = admin_client.post(
        f"/admin/pages/{other}/edit", data={"title": "x", "slug": "taken", "body": ""}
    )
    assert "このスラッグは既に使われています。" in response.text
    assert stored(app, "other") is not None
    # Keeping its own slug is not a clash.
    response = admin_client.post(
        f"/admin/pages/{other}/edit", data={"title": "y", "slug": "other", "body": ""}
    )
    assert response.status_code == 302 and stored(app, "other").title == "y"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"title": "", "slug": "ok"}, "タイトルを入力してください。"),
        ({"title": "   ", "slug": "ok"}, "タイトルを入力してください。"),
        ({"title": "t" * 201, "slug": "ok"}, "タイトルは200文字以内で入力してください。"),
        ({"title": "a\x00b", "slug": "ok"}, "タイトルに使用できない文字が含まれています。"),
        ({"title": "t", "slug": ""}, "スラッグを入力してください。"),
        ({"title": "t", "slug": "Upper"}, "半角英小文字・数字・ハイフン"),
        ({"title": "t", "slug": "with space"}, "半角英小文字・数字・ハイフン"),
        ({"title": "t", "slug": "../etc"}, "半角英小文字・数字・ハイフン"),
        ({"title": "t", "slug": "日本語"}, "半角英小文字・数字・ハイフン"),
        ({"title": "t", "slug": "a" * 65}, "半角英小文字・数字・ハイフン"),
        ({"title": "t", "slug": "ok\nx"}, "半角英小文字・数字・ハイフン"),
        ({"title": "t", "slug": "ok", "body": "x" * 100_001}, "本文は100,000文字以内"),
    ],
)
def test_bad_input_is_a_field_error_and_nothing_is_saved(app, admin_client, data, message):
    response = admin_client.post("/admin/pages/new", data=data)
    assert response.status_code == 200
    assert message in response.text
    assert page_count(app) == 0
    assert events(app, "admin.page_saved") == []


def test_bad_input_on_edit_changes_nothing(app, admin_client):
    page_id = make_page(app)
    response = admin_client.post(
        f"/admin/pages/{page_id}/edit", data={"title": "", "slug": "BAD", "body": "x"}
    )
    assert "タイトルを入力してください。" in response.text
    assert "半角英小文字・数字・ハイフン" in response.text
    assert stored(app, "tfa-guide").title == "二段階認証のご案内"


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_long_slug_and_body_at_the_limits_are_saved(app, admin_client, content_type):
    slug = "a-" * 32
    # ~900 kB url-encoded: Werkzeug 3.1 caps only multipart fields at 500 kB (this is 300 kB)
    body = "あ" * 100_000
    response = admin_client.post(
        "/admin/pages/new",
        data={"title": "長い" * 100, "slug": slug, "body": body},
        content_type=content_type,
    )
    assert response.status_code == 302, response.text[:500]
    assert stored(app, slug).body == body


def test_slug_is_trimmed(app, admin_client):
    admin_client.post("/admin/pages/new", data={"title": " t ", "slug": " guide ", "body": ""})
    assert stored(app, "guide").title == "t"


# --- access -----------------------------------------------------------------------------


def page_admin_urls(app) -> list[tuple[str, str]]:
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("admin.page"):
            url = rule.rule.replace("<int:page_id>", "1")
            found += [(m, url) for m in sorted((rule.methods or set()) & {"GET", "POST"})]
    return found


def test_every_page_admin_url_is_covered(app):
    assert sorted(page_admin_urls(app)) == sorted(
        [
            ("GET", "/admin/pages"),
            ("GET", "/admin/pages/new"),
            ("POST", "/admin/pages/new"),
            ("GET", "/admin/pages/1/edit"),
            ("POST", "/admin/pages/1/edit"),
            ("GET", "/admin/pages/1/delete"),
            ("POST", "/admin/pages/1/delete"),
        ]
    )


def test_members_who_are_not_operators_get_403_everywhere(app, client, member, auth):
    make_page(app)
    auth.login()
    for method, url in page_admin_urls(app):
        data = {"title": "hacked", "slug": "hacked", "body": "x"}
        response = client.open(url, method=method, data=data if method == "POST" else None)
        assert response.status_code == 403, (method, url)
    assert page_count(app) == 1 and stored(app, "tfa-guide").title == "二段階認証のご案内"


def test_visitors_are_sent_to_sign_in_for_admin_urls(app, client):
    make_page(app)
    for method, url in page_admin_urls(app):
        response = client.open(url, method=method)
        assert response.status_code == 302 and response.location.startswith("/login"), url
    assert page_count(app) == 1


def test_stale_operator_with_2fa_must_reauthenticate_before_saving(
    app, admin_client, operator_totp
):
    client, totp_obj = admin_client, operator_totp
    page_id = make_page(app)
    assert client.get("/admin/pages/new").status_code == 200  # fresh: the editor
    with client.session_transaction() as s:
        s["tfa_at"] -= 11 * 60
        s["auth_at"] -= 11 * 60

    for url in ("/admin/pages/new", f"/admin/pages/{page_id}/edit"):
        response = client.post(url, data={"title": "t", "slug": "stale", "body": "<p>x</p>"})
        assert response.status_code == 200
        assert "本人確認" in response.text and "/settings/reauth?next=" in response.text
    response = client.post(f"/admin/pages/{page_id}/delete")
    assert "本人確認" in response.text
    assert client.get(f"/admin/pages/{page_id}/delete", headers=HX).text.count("本人確認") >= 1
    assert stored(app, "stale") is None and stored(app, "tfa-guide").slug == "tfa-guide"
    assert events(app, "admin.page_saved") == [] and events(app, "admin.page_deleted") == []

    # After the second step again, the save goes through.
    next_code = totp_obj.at(datetime.now(UTC) + timedelta(seconds=30))
    assert client.post("/settings/reauth", data={"code": next_code}).status_code == 302
    response = client.post(
        "/admin/pages/new", data={"title": "t", "slug": "fresh", "body": "<p>x</p>"}
    )
    assert response.status_code == 302 and stored(app, "fresh") is not None


# --- what members see -------------------------------------------------------------------


def test_keyword_link_leads_to_the_settings_page(app, client):
    make_page(app, body=f"<p>設定は{SETTINGS_LINK}から。</p>")
    assert stored(app, "tfa-guide").body == (
        '<p>設定は<a href="%url/rel:tfa:setting%" rel="noopener noreferrer">'
        "二段階認証設定</a>から。</p>"
    )
    sign_in_as_member(app, client)
    response = client.get("/pages/tfa-guide")
    assert response.status_code == 200
    assert "二段階認証のご案内" in response.text
    body = member_body(response.text)
    assert '<a href="/settings/2fa" rel="noopener noreferrer">二段階認証設定</a>' in body
    assert "%url/rel:tfa:setting%" not in response.text
    href = re.search(r'<a href="([^"]+)" rel="noopener noreferrer">二段階認証設定', body).group(1)
    settings = client.get(href)
    assert settings.status_code == 200 and "二段階認証" in settings.text


def test_keywords_survive_sanitising_in_text_and_attributes():
    body = (
        '<p title="%member:name%">%member:name% (%member:login_id%)</p>'
        '<a href="%url/rel:tfa:setting%" title="%url/rel:tfa:setting%">a</a>'
        '<img src="%url/rel:tfa:setting%" alt="%member:login_id%">'
        '<a href="%url/rel:tfa:setting%#app">b</a>'
        "<p>%unknown:keyword% 100%</p>"
    )
    cleaned = pages.sanitise(body)
    assert cleaned.count("%url/rel:tfa:setting%") == 4
    assert cleaned.count("%member:name%") == 1  # p's title is not an allowed attribute
    assert cleaned.count("%member:login_id%") == 2
    assert "%unknown:keyword% 100%" in cleaned
    assert "portalkw" not in cleaned


def test_member_values_are_escaped(app, client):
    make_page(
        app,
        body=(
            "<p>ようこそ、%member:name%さん（%member:login_id%）</p>"
            '<p><a href="%member:name%" title="%member:name%">me</a></p>'
        ),
    )
    sign_in_as_member(app, client, name="<script>alert(1)</script>")
    response = client.get("/pages/tfa-guide")
    body = member_body(response.text)
    assert "<script" not in body
    assert "ようこそ、&lt;script&gt;alert(1)&lt;/script&gt;さん（carol）" in body
    assert "%member:" not in body


def test_a_name_cannot_become_a_script_url(app, client):
    make_page(app, body='<a href="%member:name%">me</a>')
    sign_in_as_member(app, client, name="javascript:alert(1)")
    body = member_body(client.get("/pages/tfa-guide").text)
    assert "javascript:" not in body and "<a" in body


XSS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">click</a>',
    '<a href="JaVaScRiPt:alert(1)">click</a>',
    '<a href="jav&#x09;ascript:alert(1)">click</a>',
    '<a href=" javascript:alert(1)">click</a>',
    "<svg onload=alert(1)><circle r=1></circle></svg>",
    '<iframe src="https://evil.example/"></iframe>',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    '<p style="background:url(javascript:alert(1))">styled</p>',
    "<style>body{display:none}</style>",
    '<a href="data:text/html,<script>alert(1)</script>">data</a>',
    '<img src="data:image/svg+xml,<svg onload=alert(1)>">',
    "<object data=x></object><embed src=x>",
    '<form action="https://evil.example/"><input name=password></form>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>',
    '<a href="https://ok.example/" onclick="alert(1)" target="_blank">ok</a>',
    "<base href=https://evil.example/><meta http-equiv=refresh content=0;url=//evil>",
    "<!--<script>alert(1)</script>-->",
]
FORBIDDEN = re.compile(
    r"<script|<svg|<iframe|<object|<embed|<style|<form|<input|<base|<meta|<math"
    r"|\son\w+\s*=|javascript:|style=|data:|srcdoc|target=",
    re.I,
)


def test_xss_in_the_body_never_reaches_a_member(app, admin_client):
    # Some attacks leave an element open that swallows the rest: the keepers go first.
    ok_link = '<a href="https://ok.example/" target="_blank">ok</a>'
    body = f"<p>keep</p><p>{SETTINGS_LINK}</p>{ok_link}" + "".join(XSS)
    response = admin_client.post(
        "/admin/pages/new", data={"title": "x", "slug": "xss", "body": body}
    )
    assert response.status_code == 302
    saved = stored(app, "xss").body
    assert not FORBIDDEN.search(saved), saved
    assert "<p>keep</p>" in saved and "%url/rel:tfa:setting%" in saved
    html = member_body(admin_client.get("/pages/xss").text)
    assert not FORBIDDEN.search(html), html
    assert '<a href="https://ok.example/" rel="noopener noreferrer">ok</a>' in html
    assert 'href="/settings/2fa"' in html


@pytest.mark.parametrize("attack", XSS)
def test_each_xss_attempt_is_stripped(attack):
    assert not FORBIDDEN.search(pages.sanitise(attack)), attack


def test_a_body_stored_without_sanitising_is_cleaned_on_view(app, client):
    """Defence in depth: a row written straight into the database is cleaned on view."""
    with app.app_context():
        db.session.add(
            MemberPage(slug="raw", title="raw", body="<script>alert(1)</script><p>ok</p>")
        )
        db.session.commit()
    sign_in_as_member(app, client)
    body = member_body(client.get("/pages/raw").text)
    assert "<script" not in body and "alert(1)" not in body and "<p>ok</p>" in body


def test_allowed_markup_is_kept():
    body = (
        "<h2>見出し</h2><h3>小見出し</h3><h4>h4</h4><p>本文<br><strong>強調</strong><em>斜体</em>"
        "<code>code</code></p><pre>pre</pre><blockquote>引用</blockquote>"
        "<ul><li>a</li></ul><ol><li>b</li></ol>"
        "<table><thead><tr><th>h</th></tr></thead><tbody><tr><td>d</td></tr></tbody></table>"
        '<img src="/static/x.png" alt="x"><a href="mailto:help@example.com" title="t">m</a>'
        '<a href="https://example.com/">h</a><a href="/settings/profile">r</a>'
    )
    cleaned = pages.sanitise(body)
    for piece in (
        "<h2>見出し</h2>",
        "<h4>h4</h4>",
        "<br>",
        "<strong>強調</strong>",
        "<pre>pre</pre>",
        "<blockquote>引用</blockquote>",
        "<td>d</td>",
        '<img src="/static/x.png" alt="x">',
        'href="mailto:help@example.com"',
        'href="https://example.com/"',
        'href="/settings/profile"',
        'rel="noopener noreferrer"',
    ):
        assert piece in cleaned, piece


def test_visitors_are_sent_to_sign_in(app, client):
    make_page(app)
    response = client.get("/pages/tfa-guide")
    assert response.status_code == 302
    assert response.location.startswith("/login")
    # Unknown slugs too: nothing tells a visitor which pages exist.
    assert client.get("/pages/nothing-here").location.startswith("/login")


def test_a_pending_sign_in_is_sent_to_its_second_step(app, client, member_with_totp, auth):
    make_page(app)
    assert auth.login().location == "/login/verify"
    response = client.get("/pages/tfa-guide")
    assert response.status_code == 302 and response.location == "/login/verify"


def test_signed_in_member_with_2fa_sees_the_page(app, client, member_with_totp, auth):
    _, totp_obj, _ = member_with_totp
    make_page(app, body="<p>%member:name%</p>" + SETTINGS_LINK)
    auth.full_login(totp_obj)
    response = client.get("/pages/tfa-guide")
    assert response.status_code == 200
    assert "<p>Alice</p>" in response.text and 'href="/settings/2fa"' in response.text
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("slug", ["nothing-here", "UPPER", "a" * 65, "%2e%2e"])
def test_unknown_slugs_are_404(app, client, slug):
    make_page(app)
    sign_in_as_member(app, client)
    response = client.get(f"/pages/{slug}")
    assert response.status_code == 404
    assert "お探しのページは見つかりませんでした。" in response.text


def test_deleted_page_is_gone_for_members(app, client):
    page_id = make_page(app)
    with app.app_context():
        pages.delete(db.session.get(MemberPage, page_id))
    sign_in_as_member(app, client)
    assert client.get("/pages/tfa-guide").status_code == 404


# --- listed on マイページ and in the menu (issue 10, bug 15) --------------------------------


def nav_links(html: str) -> list[str]:
    """The titles of the member pages in the header menu, in order."""
    nav = html[html.index("<nav") : html.index("</nav>")]
    return re.findall(r'<a href="/pages/[^"]+"[^>]*>([^<]+)</a>', nav)


def card_links(html: str) -> list[str]:
    if 'id="member-pages"' not in html:
        return []
    card = html[html.index('id="member-pages"') :]
    card = card[: card.index("</section>")]
    return re.findall(r'<a href="/pages/[^"]+"><span class="listed-title">([^<]+)</span></a>', card)


def save_page(client, slug, title, *, listed, order="", page_id=None):
    data = {"title": title, "slug": slug, "body": f"<p>{title}</p>", "menu_order": order}
    if listed:
        data["listed"] = "y"
    url = f"/admin/pages/{page_id}/edit" if page_id else "/admin/pages/new"
    return client.post(url, data=data)


def test_an_operator_lists_pages_on_my_page_and_in_the_menu(app, admin_client):
    """Bug: operator pages were reachable only by typing their URL."""
    assert (
        save_page(admin_client, "fees", "料金のご案内", listed=True, order="2").status_code == 302
    )
    save_page(admin_client, "faq", "よくある質問", listed=True, order="1")
    save_page(admin_client, "access", "アクセス", listed=True, order="2")  # same order: by title
    save_page(admin_client, "memo", "内部メモ", listed=False, order="0")

    listing = admin_client.get("/admin/pages").text
    assert "表示（表示順 2）" in listing and "表示しない" in listing
    edit = admin_client.get(f"/admin/pages/{stored(app, 'faq').id}/edit").text
    assert re.search(
        r'<input[^>]*checked[^>]*name="listed"|<input[^>]*name="listed"[^>]*checked', edit
    )
    assert 'name="menu_order"' in edit and 'value="1"' in edit

    member = app.test_client()
    sign_in_as_member(app, member)
    home = member.get("/").text
    assert "お知らせ・ページ" in home
    assert card_links(home) == ["よくある質問", "アクセス", "料金のご案内"]
    assert nav_links(home) == ["よくある質問", "アクセス", "料金のご案内"]
    assert "内部メモ" not in home  # not listed: neither on マイページ nor in the menu
    fees = member.get("/pages/fees").text
    assert nav_links(fees) == ["よくある質問", "アクセス", "料金のご案内"]
    assert re.search(r'<a href="/pages/fees" aria-current="page">', fees)
    assert member.get("/pages/memo").status_code == 200  # unlisted is not hidden by URL

    saved = events(app, "admin.page_saved")
    assert (saved[0]["listed"], saved[0]["menu_order"]) == (True, 2)
    audit_page = admin_client.get("/admin/audit?event=admin.page_saved").text
    assert (
        "ページ /pages/fees を作成しました。マイページとメニューに表示（表示順 2）。" in audit_page
    )

    # Unticked again, the page leaves both.
    save_page(admin_client, "fees", "料金のご案内", listed=False, page_id=stored(app, "fees").id)
    home = member.get("/").text
    assert card_links(home) == nav_links(home) == ["よくある質問", "アクセス"]


def test_without_listed_pages_my_page_has_no_empty_card(app, client, member, auth):
    make_page(app)  # saved without listing
    auth.login()
    home = client.get("/").text
    assert 'id="member-pages"' not in home and nav_links(home) == []


@pytest.mark.parametrize("order", ["abc", "1000", "-1", "1.5", "٣", "1 2", "0" * 5000, "９" * 5000])
def test_a_bad_menu_order_is_a_field_error(app, admin_client, order):
    response = save_page(admin_client, "guide", "案内", listed=True, order=order)
    assert response.status_code == 200
    assert "表示順は0〜999の数字で入力してください。" in response.text
    assert re.search(
        r'<input[^>]*aria-invalid="true"[^>]*name="menu_order"|'
        r'<input[^>]*name="menu_order"[^>]*aria-invalid="true"',
        response.text,
    )
    assert page_count(app) == 0 and events(app, "admin.page_saved") == []


@pytest.mark.parametrize(("typed", "kept"), [("", 0), ("999", 999), ("０１２", 12), (" 7 ", 7)])
def test_menu_order_accepts_0_to_999_and_full_width_digits(app, admin_client, typed, kept):
    assert save_page(admin_client, "guide", "案内", listed=True, order=typed).status_code == 302
    assert stored(app, "guide").menu_order == kept


def test_the_domain_refuses_an_order_out_of_range(ctx):
    for order in (-1, 1000, True):
        with pytest.raises(pages.PageError) as refused:
            pages.save(None, title="t", slug="s", body="", by="x", listed=True, menu_order=order)
        assert refused.value.field == "menu_order"


def test_a_member_cannot_change_listing(app, client, member, auth):
    page_id = make_page(app)
    auth.login()
    data = {"title": "二段階認証のご案内", "slug": "tfa-guide", "listed": "y", "menu_order": "1"}
    assert client.post(f"/admin/pages/{page_id}/edit", data=data).status_code == 403
    assert not stored(app, "tfa-guide").listed
    assert "二段階認証のご案内" not in client.get("/").text


def test_listed_pages_cost_one_query_per_request(app, client, member, auth):
    """マイページ shows them twice (card and menu): the list is read once."""
    make_page(app, slug="a", title="A")
    with app.app_context():
        for page in db.session.scalars(db.select(MemberPage)):
            page.listed = True
        db.session.commit()
    auth.login()
    seen = []

    def count(conn, cursor, statement, *args):
        if "FROM member_page" in statement:
            seen.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        home = client.get("/").text
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert card_links(home) == nav_links(home) == ["A"]
    assert len(seen) == 1, seen


def test_a_member_held_on_set_up_is_offered_no_page(app, client, member, auth):
    """With 2FA required and the grace over, the set-up page lists no operator page and
    the pages stay out of reach."""
    from portal.twofactor import policy as rules

    make_page(app, slug="news", title="重要なお知らせ")
    with app.app_context():
        pages.save(
            pages.find("news"), title="重要なお知らせ", slug="news", body="", by="boss", listed=True
        )
        row = rules.current(datetime.now(UTC))
        clean, errors = rules.validate(
            rules.values(row) | {"enforcement": "required", "grace_days": "0"},
            path_exists=lambda path: True,
        )
        assert not errors, errors
        rules.save(row, clean, by="test", now=datetime.now(UTC) - timedelta(seconds=1))
        db.session.commit()
    auth.login()
    setup = client.get("/settings/2fa/setup")
    assert setup.status_code == 200 and "重要なお知らせ" not in setup.text
    assert client.get("/pages/news").location == "/settings/2fa/setup"
    assert client.get("/").location == "/settings/2fa/setup"


def test_a_long_title_is_shortened_in_the_menu_only(app, admin_client):
    """The header holds short labels (a phone shows them in a narrow menu); マイページ's
    card has room for the whole title."""
    title = "会員のみなさまへの大切なお知らせ（二段階認証の設定のお願い）"
    save_page(admin_client, "notice", title, listed=True)
    member = app.test_client()
    sign_in_as_member(app, member)
    home = member.get("/").text
    assert card_links(home) == [title]
    assert nav_links(home) == [title[:19] + "…"]
