"""Bulk import of members (``members import``): what an operator sees for good and bad
files, that bad lines write nothing, that a second run changes nothing, --update,
--dry-run, and invitations (a real SMTP server)."""

from __future__ import annotations

import io
import re

import pytest
from conftest import OPERATOR_PASSWORD, PASSWORD, PHONE, extract_csrf, get_member
from mail_server import body_text
from sqlalchemy import func
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from portal import importing, members, sessions
from portal.extensions import db
from portal.models import AuditEvent, Member, PasswordReset

HEADER = "login_id,email,name,phone,operator\n"


def write(tmp_path, text: str, *, bom: bool = False, name: str = "members.csv") -> str:
    path = tmp_path / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return str(path)


def import_file(runner, path: str, *options: str, language: str | None = None):
    env = {"LANG": language} if language else None
    return runner.invoke(args=["members", "import", path, *options], env=env)


def stored(app) -> dict[str, tuple]:
    with app.app_context():
        return {
            m.login_id: (m.email, m.name, m.phone, m.is_operator, members.has_password(m))
            for m in db.session.scalars(db.select(Member))
        }


def test_a_good_file_creates_members_without_passwords(app, runner, tmp_path):
    path = write(
        tmp_path,
        HEADER
        + "alice,alice@example.com,山田 花子,090-1234-5678,0\n"
        + "Bob.K,bob@example.com,,,yes\n"
        + "\n"  # a blank line is skipped
        + "carol,carol@example.com\n",  # trailing optional cells left out
        bom=True,
    )
    result = import_file(runner, path)
    assert result.exit_code == 0, result.output
    assert "作成 3 件、更新 0 件、変更なし 0 件、問題のある行 0 件" in result.output
    assert stored(app) == {
        "alice": ("alice@example.com", "山田 花子", "+819012345678", False, False),
        "Bob.K": ("bob@example.com", "", "", True, False),
        "carol": ("carol@example.com", "", "", False, False),
    }
    with app.app_context():
        (audit,) = db.session.scalars(
            db.select(AuditEvent).where(AuditEvent.event == "members.imported")
        )
        assert audit.actor_label == "cli" and '"created": 3' in audit.detail


def test_a_member_without_a_password_cannot_sign_in_and_costs_a_hash_like_anyone(
    app, runner, tmp_path, hash_checks
):
    import_file(runner, write(tmp_path, HEADER + "alice,alice@example.com,,,\n"))
    client = app.test_client()
    for password in ("!", "", PASSWORD):
        hash_checks.clear()
        response = client.post("/login", data={"login_id": "alice", "password": password or "x"})
        assert "ログインIDまたはパスワードが正しくありません。" in response.text
        assert len(hash_checks) == 1  # the same argon2 check as an unknown ID


def test_bad_lines_are_reported_and_write_nothing_the_good_ones_are_written(app, runner, tmp_path):
    path = write(
        tmp_path,
        HEADER
        + "alice,alice@example.com,,,\n"  # 2: good
        + "bob,bob@example,,,\n"  # 3: email
        + "ALICE,other@example.com,,,\n"  # 4: same ID as line 2 (IDs ignore case)
        + "carol,carol@example.com,,12345,maybe\n"  # 5: phone and operator
        + "dave,dave@example.com,,,,extra\n"  # 6: too many cells
        + "x,x@example.com,,,\n"  # 7: ID too short
        + "erin,erin@example.com,\x00bad,,\n",  # 8: control character in the name
    )
    result = import_file(runner, path)
    assert result.exit_code == 1
    lines = result.output
    assert "3行目（email）：メールアドレスの形式が正しくありません。" in lines
    assert "4行目（login_id）：2行目と同じログインIDです。" in lines
    assert "5行目（phone）：電話番号の形式が正しくありません。" in lines
    assert "5行目（operator）：operator には 1 か 0（yes / no）を入力してください。" in lines
    assert "6行目：列の数（6）が見出し（5）より多くなっています。" in lines
    assert "7行目（login_id）：ログインIDは3〜64文字" in lines
    assert "8行目（name）：氏名に使用できない文字が含まれています。" in lines
    assert "作成 1 件、更新 0 件、変更なし 0 件、問題のある行 6 件" in lines
    assert set(stored(app)) == {"alice"}


def test_the_report_speaks_the_shells_language(app, runner, tmp_path):
    path = write(tmp_path, HEADER + "bob,bob@example,,,\n")
    result = import_file(runner, path, language="en_US.UTF-8")
    assert "Line 2 (email): The email address is not valid." in result.output
    assert "Imported: created: 0, updated: 0, unchanged: 0, lines with problems: 1" in (
        result.output
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "ファイルが空です。"),
        (b"email,name\nx@example.com,x\n", "見出しに必要な列がありません: login_id"),
        (b"login_id,email,password\n", "見出しに使えない列があります: password"),
        (b"login_id,email,email\n", "見出しに同じ列が2回以上あります。"),
        (b"login_id,email\nalice,a@example.com\nb\xff\xfeb,b@example.com\n", "3行目: UTF-8"),
        ("login_id,email\nalice,a@example.com\n".encode("utf-16"), "UTF-8"),
    ],
)
def test_a_file_that_cannot_be_read_is_refused_whole(app, runner, tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    result = import_file(runner, str(path))
    assert result.exit_code == 1
    assert "エラー：" in result.output and message in result.output, result.output
    assert stored(app) == {}


def test_a_second_run_of_the_same_file_changes_nothing(app, runner, tmp_path):
    path = write(tmp_path, HEADER + "alice,alice@example.com,花子,,\nbob,bob@example.com,,,\n")
    assert import_file(runner, path).exit_code == 0
    before = stored(app)
    again = import_file(runner, path)
    assert again.exit_code == 0
    assert "作成 0 件、更新 0 件、変更なし 2 件、問題のある行 0 件" in again.output
    assert stored(app) == before


def test_a_changed_line_is_a_problem_without_update_and_a_change_with_it(app, runner, tmp_path):
    """A member imported before (no password yet, an invitation pending) is corrected by
    a newer file: only with --update, the operator flag never, and the link mailed to the
    old address dies with it."""
    import_file(runner, write(tmp_path, HEADER + "alice,alice@example.com,,,\n", name="a.csv"))
    with app.app_context():
        from portal import password_reset

        password_reset.issue(members.find("alice"), sessions.now())  # mailed to the old one
    path = write(tmp_path, HEADER + "alice,new@example.com,花子,,1\n")
    refused = import_file(runner, path)
    assert refused.exit_code == 1
    assert "2行目（login_id）：このログインIDのメンバーは既に登録されていて、内容が違います" in (
        refused.output
    )
    assert stored(app)["alice"][0] == "alice@example.com"

    changed = import_file(runner, path, "--update")
    assert changed.exit_code == 0, changed.output
    assert "作成 0 件、更新 1 件" in changed.output
    assert stored(app)["alice"] == ("new@example.com", "花子", "", False, False)
    with app.app_context():
        assert db.session.scalar(db.select(func.count(PasswordReset.id))) == 0


def test_a_dry_run_reports_everything_and_writes_nothing(app, runner, tmp_path):
    path = write(tmp_path, HEADER + "alice,alice@example.com,,,\nbob,bad,,,\n")
    result = import_file(runner, path, "--dry-run")
    assert result.exit_code == 1
    assert "確認のみ（何も書き込んでいません）：作成 1 件" in result.output
    assert "3行目（email）" in result.output
    assert stored(app) == {}
    with app.app_context():
        assert db.session.scalar(db.select(func.count(AuditEvent.id))) == 0


def test_rows_are_written_in_batches_and_read_as_a_stream(app):
    lines = HEADER + "".join(f"m{i:05d},m{i}@example.com,,,\n" for i in range(2500))
    seen = []
    with app.app_context():
        report = importing.run(
            io.BytesIO(lines.encode()), now=sessions.now(), batch=1000, progress=seen.append
        )
        assert (report.created, report.rejected) == (2500, 0)
        assert db.session.scalar(db.select(func.count(Member.id))) == 2500
    assert seen == [1000, 1000, 500]


@pytest.mark.wired
def test_invite_mails_each_new_member_a_link_that_sets_the_password(
    app, runner, tmp_path, smtp_server
):
    path = write(tmp_path, HEADER + "alice,alice@example.com,花子,,\n")
    result = import_file(runner, path, "--invite", "--invite-days", "3")
    assert result.exit_code == 0, result.output
    assert "招待メール：送信 1 件、送信できず 0 件" in result.output
    (mail,) = smtp_server.wait_for(1)
    assert mail["To"] == "alice@example.com"
    body = body_text(mail)
    assert "ログインIDは alice です。" in body and "有効期限は3日" in body
    token = re.search(r"/login/reset/(\S+)", body).group(1)

    client = app.test_client()
    assert client.get(f"/login/reset/{token}").location == "/login/reset"
    page = client.get("/login/reset")
    assert "パスワードの設定" in page.text and "パスワードを設定する" in page.text
    new_password = "a long pass phrase nobody guesses 42"
    done = client.post(
        "/login/reset",
        data={"new_password": new_password, "new_password_confirm": new_password},
    )
    assert done.location == "/login", done.text[:500]
    assert "パスワードを設定しました。" in client.get("/login").text
    with app.app_context():
        assert members.has_password(get_member(members.find("alice").id))
    signed_in = app.test_client().post(
        "/login", data={"login_id": "alice", "password": new_password}
    )
    assert signed_in.status_code == 302


@pytest.mark.wired
def test_the_admin_page_offers_an_imported_member_the_invitation_again(
    app, admin_client, runner, tmp_path, smtp_server
):
    import_file(runner, write(tmp_path, HEADER + "alice,alice@example.com,花子,,\n"))
    page = admin_client.get("/admin/members/alice").text
    assert "まだパスワードを設定していません" in page and "招待メールを送る" in page
    assert "パスワード再設定のリンクを送る" not in page
    dialog = admin_client.get(
        "/admin/members/alice/password-reset", headers={"HX-Request": "true"}
    ).text
    assert "招待メールを送る" in dialog and "有効期限7日" in dialog
    done = admin_client.post(
        "/admin/members/alice/password-reset", headers={"HX-Request": "true"}
    ).text
    assert "招待メール（パスワード設定のリンク、有効期限7日）を送信しました" in done
    (mail,) = smtp_server.wait_for(1)
    assert "ログインIDは alice です。" in body_text(mail)
    with app.app_context():
        (event,) = db.session.scalars(
            db.select(AuditEvent).where(AuditEvent.event == "member.invited")
        )
        assert event.actor_label == "boss"
        link = db.session.scalar(db.select(PasswordReset))
        assert link.requested_by == "boss"
        assert 6 <= (link.expires_at - link.created_at).days <= 7


def upload(admin_client, content: bytes, action: str, **options: str):
    data = {"file": (io.BytesIO(content), "members.csv"), "action": action, **options}
    return admin_client.post("/admin/import", data=data, content_type="multipart/form-data")


def test_the_admin_upload_checks_then_imports(app, admin_client):
    page = admin_client.get("/admin/members").text
    assert 'href="/admin/import"' in page
    content = (HEADER + "alice,alice@example.com,花子,,\nbob,bad,,,\n").encode()
    checked = upload(admin_client, content, "check")
    assert checked.status_code == 200
    assert "確認の結果（何も書き込んでいません）" in checked.text
    assert "作成 1 件、更新 0 件、変更なし 0 件、問題のある行 1 件" in checked.text
    assert "<td>3</td><td>email</td><td>メールアドレスの形式が正しくありません。</td>" in (
        checked.text
    )
    assert "alice" not in stored(app)
    imported = upload(admin_client, content, "import")
    assert "取り込みの結果" in imported.text
    assert stored(app)["alice"] == ("alice@example.com", "花子", "", False, False)
    with app.app_context():
        (event,) = db.session.scalars(
            db.select(AuditEvent).where(AuditEvent.event == "members.imported")
        )
        assert event.actor_label == "boss"


def test_the_admin_upload_refuses_a_bad_file_or_none_with_a_message(app, admin_client):
    refused = upload(admin_client, b"email\nx@example.com\n", "import")
    assert refused.status_code == 200
    assert "見出しに必要な列がありません: login_id" in refused.text
    none = admin_client.post(
        "/admin/import", data={"action": "import"}, content_type="multipart/form-data"
    )
    assert "CSVファイルを選んでください。" in none.text


def test_the_admin_upload_is_for_operators_with_a_fresh_second_step(app, member, admin_client):
    member_client = app.test_client()
    member_client.post("/login", data={"login_id": "alice", "password": PASSWORD})
    assert member_client.get("/admin/import").status_code == 403
    with admin_client.session_transaction() as s:
        s["tfa_at"] -= 11 * 60
    stale = upload(admin_client, (HEADER + "zed,zed@example.com,,,\n").encode(), "import")
    assert "zed" not in stored(app) and stale.status_code in (200, 302)


# --- review of the import ---------------------------------------------------------------


def test_an_active_members_address_and_phone_never_change_by_file(app, runner, tmp_path):
    """Review finding: an operator could upload a member's (even another operator's)
    email and phone with "update", then mail a reset link to the new address and sign in
    with the new phone's codes. Only the member changes them (with a code); a member who
    never set a password (imported, invited) can still be corrected by file."""
    with app.app_context():
        members.create("alice", email="alice@example.com", password=PASSWORD, phone=PHONE)
    import_file(runner, write(tmp_path, HEADER + "newbie,old@example.com,,,\n", name="a.csv"))
    path = write(
        tmp_path,
        HEADER
        + "alice,evil@attacker.example,アリス,080-9999-0000,\n"
        + "newbie,new@example.com,新人,,\n",
    )
    result = import_file(runner, path, "--update")
    assert result.exit_code == 1
    assert "2行目（email）：パスワードを設定済みのメンバーのメールアドレスと電話番号は" in (
        result.output
    )
    assert "作成 0 件、更新 1 件" in result.output
    assert stored(app)["alice"] == ("alice@example.com", "", PHONE, False, True)
    assert stored(app)["newbie"] == ("new@example.com", "新人", "", False, False)
    # A name alone still changes for anyone.
    renamed = import_file(
        runner, write(tmp_path, "login_id,email,name\nalice,alice@example.com,アリス\n"), "--update"
    )
    assert renamed.exit_code == 0, renamed.output
    assert stored(app)["alice"][1] == "アリス"


def test_an_update_from_a_file_without_a_column_keeps_what_is_stored(app, runner, tmp_path):
    """Review finding: a file of login_id,email with --update wiped every name and phone
    (SMS sign-in with it)."""
    with app.app_context():
        members.create("alice", email="a@example.com", password=PASSWORD, name="花子", phone=PHONE)
    path = write(tmp_path, "login_id,email\nalice,a@example.com\n")
    for options in ((), ("--update",)):
        result = import_file(runner, path, *options)
        assert result.exit_code == 0 and "変更なし 1 件" in result.output, result.output
    assert stored(app)["alice"] == ("a@example.com", "花子", PHONE, False, True)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        # An unclosed quote takes the rest of the file into one field.
        ('bob,"bob@example.com,,,\ncarol,carol@example.com,,,\n', "メールアドレスの形式"),
        ("bob,bob@example.com,x\ry,,\n", "new-line character"),  # a stray carriage return
        ("bob,bob@example.com," + "x" * 200_000 + ",,\n", "field larger than field limit"),
    ],
)
def test_a_line_csv_cannot_read_is_a_problem_not_an_error_page(
    app, runner, admin_client, tmp_path, line, reason
):
    """Review finding: csv's own errors escaped as a 500 after earlier batches were
    written, with no audit row. Now the line is reported and the rest goes on."""
    content = HEADER + "alice,alice@example.com,,,\n" + line
    result = import_file(runner, write(tmp_path, content))
    assert result.exit_code == 1
    assert "3行目" in result.output and reason in result.output
    assert "alice" in stored(app)
    page = upload(admin_client, content.encode(), "check")
    assert page.status_code == 200 and "<td>3</td>" in page.text


def test_a_quoted_newline_reports_the_first_line_of_its_record(app, runner, tmp_path):
    path = write(tmp_path, HEADER + 'alice,"alice@\nexample.com",,,\nbob,bad,,,\n')
    result = import_file(runner, path)
    assert "2行目（email）" in result.output and "4行目（email）" in result.output


def test_the_admin_upload_creates_no_operators(app, admin_client):
    """Review finding: a line with operator=1 made an operator from the web (and, with
    invitations, mailed them a link): only a shell gives the admin area."""
    page = upload(admin_client, (HEADER + "mallory,m@example.com,,,1\n").encode(), "import")
    assert "<td>2</td><td>operator</td><td>管理者はこの画面からは登録できません。" in page.text
    assert "mallory" not in stored(app)


@pytest.mark.settings(WTF_CSRF_ENABLED=True)
def test_the_admin_upload_takes_a_large_file_with_csrf_on(app, client, operator_totp):
    """Review finding: with CSRF on (production), the CSRF check read the body before the
    view raised the size limit, so any file over MAX_CONTENT_LENGTH (1 MB) was a 413."""
    admin_client = client
    token = extract_csrf(client.get("/login").text)
    data = {"login_id": "boss", "password": OPERATOR_PASSWORD, "csrf_token": token}
    assert client.post("/login", data=data).location == "/login/verify"
    token = extract_csrf(client.get("/login/verify").text)
    code = {"code": operator_totp.now(), "csrf_token": token}
    assert client.post("/login/verify", data=code).location == "/"
    page = admin_client.get("/admin/import").text
    token = extract_csrf(page)
    rows = "".join(f"m{i:06d},m{i}@example.com,,,\n" for i in range(40_000))
    content = (HEADER + rows).encode()
    assert len(content) > 1024 * 1024
    checked = big_upload(admin_client, content, action="check", csrf_token=token)
    assert checked.status_code == 200, checked.status_code
    assert "作成 40000 件" in checked.text
    too_big = big_upload(admin_client, b"x" * (17 * 1024 * 1024), csrf_token=token)
    assert too_big.status_code == 413


def big_upload(client, content: bytes, **fields: str):
    """A multipart POST encoded here, in memory: the test client would spool a large
    body to a temporary file it never closes."""
    values = {"file": FileStorage(io.BytesIO(content), "members.csv", content_type="text/csv")}
    boundary, body = encode_multipart(values | fields)
    return client.post(
        "/admin/import", data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )


@pytest.mark.wired
def test_forgotten_password_keeps_an_invited_members_invitation(app, runner, tmp_path, smtp_server):
    """Review finding: anyone typing an invited member's ID on パスワードをお忘れの方 swapped
    the 7-day invitation for a 30-minute reset link. They get the invitation again."""
    import_file(runner, write(tmp_path, HEADER + "alice,alice@example.com,,,\n"))
    client = app.test_client()
    client.post("/login/forgot", data={"login_id": "alice"})
    (mail,) = smtp_server.wait_for(1)
    assert "有効期限は7日" in body_text(mail)
    with app.app_context():
        link = db.session.scalar(db.select(PasswordReset))
        assert (link.expires_at - link.created_at).days == 7
