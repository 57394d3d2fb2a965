"""Member-area forms, the operator's side (issue 15): the list, the editor (rows added,
moved and removed in the page, without JavaScript and with htmx), the validation
shown where it belongs, 受付の停止・再開, deletion, the JSON export, and each form's
submissions with their filters and CSV, all audited and refused to everyone else."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import PASSWORD, extract_csrf
from markupsafe import escape

from portal import member_forms, members
from portal.extensions import db
from portal.models import AuditEvent, FormSubmission, MemberForm

HX = {"HX-Request": "true"}
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = (ROOT / "docs" / "examples" / "apply-form.json").read_text()


def make_form(app, text: str = EXAMPLE, **changes) -> int:
    data = json.loads(text) | changes
    with app.app_context():
        return member_forms.save(None, member_forms.parse(data), by="boss").id


def stored(app, slug: str) -> MemberForm | None:
    with app.app_context():
        form = member_forms.find(slug)
        if form is not None:
            db.session.expunge(form)
        return form


def stored_spec(app, slug: str) -> dict:
    with app.app_context():
        return member_forms.spec_of(member_forms.find(slug)).as_json()


def form_count(app) -> int:
    with app.app_context():
        return db.session.scalar(db.select(db.func.count(MemberForm.id)))


def events(app, name: str) -> list[dict]:
    with app.app_context():
        rows = db.session.scalars(
            db.select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.id)
        )
        return [json.loads(row.detail) | {"actor": row.actor_label} for row in rows]


def send(app, form_id: int, login_id: str, answers: dict, *, when=None, stepped_up=False) -> int:
    """A member's sent submission (the member is created when new)."""
    when = when or datetime.now(UTC)
    with app.app_context():
        m = members.find(login_id) or members.create(
            login_id, email=f"{login_id}@example.com", password=PASSWORD, name=login_id.title()
        )
        form = db.session.get(MemberForm, form_id)
        draft = member_forms.start_draft(form, m, answers, when - timedelta(seconds=5))
        assert member_forms.submit(
            draft, when, second_step_at=when if stepped_up else None, stepped_up=stepped_up
        )
        return draft.id


APPLY = {
    "course": "入門コース",
    "date": "2026-12-01",
    "people": "2",
    "phone": "",
    "note": "",
    "agree": "1",
}


def editor_data(**changes) -> dict:
    """What the editor posts for a small valid form."""
    data = {
        "title": "お申し込み",
        "slug": "apply",
        "open": "y",
        "require_2fa": "off",
        "step_up_minutes": "0",
        "menu_order": "0",
        "input_body": "<p>入力してください。</p>",
        "confirm_body": "<p>コース：%form:course%</p>",
        "thanks_body": '<p>受け付けました。<a href="%url/rel:tfa:setting%">二段階認証設定</a></p>',
        "field-0-name": "course",
        "field-0-label": "コース",
        "field-0-type": "select",
        "field-0-required": "1",
        "field-0-max_length": "",
        "field-0-choices": "A\nB\n",
        "field-0-help": "",
        "field-1-name": "note",
        "field-1-label": "ご要望",
        "field-1-type": "textarea",
        "field-1-max_length": "500",
        "field-1-choices": "",
        "field-1-help": "任意です。",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def row_values(html: str, key: str) -> list[str]:
    """The values of the editor's rows' ``key`` inputs, in order."""
    found = re.findall(rf'name="field-(\d+)-{key}" value="([^"]*)"', html)
    assert [int(i) for i, _ in found] == list(range(len(found)))
    return [value for _, value in found]


# --- list, create, edit -------------------------------------------------------------------


def test_nav_and_empty_list(admin_client):
    assert 'href="/admin/forms"' in admin_client.get("/admin/").text
    listing = admin_client.get("/admin/forms")
    assert listing.status_code == 200
    assert "フォームはまだありません。" in listing.text
    assert 'href="/admin/forms/new"' in listing.text and "新しいフォーム" in listing.text


def test_create_list_and_edit_without_javascript(app, admin_client):
    client = admin_client
    new = client.get("/admin/forms/new")
    assert new.status_code == 200 and 'name="field-0-name"' in new.text
    assert "%url/rel:tfa:setting%" in new.text and "%member:login_id%" in new.text
    assert "%form:" in new.text

    response = client.post("/admin/forms/new", data=editor_data())
    assert response.status_code == 302 and response.location == "/admin/forms"
    spec = stored_spec(app, "apply")
    assert spec["title"] == "お申し込み" and spec["open"] is True
    assert spec["fields"] == [
        {"name": "course", "label": "コース", "type": "select", "required": True,
         "choices": ["A", "B"]},
        {"name": "note", "label": "ご要望", "type": "textarea", "required": False,
         "max_length": 500, "help": "任意です。"},
    ]  # fmt: skip
    assert spec["pages"]["thanks"].startswith('<p>受け付けました。<a href="%url/rel:tfa:setting%"')

    form = stored(app, "apply")
    listing = client.get("/admin/forms").text
    assert "フォーム「お申し込み」を保存しました。" in listing
    assert 'href="/forms/apply"' in listing and "受付中" in listing
    assert f'href="/admin/forms/{form.id}/edit"' in listing
    assert 'href="/admin/forms/apply/submissions"' in listing
    assert f'action="/admin/forms/{form.id}/open"' in listing and "受付を停止" in listing
    assert f'href="/admin/forms/{form.id}/delete"' in listing

    edit = client.get(f"/admin/forms/{form.id}/edit")
    assert edit.status_code == 200
    assert row_values(edit.text, "name") == ["course", "note"]
    assert ">A\nB</textarea>" in edit.text and 'value="500"' in edit.text
    assert (
        f'href="/admin/forms/{form.id}/export.json"' in edit.text and "JSONで書き出す" in edit.text
    )
    response = client.post(
        f"/admin/forms/{form.id}/edit",
        data=editor_data(title="予約", slug="reserve", open=None, step_up_minutes="１０"),
    )
    assert response.status_code == 302
    assert stored(app, "apply") is None
    changed = stored(app, "reserve")
    assert changed.id == form.id and changed.title == "予約" and not changed.is_open
    assert changed.step_up_minutes == 10 and changed.version == form.version + 1

    saved = events(app, "admin.form_saved")
    shown = [(e["slug"], e["created"], e["open"], e["step_up_minutes"], e["actor"]) for e in saved]
    assert shown == [
        ("apply", True, True, 0, "boss"),
        ("reserve", False, False, 10, "boss"),
    ]  # fmt: skip


def post_op(client, url, data, op, htmx=False):
    return client.post(url, data=data | {"op": op}, headers=HX if htmx else {})


@pytest.mark.parametrize("htmx", [False, True], ids=["no-js", "htmx"])
def test_rows_are_added_moved_and_removed_in_the_page(app, admin_client, htmx):
    client = admin_client
    data = editor_data()
    response = post_op(client, "/admin/forms/new", data, "add", htmx)
    assert response.status_code == 200
    html = response.text
    assert ("<html" in html) is not htmx  # htmx swaps just the editor
    assert html.count('id="form-editor"') == 1
    assert row_values(html, "name") == ["course", "note", ""]
    assert 'id="field-2-name" name="field-2-name" value="" ' in html
    assert re.search(r'id="field-2-name"[^>]*autofocus', html)  # the new row's name
    assert row_values(html, "label") == ["コース", "ご要望", ""]
    assert 'value="お申し込み"' in html  # the fixed fields are kept as typed

    response = post_op(client, "/admin/forms/new", data, "down-0", htmx)
    assert row_values(response.text, "name") == ["note", "course"]
    # The checkbox, the choices and the type travel with their row.
    assert 'name="field-1-required" value="1" checked' in response.text
    assert 'name="field-0-required" value="1">' in response.text
    assert ">A\nB\n</textarea>" in response.text.split('id="row-1"')[1]
    assert re.search(r'name="field-1-type">.*?<option value="select" selected', response.text, re.S)

    response = post_op(client, "/admin/forms/new", data, "up-1", htmx)
    assert row_values(response.text, "name") == ["note", "course"]
    response = post_op(client, "/admin/forms/new", data, "up-0", htmx)  # the first stays
    assert row_values(response.text, "name") == ["course", "note"]
    response = post_op(client, "/admin/forms/new", data, "remove-0", htmx)
    assert row_values(response.text, "name") == ["note"]
    response = post_op(client, "/admin/forms/new", data, "remove-9", htmx)  # a stale button
    assert row_values(response.text, "name") == ["course", "note"]

    assert form_count(app) == 0 and events(app, "admin.form_saved") == []  # nothing saved

    response = post_op(client, "/admin/forms/new", data, "save", htmx)
    if htmx:
        assert response.headers["HX-Redirect"] == "/admin/forms"
    else:
        assert response.status_code == 302
    assert stored(app, "apply") is not None


def test_the_editor_is_one_form_whose_buttons_post_their_op(admin_client):
    html = admin_client.get("/admin/forms/new").text
    editor = html.split('id="form-editor"')[1].split("</form>")[0]
    assert 'hx-post="/admin/forms/new"' in html
    for op in ("save", "add", "up-0", "down-0", "remove-0"):
        assert f'type="submit" name="op" value="{op}"' in editor
    # Enter in a text input presses the first submit button: 保存する, not a row's 削除.
    assert editor.index('value="save"') < editor.index('value="remove-0"')


def test_rows_are_capped(app, admin_client):
    data = editor_data()
    for i in range(2, member_forms.MAX_FIELDS + 3):
        data |= {f"field-{i}-name": f"f{i}", f"field-{i}-label": f"L{i}", f"field-{i}-type": "text"}
    response = post_op(admin_client, "/admin/forms/new", data, "add")
    assert len(row_values(response.text, "name")) == member_forms.MAX_FIELDS
    assert re.search(r'value="add" id="add-field"[^>]* disabled', response.text)


def error_near(html: str, input_id: str) -> str:
    """The error message shown for the input with that id."""
    match = re.search(rf'<p id="{input_id}-error" class="error" role="alert">([^<]*)</p>', html)
    assert match, html
    tag = re.search(rf'<(?:input|select|textarea)\b[^>]*\bid="{input_id}"[^>]*>', html).group(0)
    assert 'aria-invalid="true"' in tag, tag
    return match.group(1)


@pytest.mark.parametrize("htmx", [False, True], ids=["no-js", "htmx"])
@pytest.mark.parametrize(
    ("changes", "input_id", "message"),
    [
        ({"slug": "Bad Slug"}, "slug", "スラッグは"),
        ({"title": ""}, "title", "入力してください。"),
        ({"field-1-name": "course"}, "field-1-name", "項目名「course」が重複しています。"),
        ({"field-1-name": "1st"}, "field-1-name", "半角英小文字で始まる"),
        ({"field-0-label": ""}, "field-0-label", "入力してください。"),
        ({"field-0-choices": "\n\n"}, "field-0-choices", "選択肢を1つ以上指定してください。"),
        ({"field-0-choices": "A\nA"}, "field-0-choices", "選択肢「A」が重複しています。"),
        ({"field-1-max_length": "abc"}, "field-1-max_length", "数字で入力してください。"),
        ({"field-1-max_length": "99999"}, "field-1-max_length", "1〜10000の整数"),
        ({"field-0-type": "file"}, "field-0-type", "のいずれかで指定してください。"),
        ({"thanks_body": "<p>%form:unknown%</p>"}, "thanks_body",
         "%form:unknown% の項目がありません"),
        ({"input_body": "<p>%form:course%</p>"}, "input_body",
         "入力ページでは %form:course% は使えません"),
        ({"step_up_minutes": "1441"}, "step_up_minutes", "0〜1440"),
        ({"menu_order": "x"}, "menu_order", "表示順は0〜999"),
        ({"require_2fa": "always"}, "require_2fa", "off / warn / setup"),
    ],
)  # fmt: skip
def test_bad_input_is_shown_at_its_field_and_kept(
    app, admin_client, htmx, changes, input_id, message
):
    data = editor_data(**changes)
    response = admin_client.post("/admin/forms/new", data=data, headers=HX if htmx else {})
    assert response.status_code == 400
    assert message in error_near(response.text, input_id)
    assert "保存できませんでした。" in response.text
    # What was typed is still there.
    assert 'value="お申し込み"' in response.text or changes.get("title") == ""
    assert row_values(response.text, "label")[1] == "ご要望"
    assert "受け付けました。" in response.text or "thanks_body" in changes
    assert form_count(app) == 0 and events(app, "admin.form_saved") == []


def test_no_fields_and_a_taken_slug_are_refused(app, admin_client):
    make_form(app)  # slug "apply"
    response = admin_client.post("/admin/forms/new", data=editor_data())
    assert response.status_code == 400
    assert "このスラッグは既に使われています。" in error_near(response.text, "slug")
    data = {k: v for k, v in editor_data(slug="other", confirm_body="").items()}
    data = {k: v for k, v in data.items() if not k.startswith("field-")}
    response = admin_client.post("/admin/forms/new", data=data)
    assert response.status_code == 400 and "項目を1つ以上追加してください。" in response.text
    assert form_count(app) == 1


def test_bad_input_on_edit_changes_nothing(app, admin_client):
    form_id = make_form(app)
    before = stored_spec(app, "apply")
    response = admin_client.post(
        f"/admin/forms/{form_id}/edit", data=editor_data(slug="apply", **{"field-0-choices": ""})
    )
    assert response.status_code == 400
    assert stored_spec(app, "apply") == before


def test_control_characters_and_odd_posts_are_never_a_500(app, admin_client):
    for data in (
        editor_data(**{"field-0-label": "a\x00b"}),
        editor_data(title="\x07"),
        {"op": "up-99999"},
        {"op": "remove-x", "field-0-name": "a"},
        {"field-0-name": "x" * 50_000, "op": "add"},
        {},
    ):
        response = admin_client.post("/admin/forms/new", data=data)
        assert response.status_code in (200, 400), data
    assert form_count(app) == 0


# --- open/close, delete, export -----------------------------------------------------------


def test_close_and_reopen(app, admin_client):
    form_id = make_form(app)
    response = admin_client.post(f"/admin/forms/{form_id}/open", data={"open": "0"})
    assert response.status_code == 302 and response.location == "/admin/forms"
    assert not stored(app, "apply").is_open
    listing = admin_client.get("/admin/forms").text
    assert "フォーム「セミナーのお申し込み」の受付を停止しました。" in listing
    assert "停止中" in listing and "受付を再開" in listing
    # The same button again (a stale page): still closed, nothing audited.
    admin_client.post(f"/admin/forms/{form_id}/open", data={"open": "0"})
    response = admin_client.post(f"/admin/forms/{form_id}/open", data={"open": "1"}, headers=HX)
    assert response.headers["HX-Redirect"] == "/admin/forms"
    assert stored(app, "apply").is_open
    assert [(e["slug"], e["open"], e["created"]) for e in events(app, "admin.form_saved")] == [
        ("apply", False, False),
        ("apply", True, False),
    ]
    admin_client.post(f"/admin/forms/{form_id}/open", data={"open": "maybe"})
    assert stored(app, "apply").is_open and len(events(app, "admin.form_saved")) == 2


def test_delete_with_its_submissions(app, admin_client):
    form_id = make_form(app)
    other = make_form(app, slug="other")
    send(app, form_id, "alice", APPLY)
    send(app, form_id, "bob", APPLY)
    send(app, other, "alice", APPLY)
    confirm = admin_client.get(f"/admin/forms/{form_id}/delete")
    assert confirm.status_code == 200 and "<html" in confirm.text
    assert "送信内容2件も一緒に削除されます。" in confirm.text
    dialog = admin_client.get(f"/admin/forms/{form_id}/delete", headers=HX)
    assert "<html" not in dialog.text and 'id="dialog-title"' in dialog.text
    assert f'hx-post="/admin/forms/{form_id}/delete"' in dialog.text
    assert form_count(app) == 2  # a GET deletes nothing

    response = admin_client.post(f"/admin/forms/{form_id}/delete", headers=HX)
    assert response.headers["HX-Redirect"] == "/admin/forms"
    assert stored(app, "apply") is None and stored(app, "other") is not None
    with app.app_context():
        left = db.session.scalars(db.select(FormSubmission.form_id)).all()
    assert left == [other]
    assert (
        "フォーム「セミナーのお申し込み」を削除しました。" in admin_client.get("/admin/forms").text
    )
    deleted = events(app, "admin.form_deleted")
    assert [(e["slug"], e["submissions"], e["actor"]) for e in deleted] == [
        ("apply", 2, "boss")
    ]  # fmt: skip


def test_export_json_round_trips(app, admin_client):
    form_id = make_form(app)
    response = admin_client.get(f"/admin/forms/{form_id}/export.json")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == 'attachment; filename="form-apply.json"'
    assert response.mimetype == "application/json"
    spec = member_forms.loads(response.text)
    assert spec.as_json() == stored_spec(app, "apply")
    with app.app_context():
        assert response.text == member_forms.dumps(member_forms.find("apply"))


# --- submissions ----------------------------------------------------------------------------


@pytest.fixture
def submitted(app):
    """The example form with three submissions on three days; returns when the last was
    sent (the days are counted from it, not from a clock read later)."""
    form_id = make_form(app)
    now = datetime.now(UTC).replace(microsecond=0)
    with app.app_context():
        members.create("carol", email="carol@example.com", password=PASSWORD, name="=HYPERLINK(1)")
    send(app, form_id, "alice", APPLY, when=now - timedelta(days=2))
    send(app, form_id, "bob", APPLY | {"note": "=1+2", "agree": ""}, when=now - timedelta(days=1),
         stepped_up=True)  # fmt: skip
    send(app, form_id, "carol", APPLY | {"course": "応用コース"}, when=now)
    with app.app_context():
        m = members.find("carol")
        # An unsent draft is never listed.
        member_forms.start_draft(db.session.get(MemberForm, form_id), m, APPLY, now)
    return now


def test_submissions_list(app, admin_client, submitted):
    page = admin_client.get("/admin/forms/apply/submissions")
    assert page.status_code == 200
    html = page.text
    order = [html.index(f"<td>{who}") for who in ("carol", "bob", "alice")]
    assert order == sorted(order)  # newest first
    assert len(re.findall(r'id="submission-\d+"', html)) == 3  # not the draft
    for label in ("送信日時", "メンバー", "本人確認", "コース", "希望日", "利用規約に同意する"):
        assert f">{label}</th>" in html
    assert "応用コース" in html and "<td>はい</td>" in html and "<td>いいえ</td>" in html
    assert 'class="table-wrap"' in html
    assert 'href="/admin/forms/apply/submissions.csv"' in html
    assert admin_client.get("/admin/forms").text.count(
        'href="/admin/forms/apply/submissions"'
    ) == 1  # fmt: skip


def submission_rows(response) -> list[str]:
    return re.findall(
        r'<tr id="submission-\d+">\s*<td><a href="[^"]+">[^<]*</a></td>\s*<td>(\w+)', response.text
    )


def test_submission_filters(app, admin_client, submitted):
    def found(query: str, htmx=False) -> list[str]:
        response = admin_client.get(
            f"/admin/forms/apply/submissions?{query}", headers=HX if htmx else {}
        )
        assert response.status_code == 200
        return submission_rows(response)

    assert found("q=BO") == ["bob"]
    assert found("q=hyperlink") == ["carol"]  # the name
    assert found("q=%25") == []  # a LIKE wildcard is a plain character
    assert found("stepped_up=yes") == ["bob"]
    assert found("stepped_up=no") == ["carol", "alice"]
    assert found("stepped_up=maybe") == ["carol", "bob", "alice"]
    today = submitted.astimezone(ZoneInfo(app.config["BABEL_DEFAULT_TIMEZONE"])).date()
    yesterday = today - timedelta(days=1)
    assert found(f"from={yesterday}&to={yesterday}") == ["bob"]
    assert found(f"from={yesterday}") == ["carol", "bob"]
    assert found(f"to={yesterday}&q=a", htmx=True) == ["alice"]
    response = admin_client.get("/admin/forms/apply/submissions?from=2026-13-01", headers=HX)
    assert "日付は 2026-11-25 の形式で入力してください。" in response.text
    assert 'hx-swap-oob="true"' in response.text and "<html" not in response.text


def test_submissions_are_paged_newest_first(app, admin_client, monkeypatch):
    from portal.admin import form_views

    monkeypatch.setattr(form_views, "PAGE_SIZE", 2)
    form_id = make_form(app)
    now = datetime.now(UTC).replace(microsecond=0)
    for i, who in enumerate(("ann", "ben", "cat", "dan", "eve")):
        send(app, form_id, who, APPLY, when=now - timedelta(minutes=10 - i))
    first = admin_client.get("/admin/forms/apply/submissions")
    assert submission_rows(first) == ["eve", "dan"]
    following = re.search(r'rel="next" href="([^"]+)"', first.text).group(1).replace("&amp;", "&")
    second = admin_client.get(following)
    assert submission_rows(second) == ["cat", "ben"]
    following = re.search(r'rel="next" href="([^"]+)"', second.text).group(1).replace("&amp;", "&")
    assert submission_rows(admin_client.get(following)) == ["ann"]
    for bad in ("x", "99999999", "9" * 30):
        response = admin_client.get(f"/admin/forms/apply/submissions?before={bad}")
        assert response.status_code == 200


def test_long_answers_are_shortened_in_the_list_and_whole_in_the_detail(app, admin_client):
    form_id = make_form(app)
    long_note = "<b>太字</b>" + "長い要望。" * 60 + "<script>alert(1)</script>"
    sent = send(app, form_id, "alice", APPLY | {"note": long_note}, stepped_up=True)
    short = send(app, form_id, "bob", APPLY | {"note": "短い要望"})
    listed = admin_client.get("/admin/forms/apply/submissions").text
    assert long_note not in listed and "<b>" not in listed
    # 80 characters at most: the first 79, then "…"; escaped like every answer.
    assert str(escape(long_note[:79] + "…")) in listed
    assert "&lt;b&gt;太字&lt;/b&gt;長い要望。" in listed and "&lt;script&gt;" not in listed
    assert "長い回答は80文字までに短くして表示しています。" in listed
    detail_url = f"/admin/forms/apply/submissions/{sent}"
    assert f'<a href="{detail_url}">' in listed
    assert f'<a href="/admin/forms/apply/submissions/{short}">' in listed

    detail = admin_client.get(detail_url)
    assert detail.status_code == 200
    html = detail.text
    assert str(escape(long_note)) in html
    assert "<script>alert" not in html and "<b>" not in html
    assert '<a href="/admin/members/alice">alice</a>' in html
    assert "<dt>送信前の二段階認証</dt><dd>はい</dd>" in html
    assert "<dt>利用規約に同意する</dt>\n    <dd>はい</dd>" in html
    assert "この送信のあと、フォームが変更されています。" not in html
    # Nothing was shortened on a page of short answers: no note about it.
    with app.app_context():
        db.session.delete(db.session.get(FormSubmission, sent))
        db.session.commit()
    assert "長い回答は" not in admin_client.get("/admin/forms/apply/submissions").text


def test_eighty_characters_are_shown_whole_and_eighty_one_are_cut(app, admin_client):
    form_id = make_form(app)
    whole, cut = "あ" * 80, "い" * 81
    send(app, form_id, "alice", APPLY | {"note": whole})
    listed = admin_client.get("/admin/forms/apply/submissions").text
    assert f">{whole}</td>" in listed and "長い回答は" not in listed
    send(app, form_id, "bob", APPLY | {"note": cut})
    listed = admin_client.get("/admin/forms/apply/submissions").text
    assert f">{'い' * 79}…</td>" in listed and cut not in listed
    assert f">{whole}</td>" in listed and "長い回答は" in listed


def test_the_detail_keeps_the_lists_filters_for_the_way_back(app, admin_client, submitted):
    listed = admin_client.get("/admin/forms/apply/submissions?q=bob&stepped_up=yes").text
    detail_url = re.search(r'<a href="(/admin/forms/apply/submissions/\d+\?[^"]+)"', listed)[1]
    detail_url = detail_url.replace("&amp;", "&")
    assert "q=bob" in detail_url and "stepped_up=yes" in detail_url
    html = admin_client.get(detail_url).text
    assert re.search(
        r'<a href="/admin/forms/apply/submissions\?[^"]*q=bob[^"]*">送信内容の一覧へ', html
    )


def test_the_detail_names_a_renamed_member_as_they_are_now(app, admin_client):
    form_id = make_form(app)
    sent = send(app, form_id, "bob", APPLY)
    with app.app_context():
        members.find("bob").login_id = "robert"
        db.session.commit()
    html = admin_client.get(f"/admin/forms/apply/submissions/{sent}").text
    assert '<a href="/admin/members/robert">robert</a>' in html
    assert "（送信時: bob）" in html


def test_the_detail_after_the_form_and_the_member_changed(app, admin_client):
    form_id = make_form(app)
    sent = send(app, form_id, "carol", APPLY | {"note": "窓側の席"})
    data = json.loads(EXAMPLE)
    data["fields"] = [f for f in data["fields"] if f["name"] != "note"]
    with app.app_context():
        member_forms.save(member_forms.find("apply"), member_forms.parse(data), by="boss")
        db.session.delete(members.find("carol"))
        db.session.commit()
    html = admin_client.get(f"/admin/forms/apply/submissions/{sent}").text
    assert "この送信のあと、フォームが変更されています。" in html
    assert '<dt>note <span class="help">（削除された項目）</span></dt>' in html
    assert "窓側の席" in html
    assert 'carol <span class="help">（削除されたメンバー）</span>' in html
    assert 'href="/admin/members/carol"' not in html


def test_a_draft_or_another_forms_submission_has_no_detail(app, admin_client):
    form_id = make_form(app)
    other_id = make_form(app, slug="other")
    theirs = send(app, other_id, "bob", APPLY)
    with app.app_context():
        form = db.session.get(MemberForm, form_id)
        draft = member_forms.start_draft(form, members.find("bob"), APPLY, datetime.now(UTC)).id
    assert admin_client.get(f"/admin/forms/other/submissions/{theirs}").status_code == 200
    for url in (
        f"/admin/forms/apply/submissions/{theirs}",  # sent, but to the other form
        f"/admin/forms/apply/submissions/{draft}",  # not sent
        "/admin/forms/apply/submissions/99",
        "/admin/forms/apply/submissions/99999999999999999999",
        f"/admin/forms/nope/submissions/{theirs}",
    ):
        assert admin_client.get(url).status_code == 404, url


def read_csv(response) -> list[list[str]]:
    body = response.data.decode("utf-8")
    assert body.startswith("\ufeff")
    return list(csv.reader(io.StringIO(body[1:])))


def test_submissions_csv(app, admin_client, submitted):
    # The form is replaced: "note" is gone, a new field arrives.
    data = json.loads(EXAMPLE)
    data["fields"] = [f for f in data["fields"] if f["name"] != "note"] + [
        {"name": "extra", "label": "追加", "type": "text"}
    ]
    with app.app_context():
        spec = member_forms.parse(data)
        member_forms.save(member_forms.find("apply"), spec, by="boss")

    response = admin_client.get("/admin/forms/apply/submissions.csv")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "apply-submissions.csv" in response.headers["Content-Disposition"]
    rows = read_csv(response)
    assert rows[0] == [
        "送信日時", "ログインID", "名前", "送信前の二段階認証", "二段階認証の日時",
        "コース", "希望日", "人数", "当日の連絡先", "利用規約に同意する", "追加", "note",
    ]  # fmt: skip
    assert [r[1] for r in rows[1:]] == ["carol", "bob", "alice"]
    carol, bob, alice = rows[1:]
    assert carol[2] == "'=HYPERLINK(1)"  # a formula in a name is defused
    assert bob[-1] == "'=1+2"  # and in an answer, in the column of a removed field
    assert bob[3] == "はい" and bob[4] != "" and alice[3] == "いいえ" and alice[4] == ""
    assert bob[9] == "いいえ" and alice[9] == "はい"  # the checkbox in words
    assert carol[5] == "応用コース" and carol[10] == ""
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", alice[0])

    filtered = read_csv(admin_client.get("/admin/forms/apply/submissions.csv?stepped_up=yes&q=b"))
    assert [r[1] for r in filtered[1:]] == ["bob"]
    exports = events(app, "admin.export")
    assert [(e["export"], e["filters"], e["actor"]) for e in exports] == [
        ("form_submissions.csv", {"form": "apply"}, "boss"),
        ("form_submissions.csv", {"q": "b", "stepped_up": "yes", "form": "apply"}, "boss"),
    ]


def test_csv_with_a_bad_date_exports_nothing(app, admin_client, submitted):
    response = admin_client.get("/admin/forms/apply/submissions.csv?to=yesterday")
    assert response.status_code == 400 and "text/html" in response.headers["Content-Type"]
    assert "日付は 2026-11-25 の形式で入力してください。" in response.text
    assert events(app, "admin.export") == []


def test_export_audit_row_in_words(app, admin_client, submitted):
    admin_client.get("/admin/forms/apply/submissions.csv?stepped_up=no")
    log = admin_client.get("/admin/audit?event=admin.export").text
    assert "フォームの送信内容（CSV）を出力しました。" in log
    assert "フォーム: apply" in log and "送信前の二段階認証: no" in log


# --- who may do what ------------------------------------------------------------------------


def admin_urls(form_id: int, submission_id: int = 1) -> list[tuple[str, str]]:
    return [
        ("GET", "/admin/forms"),
        ("GET", "/admin/forms/new"),
        ("POST", "/admin/forms/new"),
        ("GET", f"/admin/forms/{form_id}/edit"),
        ("POST", f"/admin/forms/{form_id}/edit"),
        ("POST", f"/admin/forms/{form_id}/open"),
        ("GET", f"/admin/forms/{form_id}/delete"),
        ("POST", f"/admin/forms/{form_id}/delete"),
        ("GET", f"/admin/forms/{form_id}/export.json"),
        ("GET", "/admin/forms/apply/submissions"),
        ("GET", "/admin/forms/apply/submissions.csv"),
        ("GET", f"/admin/forms/apply/submissions/{submission_id}"),
    ]


def test_every_form_admin_url_is_covered(app):
    rules = {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith(("admin.form", "admin.forms"))
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    listed = {
        (
            method,
            re.sub(r"/1/", "/<int:form_id>/", url)
            .replace("/apply/", "/<slug>/")
            .replace("/submissions/2", "/submissions/<int:submission_id>"),
        )
        for method, url in admin_urls(1, submission_id=2)
    }
    assert rules == listed


def test_members_who_are_not_operators_get_403_everywhere(app, client, member, auth):
    form_id = make_form(app)
    sent = send(app, form_id, "bob", APPLY)
    auth.login()
    for method, url in admin_urls(form_id, sent):
        data = editor_data(title="hacked", open="0") if method == "POST" else None
        response = client.open(url, method=method, data=data)
        assert response.status_code == 403, (method, url)
    assert stored_spec(app, "apply")["title"] == "セミナーのお申し込み"
    assert stored(app, "apply").is_open and form_count(app) == 1
    assert events(app, "admin.export") == [] and events(app, "admin.form_saved") == []


def test_stale_operator_must_reauthenticate_and_nothing_changes(app, admin_client, operator_totp):
    client = admin_client
    form_id = make_form(app)
    send(app, form_id, "bob", APPLY)
    with client.session_transaction() as s:
        s["tfa_at"] -= 11 * 60
        s["auth_at"] -= 11 * 60
    for url, data in (
        ("/admin/forms/new", editor_data(slug="stale")),
        (f"/admin/forms/{form_id}/edit", editor_data(slug="stale")),
        (f"/admin/forms/{form_id}/open", {"open": "0"}),
        (f"/admin/forms/{form_id}/delete", {}),
    ):
        response = client.post(url, data=data)
        assert response.status_code == 200, url
        assert "本人確認" in response.text and "/settings/reauth?next=" in response.text
    # From the htmx editor the dialog goes into the page's <dialog>, not over the editor.
    response = client.post(f"/admin/forms/{form_id}/edit", data=editor_data(), headers=HX)
    assert "本人確認" in response.text
    assert response.headers["HX-Retarget"] == "#dialog-content"
    assert stored(app, "stale") is None and stored(app, "apply").is_open
    assert form_count(app) == 1
    assert events(app, "admin.form_saved") == [] and events(app, "admin.form_deleted") == []

    next_code = operator_totp.at(datetime.now(UTC) + timedelta(seconds=30))
    assert client.post("/settings/reauth", data={"code": next_code}).status_code == 302
    response = client.post("/admin/forms/new", data=editor_data(slug="fresh"))
    assert response.status_code == 302 and stored(app, "fresh") is not None


@pytest.mark.settings(WTF_CSRF_ENABLED=True)
def test_forged_csrf_changes_nothing(app, client, operator_totp):
    form_id = make_form(app)
    token = extract_csrf(client.get("/login").text)
    client.post(
        "/login", data={"login_id": "boss", "password": "operator password 1", "csrf_token": token}
    )
    token = extract_csrf(client.get("/login/verify").text)
    response = client.post("/login/verify", data={"code": operator_totp.now(), "csrf_token": token})
    assert response.location == "/"
    forged = extract_csrf(app.test_client().get("/login").text)
    for url, data in (
        ("/admin/forms/new", editor_data(slug="forged")),
        (f"/admin/forms/{form_id}/edit", editor_data(slug="forged")),
        (f"/admin/forms/{form_id}/open", {"open": "0"}),
        (f"/admin/forms/{form_id}/delete", {}),
    ):
        response = client.post(url, data=data | {"csrf_token": forged})
        assert response.status_code == 400, url
    assert stored(app, "forged") is None and stored(app, "apply").is_open and form_count(app) == 1
    # The real token works.
    token = extract_csrf(client.get("/admin/forms").text)
    response = client.post(f"/admin/forms/{form_id}/open", data={"open": "0", "csrf_token": token})
    assert response.status_code == 302 and not stored(app, "apply").is_open


def test_unknown_ids_and_slugs_are_404(admin_client):
    for url in (
        "/admin/forms/99/edit",
        "/admin/forms/99/delete",
        "/admin/forms/99/open",
        "/admin/forms/99999999999999999999/edit",
    ):
        assert admin_client.post(url).status_code == 404, url
    for url in (
        "/admin/forms/99/edit",
        "/admin/forms/99/delete",
        "/admin/forms/99/export.json",
        "/admin/forms/99999999999999999999/export.json",
        "/admin/forms/nope/submissions",
        "/admin/forms/nope/submissions.csv",
        "/admin/forms/Bad%20Slug/submissions",
    ):
        assert admin_client.get(url).status_code == 404, url
