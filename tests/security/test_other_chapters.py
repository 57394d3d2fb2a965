"""OWASP ASVS 4.0.3 items outside V2–V5 that the security review named: caching of
signed-in pages (V8.2.1) and oversized request bodies (V12.1.1)."""

from __future__ import annotations

import pytest
from conftest import PASSWORD

from portal.extensions import db
from portal.models import Member

SIGNED_IN_PAGES = [
    "/",
    "/settings/2fa",
    "/settings/profile",
    "/settings/password",
    "/settings/2fa/app/setup",
    "/admin/",
    "/admin/members",
    "/admin/members/alice",
    "/admin/members.csv",
    "/admin/audit",
    "/admin/audit.csv",
    "/admin/pages",
]


@pytest.mark.parametrize("url", SIGNED_IN_PAGES)
def test_v8_2_1_no_signed_in_page_may_be_cached(admin_client, member, url):
    """Review gap: only pages with secrets were no-store; the profile (address and
    phone), admin lists and the TOP page could sit in a shared browser's cache."""
    response = admin_client.get(url)
    assert response.status_code == 200, url
    assert response.headers["Cache-Control"] == "no-store"


def test_v8_2_1_pages_between_the_two_steps_are_not_cached_either(client, auth, member_with_totp):
    auth.login()
    for url in ("/login/verify", "/login/recovery"):
        assert client.get(url).headers["Cache-Control"] == "no-store"


def test_v8_2_1_static_files_may_be_cached(client):
    with client.get("/static/portal.css") as response:
        assert response.status_code == 200
        assert response.headers.get("Cache-Control") != "no-store"


@pytest.mark.parametrize("url", ["/login", "/settings/profile", "/admin/pages/new"])
def test_v12_1_1_a_huge_body_is_refused_before_it_is_read(app, request, member, url):
    """A 100 MB body answers 413 without being read or parsed (the stream would raise
    if read): nothing is stored."""
    client = app.test_client() if url == "/login" else request.getfixturevalue("admin_client")

    class Unreadable:
        def read(self, *args):
            raise AssertionError("the body was read")

        readline = read

    response = client.post(
        url,
        content_type="application/x-www-form-urlencoded",
        environ_overrides={
            "wsgi.input": Unreadable(),
            "CONTENT_LENGTH": str(100 * 1024 * 1024),
        },
    )
    assert response.status_code == 413
    assert "送信されたデータが大きすぎます。" in response.text


@pytest.mark.settings(MAX_CONTENT_LENGTH=4096)
def test_v12_1_1_the_limit_is_configurable_and_applies_to_form_fields(app, client, member):
    response = client.post("/login", data={"login_id": "alice", "password": "x" * 5000})
    assert response.status_code == 413
    with app.app_context():
        assert db.session.get(Member, member).login_id == "alice"
    ok = client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    assert ok.location == "/"


def test_v12_1_1_a_long_member_page_within_the_limit_is_accepted(app, admin_client):
    """The form-field cap follows MAX_CONTENT_LENGTH: a 90,000-character Japanese page
    (about 800 kB form-encoded, over Werkzeug's own 500 kB default) is saved."""
    body = "<p>" + "あ" * 90_000 + "</p>"
    response = admin_client.post(
        "/admin/pages/new", data={"title": "長いページ", "slug": "long", "body": body}
    )
    assert response.status_code == 302
