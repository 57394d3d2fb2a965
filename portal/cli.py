"""Command-line tools: ``flask --app wsgi members …``, ``demo-accounts``, ``keys rotate``.

What the commands print for people (results and errors, the domain's messages too)
is in the language of the operator's shell (``LANG=en_US.UTF-8``: English; ``C`` or
unset: the portal's default, Japanese); see :func:`portal.i18n.shell_language`. Their
``--help`` stays English like Flask's own, and machine-read output (``members list``,
``policy show``, CSV) keeps its field names in every language."""

from __future__ import annotations

import functools
import os
import secrets
import sys
import unicodedata
from collections.abc import Callable
from typing import Any

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext
from flask_babel import force_locale
from flask_babel import gettext as _

from . import i18n, members
from .extensions import db


def spoken(command: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command (inside its app context) in the shell's language."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        with force_locale(i18n.shell_language()):
            return command(*args, **kwargs)

    return run


class Group(AppGroup):
    """An AppGroup whose commands speak the shell's language."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], click.Command]:
        register = super().command(*args, **kwargs)
        return lambda f: register(spoken(f))


members_cli = Group("members", help="Create members and set passwords.")
keys_cli = Group("keys", help="Manage encryption keys for secrets at rest.")
policy_cli = Group("policy", help="Show or change the two-step verification policy.")
forms_cli = Group("forms", help="Import, export and list member-area forms.")


def fail(message: str) -> None:
    """One clear line on stderr and exit status 1; nothing has been written."""
    click.echo(_("エラー：%(message)s", message=message), err=True)
    sys.exit(1)


def need_password_stdin() -> None:
    # Passwords never go on the command line (shell history, the process list).
    option = "--password-stdin"
    fail(_("%(option)s を指定し、パスワードは標準入力から渡してください。", option=option))


def member_or_fail(login_id: str):
    member = members.find(login_id)
    if member is None:
        fail(_("ログインID「%(login_id)s」の会員はいません。", login_id=login_id))
    return member


def read_password() -> str:
    data = sys.stdin.readline()
    return data.rstrip("\r\n")


@members_cli.command("create")
@click.argument("login_id")
@click.option("--email", required=True, help="Member's email address.")
@click.option("--name", default="", help="Display name.")
@click.option("--phone", default="", help="Phone number.")
@click.option("--operator", is_flag=True, help="Give access to the admin area.")
@click.option(
    "--password-stdin", "password_stdin", is_flag=True, help="Read the password from stdin."
)
def create_member(login_id, email, name, phone, operator, password_stdin):
    """Create a member."""
    if not password_stdin:
        need_password_stdin()
    try:
        member = members.create(
            login_id,
            email=email,
            password=read_password(),
            name=name,
            phone=phone,
            is_operator=operator,
        )
    except members.MemberError as exc:
        db.session.rollback()
        fail(str(exc))
    if operator:
        from . import audit

        audit.record("admin.operator_granted", subject=member, actor_label="cli")
    click.echo(_("会員 %(login_id)s を作成しました。", login_id=member.login_id))


@members_cli.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--dry-run", is_flag=True, help="Check every line and report; write nothing.")
@click.option(
    "--update", "update_existing", is_flag=True, help="Change name/email/phone of existing IDs."
)
@click.option("--invite", is_flag=True, help="Mail each new member a link to set a password.")
@click.option(
    "--invite-days",
    type=click.IntRange(1, 90),
    default=None,
    help="Days the invitation link works (default PORTAL_INVITE_DAYS, 7).",
)
def import_members(csv_file, dry_run, update_existing, invite, invite_days):
    """Import members from a CSV file (login_id,email[,name,phone,operator])."""
    from . import audit, importing, sessions

    size = os.path.getsize(csv_file)
    with (
        open(csv_file, "rb") as raw,
        click.progressbar(
            length=size, label=_("確認中") if dry_run else _("取り込み中"), file=sys.stderr
        ) as bar,
    ):
        done = [0]

        def progress(_lines: int) -> None:
            position = raw.tell()
            bar.update(position - done[0])
            done[0] = position

        try:
            report = importing.run(
                raw,
                now=sessions.now(),
                update_existing=update_existing,
                dry_run=dry_run,
                progress=progress,
                keep_created=invite,
            )
        except importing.FileError as exc:
            db.session.rollback()
            fail(str(exc))
    for problem in report.problems:
        click.echo(problem_line(problem), err=True)
    if report.rejected > len(report.problems):
        click.echo(
            _("（ほか %(n)d 件の問題は省略しました）", n=report.rejected - len(report.problems)),
            err=True,
        )
    if not dry_run:
        audit.record(
            "members.imported",
            actor_label="cli",
            created=report.created,
            updated=report.updated,
            unchanged=report.unchanged,
            rejected=report.rejected,
        )
    invited = not_mailed = 0
    if invite and not dry_run and report.created_ids:
        invited, not_mailed = send_invitations(report.created_ids, invite_days)
    click.echo(summary(report, dry_run, invited, not_mailed))
    if report.rejected:
        sys.exit(1)


def problem_line(problem) -> str:
    if problem.column:
        return _(
            "%(line)d行目（%(column)s）：%(message)s",
            line=problem.line,
            column=problem.column,
            message=problem.message,
        )
    return _("%(line)d行目：%(message)s", line=problem.line, message=problem.message)


def summary(report, dry_run: bool, invited: int, not_mailed: int) -> str:
    counts = _(
        "作成 %(created)d 件、更新 %(updated)d 件、変更なし %(unchanged)d 件、"
        "問題のある行 %(rejected)d 件",
        created=report.created,
        updated=report.updated,
        unchanged=report.unchanged,
        rejected=report.rejected,
    )
    if dry_run:
        return _("確認のみ（何も書き込んでいません）：%(counts)s", counts=counts)
    text = _("取り込みました：%(counts)s", counts=counts)
    if invited or not_mailed:
        text += "\n" + _(
            "招待メール：送信 %(sent)d 件、送信できず %(failed)d 件",
            sent=invited,
            failed=not_mailed,
        )
    return text


def send_invitations(member_ids: list[int], days: int | None) -> tuple[int, int]:
    """Mail each new member an invitation; returns how many were mailed and not."""
    from . import audit, invitations, sessions

    def record(member, sent) -> None:
        event, detail = sent.audit()
        audit.record(event, subject=member, actor_label="cli", **detail)

    with click.progressbar(member_ids, label=_("招待メールを送信中"), file=sys.stderr) as ids:
        return invitations.invite_all(
            ids, sessions.now(), requested_by="cli", record=record, days=days
        )


@members_cli.command("set-password")
@click.argument("login_id")
@click.option("--password-stdin", "password_stdin", is_flag=True, help="Read from stdin.")
def set_password(login_id, password_stdin):
    """Set a member's password (their sessions end)."""
    if not password_stdin:
        need_password_stdin()
    member = member_or_fail(login_id)
    try:
        members.set_password(member, read_password())
    except members.MemberError as exc:
        db.session.rollback()
        fail(str(exc))
    from . import audit

    audit.record("password.changed", subject=member, actor_label="cli")
    click.echo(_("%(login_id)s のパスワードを設定しました。", login_id=member.login_id))


@members_cli.command("list")
@click.option("--tfa", type=click.Choice(["on", "off"]), help="Only members with / without 2FA.")
@click.option(
    "--method",
    type=click.Choice(["app", "email", "sms", "passkey"]),
    help="Only members with this method (passkey: at least one passkey).",
)
@click.option("--csv", "as_csv", is_flag=True, help="CSV (UTF-8) instead of a table.")
def list_members(tfa, method, as_csv):
    """List members with their 2FA methods (streams; fine for a million rows)."""
    import csv as csv_module

    from .admin.common import safe_cell
    from .queries import MemberFilter, iter_members

    flt = MemberFilter(tfa=tfa or "", method=method or "")
    rows = iter_members(flt)
    from . import audit

    audit.record(
        "admin.export",
        actor_label="cli",
        export="members list",
        filters={"tfa": flt.tfa, "method": flt.method},
    )
    if as_csv:
        writer = csv_module.writer(sys.stdout)
        writer.writerow(["login_id", "name", "email", "methods", "recovery_codes_left", "passkeys"])
        for row in rows:
            writer.writerow(
                [
                    safe_cell(row.member.login_id),
                    safe_cell(row.member.name),
                    safe_cell(row.member.email),
                    " ".join(row.methods),
                    row.recovery_left if row.methods else "",
                    row.passkeys if row.methods else "",
                ]
            )
        return
    for row in rows:
        methods = ",".join(row.methods) or "-"
        click.echo(f"{row.member.login_id}\t{methods}\t{row.member.email}\t{row.member.name}")


@members_cli.command("reset-2fa")
@click.argument("login_id")
def reset_two_factor(login_id):
    """Remove every 2FA method, recovery code and session of a member (無効化)."""
    from . import member_resets, twofactor
    from .sessions import now

    member = member_or_fail(login_id)
    try:
        # The same effects, audit row and mails as the admin button and the API.
        methods = member_resets.reset_second_step(
            member,
            actor=None,
            actor_label="cli",
            now=now(),
            ip="",
            user_agent="flask members reset-2fa",
        )
    except twofactor.NoSecondStep:
        fail(
            _(
                "%(login_id)s には二段階認証が設定されていません。無効化するものはありません。",
                login_id=member.login_id,
            )
        )
    click.echo(
        _(
            "%(login_id)s の二段階認証を無効化しました（削除：%(methods)s）。",
            login_id=member.login_id,
            methods=", ".join(methods),
        )
    )


@members_cli.command("unlock-2fa")
@click.argument("login_id")
def unlock_two_factor(login_id):
    """Lift a member's second-step locks (also the one after 100 failures)."""
    from . import audit
    from .twofactor import lockout

    member = member_or_fail(login_id)
    was_blocked = member.tfa_blocked_at is not None
    lockout.clear(member)
    audit.record("admin.unlock_2fa", subject=member, actor_label="cli", was_blocked=was_blocked)
    click.echo(_("%(login_id)s の二段階認証のロックを解除しました。", login_id=member.login_id))


@members_cli.command("grant-operator")
@click.argument("login_id")
def grant_operator(login_id):
    """Give a member access to the admin area."""
    from . import audit

    member = member_or_fail(login_id)
    member.is_operator = True
    db.session.commit()
    audit.record("admin.operator_granted", subject=member, actor_label="cli")
    click.echo(_("%(login_id)s を管理者にしました。", login_id=member.login_id))


@click.command("demo-accounts")
@with_appcontext
@spoken
def demo_accounts():
    """Make sure ``demo`` and ``admin`` exist, give both fresh passwords, print them.
    Development only: a well-known operator account has no place on a real site."""
    from flask import current_app

    if current_app.config["PORTAL_ENV"] != "development":
        fail(_("demo-accounts は PORTAL_ENV=development のときだけ実行できます。"))
    address = f"http://localhost:{current_app.config['PORT']}/"
    lines = [_("アドレス：%(url)s", url=address), ""]
    lines.append(_("デモアカウント（起動のたびに新しいパスワードになります）："))
    for login_id, operator in (("demo", False), ("admin", True)):
        password = secrets.token_urlsafe(12)
        member = members.find(login_id)
        if member is None:
            members.create(
                login_id,
                email=f"{login_id}@example.com",
                password=password,
                name=_("デモ会員") if not operator else _("デモ管理者"),
                is_operator=operator,
            )
        else:
            members.set_password(member, password)
        role = _("（管理者）") if operator else _("（会員）")
        lines.append(f"  {login_id:<6} {padded(role, 16)} " + _("パスワード：") + password)
    lines += ["", _("Ctrl+C で停止します。")]
    click.echo(framed(lines))


def columns(text: str) -> int:
    """How many terminal columns ``text`` takes: wide (CJK) characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def padded(text: str, width: int) -> str:
    return text + " " * max(0, width - columns(text))


def framed(lines: list[str]) -> str:
    """The lines in an ASCII box, so the address and passwords stand out of the log."""
    width = max(columns(line) for line in lines)
    rule = "+" + "-" * (width + 4) + "+"
    body = [f"|  {padded(line, width)}  |" for line in lines]
    return "\n".join(["", rule, *body, rule, ""])


@keys_cli.command("rotate")
def rotate_keys():
    """Re-encrypt stored TOTP secrets under the first key in PORTAL_ENCRYPTION_KEYS."""
    from .twofactor import totp
    from .twofactor.crypto import SecretTampered

    try:
        count = totp.rotate_secrets()
    except SecretTampered:
        db.session.rollback()
        fail(
            _(
                "%(keys)s のどの鍵でも復号できないシークレットがあるため、何も変更していません。",
                keys="PORTAL_ENCRYPTION_KEYS",
            )
        )
    click.echo(_("%(count)d 件のシークレットを再暗号化しました。", count=count))


@policy_cli.command("show")
def policy_show():
    """Every policy field, one per line (trusted networks joined with "; ")."""
    from .twofactor import policy
    from .web import policy as current

    for field, value in policy.values(current.current()).items():
        click.echo(f"{field} {value.replace(chr(10), '; ')}".rstrip())


@policy_cli.command("set")
@click.argument("field")
@click.argument("value")
def policy_set(field, value):
    """Change one field, validated like the admin page, and audited."""
    from . import audit
    from .sessions import now
    from .twofactor import devices, policy
    from .web import policy as current

    if field not in policy.FIELDS:
        fail(
            _(
                "不明な項目です：%(field)s（指定できる項目：%(fields)s）",
                field=field,
                fields=", ".join(policy.FIELDS),
            )
        )
    row = current.current()
    raw = policy.values(row) | {field: value}
    clean, errors = policy.validate(raw, path_exists=current.landing_exists)
    if errors:
        fail(f"{field}: {errors.get(field) or next(iter(errors.values()))}")
    changes = policy.save(row, clean, by="cli", now=now())
    if not changes:
        db.session.rollback()
        click.echo(_("%(field)s は既に %(value)s です。", field=field, value=value))
        return
    audit.record(
        "admin.policy_changed", actor_label="cli", changes={k: list(v) for k, v in changes.items()}
    )
    if "allow_remember_device" in changes and not row.allow_remember_device:
        devices.forget_everyone()
    click.echo(f"{field} {policy.values(row)[field].replace(chr(10), '; ')}")


@forms_cli.command("import")
@click.argument("json_file", type=click.File("rb"))
def forms_import(json_file):
    """Create the form in JSON_FILE, or replace the one with its slug (its submissions
    stay). Validated like the admin editor: one line on stderr, nothing written."""
    from . import audit, member_forms

    raw = json_file.read(member_forms.MAX_FILE + 1)
    if len(raw) > member_forms.MAX_FILE:
        fail(_("ファイルが大きすぎます（%(max)dバイトまで）。", max=member_forms.MAX_FILE))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        fail(_("ファイルをUTF-8として読めません。"))
    try:
        spec = member_forms.loads(text)
        form, created = member_forms.import_spec(spec, by="cli")
    except member_forms.SpecError as refused:
        db.session.rollback()
        fail(str(refused))
    audit.record(
        "admin.form_saved",
        actor_label="cli",
        slug=form.slug,
        form_id=form.id,
        created=created,
        open=form.is_open,
        step_up_minutes=form.step_up_minutes,
    )
    if created:
        click.echo(_("フォーム %(slug)s を作成しました。", slug=form.slug))
    else:
        click.echo(_("フォーム %(slug)s を置き換えました。", slug=form.slug))


@forms_cli.command("export")
@click.argument("slug")
def forms_export(slug):
    """Print the form with that slug as JSON (what ``forms import`` reads)."""
    from . import member_forms

    form = member_forms.find(slug)
    if form is None:
        fail(_("フォーム %(slug)s はありません。", slug=slug))
    click.echo(member_forms.dumps(form), nl=False)


@forms_cli.command("list")
def forms_list():
    """One line a form: slug, open or closed, submissions, title."""
    from . import member_forms

    counts = member_forms.sent_counts()
    for form in member_forms.all_forms():
        state = _("受付中") if form.is_open else _("停止中")
        click.echo(f"{form.slug}\t{state}\t{counts.get(form.id, 0)}\t{form.title}")


def init_app(app: Flask) -> None:
    app.cli.add_command(forms_cli)
    app.cli.add_command(policy_cli)
    app.cli.add_command(members_cli)
    app.cli.add_command(keys_cli)
    app.cli.add_command(demo_accounts)
