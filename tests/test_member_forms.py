"""Member-area forms (issue 15): the form as JSON (validation, sanitising, the CLI) and
the member's 入力 → 確認 → サンキュー, with the keyword, the fresh second step, the
receipt mail and the attacks (double send, another member's draft, forged CSRF)."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import PASSWORD, extract_csrf

from portal import member_forms, members
from portal.extensions import db
from portal.models import AuditEvent, FormSubmission, MemberForm

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "apply-form.json"
HX = {"HX-Request": "true"}


def example(**changes) -> dict:
    data = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    data.update(changes)
    return data


def make_form(app, **changes) -> int:
    with app.app_context():
        return member_forms.save(None, member_forms.parse(example(**changes)), by="boss").id


def sent(app) -> list[FormSubmission]:
    with app.app_context():
        rows = list(
            db.session.scalars(
                db.select(FormSubmission)
                .where(FormSubmission.submitted_at.is_not(None))
                .order_by(FormSubmission.id)
            )
        )
        for row in rows:
            db.session.expunge(row)
        return rows


def events(app, name: str) -> list[dict]:
    with app.app_context():
        rows = db.session.scalars(db.select(AuditEvent).where(AuditEvent.event == name))
        return [json.loads(row.detail) for row in rows]


GOOD = {
    "f_course": "入門コース",
    "f_date": "2026-12-24",
    "f_people": "２",  # full-width digits are read as 2
    "f_phone": "090-1234-5678",
    "f_note": "<script>alert(1)</script>\n2行目",
    "f_agree": "1",
}


def sign_in(app, client, login_id="carol", name="Carol") -> None:
    with app.app_context():
        members.create(login_id, email=f"{login_id}@example.com", password=PASSWORD, name=name)
    token = extract_csrf(client.get("/login").text)
    response = client.post(
        "/login", data={"login_id": login_id, "password": PASSWORD, "csrf_token": token}
    )
    assert response.location == "/"


def csrf(client, url="/forms/apply") -> str:
    return extract_csrf(client.get(url).text)


def to_confirm(client, answers=None) -> str:
    response = client.post("/forms/apply", data={"csrf_token": csrf(client), **(answers or GOOD)})
    assert response.status_code == 302, response.text
    assert re.fullmatch(r"/forms/apply/confirm/\d+", response.location)
    return response.location


def body_of(html: str) -> str:
    match = re.search(r'<div class="member-page-body">(.*?)</div>', html, re.S)
    assert match, html
    return match.group(1)


# --- the form as data -----------------------------------------------------------------


def test_the_example_round_trips_through_json(app):
    spec = member_forms.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert [f.name for f in spec.fields] == ["course", "date", "people", "phone", "note", "agree"]
    assert spec.step_up_minutes == 10 and spec.require_2fa == "warn"
    again = member_forms.loads(json.dumps(spec.as_json(), ensure_ascii=False))
    assert again == spec


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"slug": "Apply!"}, "slug"),
        ({"title": ""}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"colour": "red"}, "colour"),
        ({"require_2fa": "always"}, "require_2fa"),
        ({"step_up_minutes": -1}, "step_up_minutes"),
        ({"step_up_minutes": 1441}, "step_up_minutes"),
        ({"step_up_minutes": True}, "step_up_minutes"),
        ({"step_up_minutes": "10"}, "step_up_minutes"),
        ({"open": "yes"}, "open"),
        ({"fields": []}, "fields"),
        ({"fields": {"name": "a"}}, "fields"),
        ({"fields": [{"name": "a", "label": "A", "type": "radio"}]}, "fields[0].type"),
        ({"fields": [{"name": "1a", "label": "A", "type": "text"}]}, "fields[0].name"),
        ({"fields": [{"name": "a", "label": "", "type": "text"}]}, "fields[0].label"),
        (
            {"fields": [{"name": "a", "label": "A", "type": "text"}] * 2},
            "fields[1].name",
        ),
        ({"fields": [{"name": "a", "label": "A", "type": "select"}]}, "fields[0].choices"),
        (
            {"fields": [{"name": "a", "label": "A", "type": "select", "choices": ["x", "x"]}]},
            "fields[0].choices[1]",
        ),
        (
            {"fields": [{"name": "a", "label": "A", "type": "text", "choices": ["x"]}]},
            "fields[0].choices",
        ),
        (
            {"fields": [{"name": "a", "label": "A", "type": "text", "max_length": 5000}]},
            "fields[0].max_length",
        ),
        (
            {"fields": [{"name": "a", "label": "A", "type": "date", "max_length": 5}]},
            "fields[0].max_length",
        ),
        (
            {"fields": [{"name": "a", "label": "A", "type": "text", "extra": 1}]},
            "fields[0].extra",
        ),
        ({"pages": {"input": "", "confirm": "", "thanks": "%form:nothing%"}}, "pages.thanks"),
        ({"pages": {"input": "%form:course%", "confirm": "", "thanks": ""}}, "pages.input"),
        ({"pages": {"input": 1}}, "pages.input"),
        ({"pages": {"sidebar": ""}}, "pages.sidebar"),
        ({"pages": []}, "pages"),
    ],
)
def test_a_bad_form_is_refused_where_it_is_wrong(app, change, path):
    with app.test_request_context(), pytest.raises(member_forms.SpecError) as refused:
        member_forms.parse(example(**change))
    assert refused.value.path == path
    assert str(refused.value).startswith(f"{path}: ")


@pytest.mark.parametrize("text", ["", "[1", "null", "[]", "1" * 10 + "{"])
def test_text_that_is_not_a_form_is_refused(app, text):
    with app.test_request_context(), pytest.raises(member_forms.SpecError):
        member_forms.loads(text)


def test_page_bodies_are_sanitised_and_keep_every_keyword(app):
    pages = {
        "input": '<p onclick="x()">%member:name%</p><script>alert(1)</script>',
        "confirm": "<p>%form:course%</p><iframe src=//evil></iframe>",
        "thanks": '<a href="%url/rel:tfa:setting%">設定</a> %form:note% %member:login_id%'
        '<a href="javascript:alert(1)">x</a>',
    }
    with app.test_request_context():
        spec = member_forms.parse(example(pages=pages))
    assert spec.pages["input"] == "<p>%member:name%</p>"
    assert spec.pages["confirm"] == "<p>%form:course%</p>"
    assert (
        '<a href="%url/rel:tfa:setting%" rel="noopener noreferrer">設定</a>' in spec.pages["thanks"]
    )
    assert "%form:note% %member:login_id%" in spec.pages["thanks"]
    assert "javascript" not in spec.pages["thanks"]


@pytest.mark.parametrize(
    ("field", "value", "stored", "error"),
    [
        ({"type": "text", "required": True}, "  ", "", "「項目」を入力してください。"),
        ({"type": "text"}, "a\nb", "a b", None),
        (
            {"type": "text", "max_length": 3},
            "abcd",
            "abcd",
            "「項目」は3文字以内で入力してください。",
        ),
        ({"type": "textarea"}, "a\r\nb\x00", "a\nb", None),
        ({"type": "email"}, "ｔａｒｏ@example.com", "taro@example.com", None),
        ({"type": "email"}, "taro@", "taro@", "「項目」はメールアドレスの形式で入力してください。"),
        ({"type": "tel"}, "０９０ー１２３４ー５６７８", "090-1234-5678", None),
        ({"type": "tel"}, "call me", "call me", "「項目」は半角数字とハイフンで入力してください。"),
        ({"type": "number"}, "１２", "12", None),
        ({"type": "number"}, "1e9", "1e9", "「項目」は半角数字で入力してください。"),
        (
            {"type": "date"},
            "2026-02-30",
            "2026-02-30",
            "「項目」は日付（例：2026-12-01）で入力してください。",
        ),
        (
            {"type": "date"},
            "20261201",
            "20261201",
            "「項目」は日付（例：2026-12-01）で入力してください。",
        ),
        (
            {"type": "select", "choices": ["A"], "required": True},
            "",
            "",
            "「項目」を選択してください。",
        ),
        ({"type": "select", "choices": ["A"]}, "B", "B", "「項目」は選択肢から選んでください。"),
        ({"type": "checkbox", "required": True}, "", "", "「項目」にチェックを入れてください。"),
        ({"type": "checkbox"}, "on", "1", None),
    ],
)
def test_answers_are_checked_on_the_server(app, field, value, stored, error):
    with app.test_request_context():
        spec = member_forms.parse(
            example(fields=[{"name": "x", "label": "項目", **field}], pages={})
        )
        answers, errors = member_forms.clean_answers(spec.fields, {"f_x": value})
    assert answers == {"x": stored}
    assert errors.get("x") == error


# --- the CLI --------------------------------------------------------------------------


def test_cli_import_creates_then_replaces_and_keeps_the_submissions(app, runner, tmp_path):
    result = runner.invoke(args=["forms", "import", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert result.output == "フォーム apply を作成しました。\n"
    with app.app_context():
        form = member_forms.find("apply")
        m = members.create("dave", email="dave@example.com", password=PASSWORD)
        draft = member_forms.start_draft(form, m, {"course": "入門コース"}, form.updated_at)
        assert member_forms.submit(draft, form.updated_at, second_step_at=None, stepped_up=False)
        form_id = form.id
    changed = tmp_path / "apply.json"
    changed.write_text(json.dumps(example(title="改訂版"), ensure_ascii=False), encoding="utf-8")
    result = runner.invoke(args=["forms", "import", str(changed)])
    assert result.exit_code == 0, result.output
    assert result.output == "フォーム apply を置き換えました。\n"
    with app.app_context():
        form = member_forms.find("apply")
        assert (form.id, form.title, form.version) == (form_id, "改訂版", 2)
    assert len(sent(app)) == 1
    assert [e["created"] for e in events(app, "admin.form_saved")] == [True, False]


def test_cli_export_prints_what_import_reads(app, runner):
    assert runner.invoke(args=["forms", "import", str(EXAMPLE)]).exit_code == 0
    result = runner.invoke(args=["forms", "export", "apply"])
    assert result.exit_code == 0
    with app.app_context():
        assert member_forms.loads(result.output) == member_forms.loads(EXAMPLE.read_text("utf-8"))
    listed = runner.invoke(args=["forms", "list"])
    assert listed.output == "apply\t受付中\t0\tセミナーのお申し込み\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"slug": ', "エラー：JSONとして読めません（1行目）"),
        (b"\xff\xfe{}", "エラー：ファイルをUTF-8として読めません。"),
        (
            json.dumps(example(fields=[{"name": "a", "label": "A", "type": "radio"}])).encode(),
            "エラー：fields[0].type: ",
        ),
        (json.dumps(example(slug="../x")).encode(), "エラー：slug: "),
    ],
)
def test_cli_import_refuses_bad_input_in_one_line_and_writes_nothing(
    app, runner, tmp_path, content, message
):
    path = tmp_path / "form.json"
    path.write_bytes(content)
    result = runner.invoke(args=["forms", "import", str(path)])
    assert result.exit_code == 1
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(MemberForm.id))) == 0


def test_cli_export_of_an_unknown_form_fails(app, runner):
    result = runner.invoke(args=["forms", "export", "nope"])
    assert result.exit_code == 1
    assert result.stderr == "エラー：フォーム nope はありません。\n"


# --- the member's three pages ---------------------------------------------------------


def test_a_visitor_is_sent_to_sign_in_and_learns_nothing(app, client):
    make_form(app)
    for url in ("/forms/apply", "/forms/nope", "/forms/apply/confirm/1", "/forms/apply/thanks/1"):
        response = client.get(url)
        assert response.status_code == 302 and response.location.startswith("/login"), url


def test_unknown_and_closed_forms_answer_404(app, client):
    make_form(app)
    make_form(app, slug="closed", open=False)
    sign_in(app, client)
    assert client.get("/forms/apply").status_code == 200
    assert client.get("/forms/nope").status_code == 404
    assert client.get("/forms/closed").status_code == 404
    assert client.get("/forms/NOPE!").status_code == 404


@pytest.mark.wired
def test_a_member_fills_in_confirms_and_sends(app, client, smtp_server):
    make_form(app)
    sign_in(app, client, name="Carol <b>")
    page = client.get("/forms/apply")
    assert "Carol &lt;b&gt; 様、以下の内容をご入力ください。" in page.text
    assert 'aria-current="step">入力' in page.text

    confirm_url = to_confirm(client)
    page = client.get(confirm_url)
    assert page.status_code == 200
    assert 'aria-current="step">確認' in page.text
    # The answers as typed (normalised), escaped, in the list and in the page body.
    assert "<dd>&lt;script&gt;alert(1)&lt;/script&gt;\n2行目</dd>" in page.text
    assert "<dd>2</dd>" in page.text and "<dd>はい</dd>" in page.text
    assert body_of(page.text).strip() == "<p>以下の内容でお申し込みします。コース：入門コース</p>"
    assert sent(app) == []  # nothing is sent before 送信する

    response = client.post(confirm_url, data={"csrf_token": extract_csrf(page.text)})
    assert response.status_code == 302
    thanks = client.get(response.location)
    assert 'aria-current="step">完了' in thanks.text
    body = body_of(thanks.text)
    assert "入門コース のお申し込みを受け付けました。" in body
    assert '<a href="/settings/2fa" rel="noopener noreferrer">二段階認証設定</a>' in body
    assert "受付内容をメールでお送りしました。" in thanks.text

    (row,) = sent(app)
    assert json.loads(row.answers) == {
        "course": "入門コース",
        "date": "2026-12-24",
        "people": "2",
        "phone": "090-1234-5678",
        "note": "<script>alert(1)</script>\n2行目",
        "agree": "1",
    }
    assert row.login_id == "carol" and row.stepped_up is False
    (event,) = events(app, "form.submitted")
    assert event == {"slug": "apply", "submission_id": row.id, "stepped_up": False}

    (mail,) = smtp_server.messages
    assert mail["To"] == "carol@example.com"
    assert "「セミナーのお申し込み」を受け付けました" in mail["Subject"]
    text = mail.get_payload(decode=True).decode()
    assert "■ コース\n  入門コース" in text
    assert "■ ご要望\n  <script>alert(1)</script>\n  2行目" in text
    assert "■ 当日の連絡先\n  090-1234-5678" in text
    assert "■ 利用規約に同意する\n  はい" in text


def test_errors_are_shown_in_place_and_the_answers_kept(app, client):
    make_form(app)
    sign_in(app, client)
    answers = {**GOOD, "f_date": "明日", "f_course": "", "f_agree": ""}
    response = client.post("/forms/apply", data={"csrf_token": csrf(client), **answers})
    assert response.status_code == 400
    html = response.text
    assert (
        '<p id="f-course-error" class="error" role="alert">「コース」を選択してください。</p>'
        in html
    )
    assert "「希望日」は日付（例：2026-12-01）で入力してください。" in html
    assert "「利用規約に同意する」にチェックを入れてください。" in html
    assert (
        'id="f-date" name="f_date" required aria-required="true" '
        'aria-describedby="f-date-error" aria-invalid="true"' in html
    )
    assert 'value="明日"' in html and 'value="090-1234-5678"' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\n2行目</textarea>" in html
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(FormSubmission.id))) == 0


def test_back_keeps_the_answers_and_a_changed_answer_updates_the_same_draft(app, client):
    make_form(app)
    sign_in(app, client)
    confirm_url = to_confirm(client)
    draft_id = int(confirm_url.rsplit("/", 1)[1])
    page = client.get(confirm_url)
    back = re.search(r'<a class="button" href="([^"]+)">戻る</a>', page.text).group(1)
    assert back == f"/forms/apply?draft={draft_id}"
    again = client.get(back)
    assert '<option value="入門コース" selected>' in again.text
    assert 'value="2026-12-24"' in again.text and " checked>" in again.text
    assert f'<input type="hidden" name="draft" value="{draft_id}">' in again.text
    response = client.post(
        "/forms/apply",
        data={
            "csrf_token": extract_csrf(again.text),
            **GOOD,
            "f_course": "応用コース",
            "draft": draft_id,
        },
    )
    assert response.location == confirm_url
    assert "<dd>応用コース</dd>" in client.get(confirm_url).text


def test_a_second_post_of_the_same_confirm_page_is_refused(app, client):
    make_form(app)
    sign_in(app, client)
    confirm_url = to_confirm(client)
    token = csrf(client, confirm_url)
    first = client.post(confirm_url, data={"csrf_token": token})
    second = client.post(confirm_url, data={"csrf_token": token})
    assert first.location == second.location
    assert "この内容は既に送信済みです。" in client.get(second.location).text
    assert len(sent(app)) == 1
    assert len(events(app, "form.submitted")) == 1


def test_a_sent_submission_cannot_be_changed_through_its_draft(app, client):
    make_form(app)
    sign_in(app, client)
    confirm_url = to_confirm(client)
    draft_id = confirm_url.rsplit("/", 1)[1]
    client.post(confirm_url, data={"csrf_token": csrf(client, confirm_url)})
    response = client.post(
        "/forms/apply",
        data={"csrf_token": csrf(client), **GOOD, "f_course": "応用コース", "draft": draft_id},
    )
    assert response.location != confirm_url  # a new draft, the sent one untouched
    (row,) = sent(app)
    assert json.loads(row.answers)["course"] == "入門コース"


def test_another_members_draft_and_thanks_page_answer_404(app, client):
    make_form(app)
    sign_in(app, client)
    confirm_url = to_confirm(client)
    client.post(confirm_url, data={"csrf_token": csrf(client, confirm_url)})
    draft_id = confirm_url.rsplit("/", 1)[1]
    other = app.test_client()
    sign_in(app, other, login_id="mallory", name="Mallory")
    token = csrf(other)
    assert other.get(confirm_url).status_code == 404
    assert other.post(confirm_url, data={"csrf_token": token}).status_code == 404
    assert other.get(f"/forms/apply/thanks/{draft_id}").status_code == 404
    # 戻る with someone else's draft shows a blank form, never their answers.
    blank = other.get(f"/forms/apply?draft={draft_id}")
    assert blank.status_code == 200 and '入門コース" selected' not in blank.text
    assert other.get("/forms/apply/confirm/99999999999999999999").status_code == 404


@pytest.mark.settings(WTF_CSRF_ENABLED=True)
def test_a_forged_post_sends_nothing(app, client):
    make_form(app)
    sign_in(app, client)
    response = client.post("/forms/apply", data=GOOD)
    assert response.status_code == 400
    assert "ページの有効期限が切れたか、不正な送信です。" in response.text
    confirm_url = to_confirm(client)
    forged = client.post(confirm_url, data={"csrf_token": "forged"})
    assert forged.status_code == 400
    assert sent(app) == []
    with app.app_context():
        (draft,) = db.session.scalars(db.select(FormSubmission))
        assert json.loads(draft.answers)["course"] == "入門コース"  # the real one, unsent


def test_a_form_changed_after_the_confirm_step_sends_the_member_back(app, client):
    make_form(app)
    sign_in(app, client)
    confirm_url = to_confirm(client)
    token = csrf(client, confirm_url)
    with app.app_context():
        form = member_forms.find("apply")
        member_forms.save(form, member_forms.parse(example(title="改訂版")), by="boss")
    response = client.post(confirm_url, data={"csrf_token": token})
    draft_id = confirm_url.rsplit("/", 1)[1]
    assert response.location == f"/forms/apply?draft={draft_id}"
    assert "フォームの内容が変わったか" in client.get(response.location).text
    assert sent(app) == []


def test_a_closed_form_takes_no_more_answers(app, client):
    make_form(app)
    sign_in(app, client)
    confirm_url = to_confirm(client)
    token = csrf(client, confirm_url)
    with app.app_context():
        member_forms.set_open(member_forms.find("apply"), False, by="boss")
    assert client.post(confirm_url, data={"csrf_token": token}).status_code == 404
    assert sent(app) == []


# --- require_2fa ----------------------------------------------------------------------


def test_warn_shows_a_notice_with_the_settings_link_to_members_without_2fa(
    app, client, member_with_totp, auth
):
    make_form(app)
    other = app.test_client()
    sign_in(app, other)
    assert 'id="form-tfa-notice"' in other.get("/forms/apply").text
    _id, totp, _codes = member_with_totp
    auth.full_login(totp)
    assert 'id="form-tfa-notice"' not in client.get("/forms/apply").text


def test_setup_sends_a_member_without_2fa_to_set_up_and_back(app, client):
    make_form(app, require_2fa="setup")
    sign_in(app, client)
    response = client.get("/forms/apply")
    assert response.location == "/settings/2fa/setup?next=/forms/apply"
    setup = client.get(response.location)
    assert "「セミナーのお申し込み」を利用するには、二段階認証の設定が必要です。" in setup.text
    assert (
        client.post("/forms/apply", data={"csrf_token": extract_csrf(setup.text), **GOOD}).location
        == response.location
    )
    with app.app_context():
        from conftest import enrol_app

        enrol_app(members.named("carol"))
    done = client.get("/settings/2fa/setup?next=/forms/apply")
    assert '<a class="button primary" href="/forms/apply">元のページに戻る</a>' in done.text
    assert client.get("/forms/apply").status_code == 200


def test_setup_sends_back_only_to_a_local_page(app, client):
    sign_in(app, client)
    with app.app_context():
        from conftest import enrol_app

        enrol_app(members.named("carol"))
    page = client.get("/settings/2fa/setup?next=//evil.example/x")
    assert '<a class="button primary" href="/">マイページへ進む</a>' in page.text
    assert 'href="//evil.example' not in page.text


# --- the fresh second step ------------------------------------------------------------


def age_second_step(client, minutes: int) -> None:
    with client.session_transaction() as s:
        s["tfa_at"] -= minutes * 60


def reauth_action(html: str) -> str:
    action = re.search(r'<form method="post" action="(/settings/reauth\?[^"]+)"', html)
    assert action, html
    return action.group(1).replace("&amp;", "&")


def test_a_fresh_second_step_lets_the_member_send_at_once(app, client, member_with_totp, auth):
    make_form(app)
    _id, totp, _codes = member_with_totp
    auth.full_login(totp)
    confirm_url = to_confirm(client)
    page = client.get(confirm_url)
    assert 'id="form-step-up"' not in page.text
    client.post(confirm_url, data={"csrf_token": extract_csrf(page.text)})
    (row,) = sent(app)
    assert row.stepped_up is True and row.second_step_at is not None


@pytest.mark.parametrize("htmx", [False, True])
def test_an_old_second_step_asks_for_it_again_and_keeps_the_answers(
    app, client, member_with_totp, auth, htmx
):
    make_form(app)
    _id, totp, codes = member_with_totp
    auth.full_login(totp)
    confirm_url = to_confirm(client)
    age_second_step(client, 11)
    page = client.get(confirm_url)
    assert "このフォームの送信には、10分以内の本人確認が必要です。" in page.text
    assert f'hx-post="{confirm_url}" hx-target="#dialog-content"' in page.text
    headers = HX if htmx else {}
    token = extract_csrf(page.text)
    dialog = client.post(confirm_url, data={"csrf_token": token}, headers=headers)
    assert dialog.status_code == 200
    assert "このフォームを送信するには、認証アプリの6桁のコード" in dialog.text
    assert ("<html" in dialog.text) is not htmx  # a dialog, or a page of its own
    assert sent(app) == []

    reauth = reauth_action(dialog.text)
    wrong = client.post(reauth, data={"csrf_token": token, "code": "000000"}, headers=headers)
    assert "認証コードが正しくありません。" in wrong.text
    assert "このフォームを送信するには" in wrong.text  # still the form's wording
    assert sent(app) == []

    # The app code of this time step went to sign-in: a recovery code is the second step.
    back = client.post(reauth, data={"csrf_token": token, "code": codes[0]}, headers=headers)
    assert back.status_code == 302
    landed = client.get(back.location, headers=headers)
    went = landed.headers.get("HX-Redirect") if htmx else landed.location
    assert went == confirm_url
    page = client.get(confirm_url)
    assert "本人確認が完了しました。内容を確かめて「送信する」を押してください。" in page.text
    assert "<dd>入門コース</dd>" in page.text  # the answers are still there
    assert 'id="form-step-up"' not in page.text
    client.post(confirm_url, data={"csrf_token": token})
    (row,) = sent(app)
    assert row.stepped_up is True


def test_cancelling_the_check_goes_back_to_the_confirm_page(app, client, member_with_totp, auth):
    make_form(app)
    _id, totp, _codes = member_with_totp
    auth.full_login(totp)
    confirm_url = to_confirm(client)
    age_second_step(client, 11)
    dialog = client.post(confirm_url, data={"csrf_token": csrf(client, confirm_url)})
    cancel = re.search(
        r'<a class="button" href="([^"]+)" data-close-dialog>キャンセル</a>', dialog.text
    )
    landed = client.get(cancel.group(1))
    assert landed.location == confirm_url
    assert "本人確認が完了しました" not in client.get(confirm_url).text


def test_a_member_without_2fa_confirms_with_the_password(app, client):
    make_form(app)
    sign_in(app, client)
    confirm_url = to_confirm(client)
    with client.session_transaction() as s:
        s["auth_at"] -= 11 * 60  # the password, for a member without a second step
    token = csrf(client, confirm_url)
    dialog = client.post(confirm_url, data={"csrf_token": token})
    assert "このフォームを送信するには、パスワードを入力してください。" in dialog.text
    back = client.post(reauth_action(dialog.text), data={"csrf_token": token, "password": PASSWORD})
    assert back.status_code == 302
    client.post(confirm_url, data={"csrf_token": token})
    (row,) = sent(app)
    assert row.stepped_up is False  # a password is not a second step


# --- マイページ and the menu ------------------------------------------------------------


def test_listed_open_forms_show_on_my_page_and_in_the_menu(app, client):
    make_form(app)
    make_form(app, slug="hidden", listed=False)
    make_form(app, slug="closed", open=False)
    sign_in(app, client)
    home = client.get("/").text
    assert (
        '<a href="/forms/apply"><span class="listed-title">セミナーのお申し込み '
        '<span class="tag">フォーム</span></span></a>' in home
    )
    assert "/forms/hidden" not in home and "/forms/closed" not in home
    page = client.get("/forms/apply").text
    assert '<a href="/forms/apply" aria-current="page">' in page
    with app.app_context():
        member_forms.set_open(member_forms.find("apply"), False, by="boss")
    assert "/forms/apply" not in client.get("/").text


def test_old_unsent_drafts_are_forgotten_and_cannot_be_sent(app, client):
    make_form(app)
    sign_in(app, client)
    confirm_url = to_confirm(client)
    token = csrf(client, confirm_url)
    with app.app_context():
        old = db.session.get(FormSubmission, int(confirm_url.rsplit("/", 1)[1]))
        old.created_at = old.created_at - timedelta(hours=member_forms.DRAFT_HOURS, minutes=1)
        old_at = old.created_at
        db.session.commit()
    # Too old to send: back to the input page with the answers, nothing stored.
    response = client.post(confirm_url, data={"csrf_token": token})
    assert response.location.startswith("/forms/apply?draft=")
    assert sent(app) == []
    # The next confirm step (anyone's) clears it away.
    to_confirm(client)
    with app.app_context():
        (left,) = db.session.scalars(db.select(FormSubmission))
        assert left.created_at > old_at


def test_a_member_page_can_link_to_a_form(app, client):
    from portal import pages

    make_form(app)
    with app.app_context():
        pages.save(
            None,
            title="お知らせ",
            slug="news",
            body='<p><a href="/forms/apply">セミナーに申し込む</a></p>',
            by="boss",
        )
    sign_in(app, client)
    page = client.get("/pages/news").text
    assert '<a href="/forms/apply" rel="noopener noreferrer">セミナーに申し込む</a>' in page


def test_a_deleted_members_submissions_stay_with_their_login_id(app, client):
    make_form(app)
    sign_in(app, client)
    confirm_url = to_confirm(client)
    client.post(confirm_url, data={"csrf_token": csrf(client, confirm_url)})
    with app.app_context():
        db.session.delete(members.named("carol"))
        db.session.commit()
    (row,) = sent(app)
    assert (row.member_id, row.login_id, row.member_name) == (None, "carol", "Carol")
