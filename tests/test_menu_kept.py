"""The menu's listed pages, kept by each worker until the pages' version moves on
(portal/web/menu.py): a change made through any worker or the CLI shows on every
worker's next page, and a page view costs no query for the menu while nothing changed."""

from __future__ import annotations

from conftest import PASSWORD, built_app
from sqlalchemy import event

from portal import members, pages
from portal.extensions import db
from portal.models import MemberPage


def signed_in(app):
    client = app.test_client()
    response = client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    assert response.location == "/", response.location
    return client


def menu(client) -> str:
    """The TOP page: its list of pages and the header menu."""
    response = client.get("/")
    assert response.status_code == 200
    return response.text


def publish(title: str, slug: str, page=None, listed: bool = True) -> None:
    pages.save(page, title=title, slug=slug, body="<p>x</p>", by="op", listed=listed)


def test_a_change_made_through_another_worker_shows_on_the_next_page(app, app_database_url):
    with app.app_context():
        members.create("alice", email="alice@example.com", password=PASSWORD)
        pages.save(
            None, title="営業時間のお知らせ", slug="hours", body="<p>x</p>", by="op", listed=True
        )
    client = signed_in(app)
    assert "営業時間のお知らせ" in menu(client)  # this worker keeps it now

    with built_app(app_database_url) as other_worker:
        with other_worker.app_context():
            hours = pages.find("hours")
            pages.save(
                hours, title="年末年始の営業", slug="hours", body="<p>x</p>", by="op", listed=True
            )
            pages.save(
                None, title="新しいページ", slug="new", body="<p>y</p>", by="op", listed=True
            )
        assert "年末年始の営業" in menu(client) and "新しいページ" in menu(client)
        assert "営業時間のお知らせ" not in menu(client)

        with other_worker.app_context():
            pages.delete(pages.find("new"))
            publish("年末年始の営業", "hours", pages.find("hours"), listed=False)
        assert "新しいページ" not in menu(client)
        assert "年末年始の営業" not in menu(client)  # no longer listed


def test_a_page_written_directly_through_the_session_moves_the_version_too(app):
    with app.app_context():
        members.create("alice", email="alice@example.com", password=PASSWORD)
    client = signed_in(app)
    assert "お知らせ・ページ" not in client.get("/").text
    with app.app_context():
        db.session.add(MemberPage(slug="raw", title="直接のページ", body="<p>z</p>", listed=True))
        db.session.commit()
    assert "直接のページ" in menu(client)
    with app.app_context():
        db.session.execute(db.update(MemberPage).values(title="書き換え"))
        db.session.commit()
    assert "書き換え" in menu(client)


def test_while_nothing_changes_a_page_view_reads_no_page(app):
    with app.app_context():
        members.create("alice", email="alice@example.com", password=PASSWORD)
        publish("ご案内", "info")
    client = signed_in(app)
    assert "ご案内" in menu(client)
    read = []

    def statement(conn, cursor, sql, *args):
        read.append(sql)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", statement)
    try:
        assert "ご案内" in menu(client)
    finally:
        event.remove(engine, "before_cursor_execute", statement)
    assert not any("member_page" in sql for sql in read), read
    assert len(read) == 1, read  # the member, with the policy and its methods
