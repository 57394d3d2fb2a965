"""Bulk import of members from a CSV file (``members import``, the admin's upload).

The file is UTF-8 (with or without a BOM), one header row naming the columns
``login_id,email`` and optionally ``name,phone,operator``, in any order. It is read as a
stream, a batch of rows at a time: memory holds one batch, never the file; the login IDs
seen so far (to name a duplicate's first line) are kept in a temporary file.

Every line is checked with the same rules as a member created one at a time
(portal/members.py). A line with a problem writes nothing and is reported (line, column,
reason); the others are written in batches, one transaction each. A line equal to the
member already stored is "unchanged", so importing the same file twice changes nothing.
A line naming an existing member with other values is a problem unless ``update`` is
given (then name, email and phone change; never the operator flag, which only
``grant-operator`` gives). New members get no password (members.NO_PASSWORD): they set
one through an invitation (portal/invitations.py) or a password-reset link.
"""

from __future__ import annotations

import csv
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from . import members
from .extensions import db
from .models import Member, PasswordReset

REQUIRED = ("login_id", "email")
OPTIONAL = ("name", "phone", "operator")
YES = {"1", "true", "yes", "y", "はい", "○"}
NO = {"", "0", "false", "no", "n", "いいえ", "×"}
BATCH = 1000
NAME_MAX = 200
KEPT_PROBLEMS = 1000  # problems kept for the report; all are counted


class FileError(ValueError):
    """The file as a whole cannot be imported (not UTF-8, no usable header): nothing
    is written. The message is shown as it is."""


@dataclass(frozen=True)
class Problem:
    line: int
    column: str  # the CSV column ("" for the whole line)
    message: str


@dataclass
class Report:
    """What an import did (or, dry, would do)."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0  # lines with a problem
    problems: list[Problem] = field(default_factory=list)
    created_ids: list[int] = field(default_factory=list)

    def add_problem(self, problem: Problem) -> None:
        if len(self.problems) < KEPT_PROBLEMS:
            self.problems.append(problem)

    @property
    def lines(self) -> int:
        return self.created + self.updated + self.unchanged + self.rejected


@dataclass
class _Row:
    line: int
    login_id: str
    key: str
    email: str
    name: str
    phone: str
    operator: bool
    present: frozenset[str]  # the file's columns: the others keep their stored values


NO_OPERATORS_HERE = _l(
    "管理者はこの画面からは登録できません。コマンドで取り込むか、"
    "登録後に grant-operator で権限を付けてください。"
)
CONTACTS_ARE_THEIRS = _l(
    "パスワードを設定済みのメンバーのメールアドレスと電話番号は、取り込みでは変更できません"
    "（本人がメンバー情報で変更します）。"
)
NOT_UTF8 = _l(
    "%(line)d行目: UTF-8のテキストとして読めません。UTF-8で保存したCSVファイルを使ってください。"
)


def read(stream: IO[bytes]) -> Iterator[tuple[int, dict[str, str]]]:
    """The file's lines after the header as (line number, {column: value}); a line whose
    cells do not match the header comes with the key ``""`` set to the problem."""
    yield from _rows(csv.reader(_utf8_lines(stream)))


def _rows(reader) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        header = next(reader)
    except StopIteration:
        raise FileError(
            _("ファイルが空です。1行目に見出し（login_id,email など）が必要です。")
        ) from None
    columns = [cell.strip().lower() for cell in header]
    missing = [name for name in REQUIRED if name not in columns]
    unknown = [name for name in columns if name not in REQUIRED + OPTIONAL]
    if missing:
        raise FileError(_("見出しに必要な列がありません: %(columns)s", columns=", ".join(missing)))
    if unknown:
        raise FileError(
            _(
                "見出しに使えない列があります: %(columns)s（使える列: %(allowed)s）",
                columns=", ".join(unknown),
                allowed=", ".join(REQUIRED + OPTIONAL),
            )
        )
    if len(set(columns)) != len(columns):
        raise FileError(_("見出しに同じ列が2回以上あります。"))
    while True:
        line = reader.line_num + 1  # a quoted newline: the record's first line
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # A stray carriage return, an unclosed quote, a field over csv's limit: this
            # line is a problem, the reading goes on with the next one.
            yield line, {"": _("この行はCSVとして読めません（%(reason)s）。", reason=str(exc))}
            continue
        if not any(cell.strip() for cell in cells):
            continue  # a blank line
        if len(cells) < len(columns):
            cells = cells + [""] * (len(columns) - len(cells))  # trailing cells left out
        if len(cells) != len(columns):
            yield (
                line,
                {
                    "": _(
                        "列の数（%(found)d）が見出し（%(expected)d）より多くなっています。",
                        found=len(cells),
                        expected=len(columns),
                    )
                },
            )
            continue
        yield line, dict(zip(columns, cells, strict=True))


def _utf8_lines(stream: IO[bytes]) -> Iterator[str]:
    """The file's lines decoded one at a time (a newline byte never sits inside a UTF-8
    character), so a line that is not UTF-8 is named by its number."""
    for number, raw in enumerate(stream, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FileError(str(NOT_UTF8 % {"line": number})) from None
        yield text.removeprefix("\ufeff") if number == 1 else text


def _check(line: int, values: dict[str, str], report: Report, allow_operators: bool) -> _Row | None:
    """The line's values as they would be stored, or None with its problems reported."""
    problems: list[Problem] = []
    if "" in values:
        problems.append(Problem(line, "", values[""]))
    checked: dict[str, object] = {}
    for column, check in (
        ("login_id", members.check_login_id),
        ("email", members.check_email),
        ("name", _check_name),
        ("phone", members.normalise_phone),
        ("operator", _check_operator),
    ):
        if "" in values:
            break
        try:
            checked[column] = check(values.get(column, ""))
        except members.MemberError as exc:
            problems.append(Problem(line, column, str(exc)))
    if checked.get("operator") and not allow_operators:
        problems.append(Problem(line, "operator", str(NO_OPERATORS_HERE)))
    if problems:
        for problem in problems:
            report.add_problem(problem)
        report.rejected += 1
        return None
    login_id = str(checked["login_id"])
    return _Row(
        line=line,
        login_id=login_id,
        key=members.login_key(login_id),
        email=str(checked["email"]),
        name=str(checked["name"]),
        phone=str(checked["phone"]),
        operator=bool(checked["operator"]),
        present=frozenset(values),
    )


def _check_name(value: str) -> str:
    name = members.check_name(value)
    if len(name) > NAME_MAX:
        raise members.MemberError(_("氏名は%(n)d文字以内で入力してください。", n=NAME_MAX))
    return name


def _check_operator(value: str) -> bool:
    answer = value.strip().lower()
    if answer in YES:
        return True
    if answer in NO:
        return False
    raise members.MemberError(_("operator には 1 か 0（yes / no）を入力してください。"))


def run(
    stream: IO[bytes],
    *,
    now: datetime,
    update_existing: bool = False,
    dry_run: bool = False,
    batch: int = BATCH,
    progress: Callable[[int], None] | None = None,
    keep_created: bool = False,
    allow_operators: bool = True,
) -> Report:
    """Import the file; see the module's docstring. ``progress`` is called after each
    batch with how many lines were read since the last call; ``keep_created`` keeps the
    new members' ids in the report (to invite them); ``allow_operators=False`` makes a
    line asking for an operator a problem (the admin upload: only a shell gives the
    admin area). Raises :class:`FileError` (nothing written) for a file whose header
    cannot be read."""
    options = (now, update_existing, dry_run, batch, progress, keep_created, allow_operators)
    with _Seen() as seen:
        return _run(stream, seen, *options)


def _run(
    stream, seen, now, update_existing, dry_run, batch, progress, keep_created, allow_operators
) -> Report:
    report = Report()
    pending: list[_Row] = []
    read_lines = 0

    def flush() -> None:
        nonlocal read_lines
        if pending:
            _write(pending, report, now=now, update_existing=update_existing, dry_run=dry_run)
            if not keep_created:
                report.created_ids.clear()
            pending.clear()
        seen.settle()
        if progress is not None and read_lines:
            progress(read_lines)
        read_lines = 0

    for line, values in read(stream):
        read_lines += 1
        row = _check(line, values, report, allow_operators)
        if row is not None:
            first = seen.first(row.key, line)
            if first != line:
                report.add_problem(
                    Problem(
                        line,
                        "login_id",
                        _("%(line)d行目と同じログインIDです。", line=first),
                    )
                )
                report.rejected += 1
            else:
                pending.append(row)
        if len(pending) >= batch:
            flush()
    flush()
    db.session.rollback()  # a dry run's reads end here; a real run has committed
    report.problems.sort(key=lambda problem: problem.line)  # stored IDs come per batch
    return report


def _keeping_absent(row: _Row, old) -> _Row:
    """A column the file does not have keeps the stored value (an update from a file of
    login_id,email changes no one's name or phone)."""
    if "name" not in row.present:
        row.name = old.name
    if "phone" not in row.present:
        row.phone = old.phone
    return row


class _Seen:
    """The login IDs of the file so far, each with the line that named it first, kept
    on disk (a temporary SQLite file) so memory stays flat however long the file is;
    the current batch's are held in memory until :meth:`settle`."""

    def __enter__(self) -> _Seen:
        self._folder = tempfile.TemporaryDirectory(prefix="portal-import-")
        self._db = sqlite3.connect(os.path.join(self._folder.name, "seen.db"))
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE seen (key TEXT PRIMARY KEY, line INTEGER) WITHOUT ROWID")
        self._batch: dict[str, int] = {}
        return self

    def __exit__(self, *exc: object) -> None:
        self._db.close()
        self._folder.cleanup()

    def first(self, key: str, line: int) -> int:
        """The line that named ``key`` first (``line`` itself when none did)."""
        if key in self._batch:
            return self._batch[key]
        found = self._db.execute("SELECT line FROM seen WHERE key = ?", (key,)).fetchone()
        if found is not None:
            return found[0]
        self._batch[key] = line
        return line

    def settle(self) -> None:
        self._db.executemany("INSERT INTO seen VALUES (?, ?)", self._batch.items())
        self._batch.clear()


def _write(
    rows: list[_Row], report: Report, *, now: datetime, update_existing: bool, dry_run: bool
) -> None:
    """One batch in one transaction. A parallel creation of one of its IDs (the unique
    index refuses the batch) makes it read the stored members again, once."""
    for attempt in range(2):
        try:
            _write_once(rows, report, now=now, update_existing=update_existing, dry_run=dry_run)
            return
        except IntegrityError:
            db.session.rollback()
            if attempt:
                raise


def _write_once(
    rows: list[_Row], report: Report, *, now: datetime, update_existing: bool, dry_run: bool
) -> None:
    stored = {
        found.login_key: found
        for found in db.session.execute(
            select(
                Member.id,
                Member.login_key,
                Member.name,
                Member.email,
                Member.phone,
                Member.is_operator,
                Member.password_hash,
            ).where(Member.login_key.in_([row.key for row in rows]))
        )
    }
    created, changed, outcome = [], [], Report()
    for row in rows:
        old = stored.get(row.key)
        if old is None:
            created.append(row)
            continue
        row = _keeping_absent(row, old)
        contacts_changed = (old.email, old.phone) != (row.email, row.phone)
        if (old.name, old.email, old.phone) == (row.name, row.email, row.phone):
            outcome.unchanged += 1
        elif update_existing and contacts_changed and old.password_hash != members.NO_PASSWORD:
            # An active member's addresses are where their links and codes go: only they
            # change them (with a code to the new one), never a file, or whoever can
            # import could take the account over with a reset link.
            outcome.rejected += 1
            column = "email" if old.email != row.email else "phone"
            outcome.add_problem(Problem(row.line, column, str(CONTACTS_ARE_THEIRS)))
        elif not update_existing:
            outcome.rejected += 1
            outcome.add_problem(
                Problem(
                    row.line,
                    "login_id",
                    _(
                        "このログインIDのメンバーは既に登録されていて、内容が違います"
                        "（更新する指定をすると変更できます）。"
                    ),
                )
            )
        else:
            changed.append((old, row))
    if dry_run:
        pass  # counted below, nothing written
    elif created:
        new_ids = db.session.scalars(
            insert(Member).returning(Member.id, sort_by_parameter_order=True),
            [
                {
                    "login_id": row.login_id,
                    "login_key": row.key,
                    "name": row.name,
                    "email": row.email,
                    "phone": row.phone,
                    "password_hash": members.NO_PASSWORD,
                    "is_operator": row.operator,
                    "created_at": now,
                    "updated_at": now,
                }
                for row in created
            ],
        ).all()
        outcome.created_ids.extend(new_ids)
    if changed and not dry_run:
        db.session.execute(
            update(Member),
            [
                {"id": old.id, "name": row.name, "email": row.email, "phone": row.phone}
                for old, row in changed
            ],
        )
        moved = [old.id for old, row in changed if old.email != row.email]
        if moved:
            # A link mailed to the old address must not outlive it (as in the profile).
            db.session.execute(
                delete(PasswordReset).where(
                    PasswordReset.member_id.in_(moved), PasswordReset.used_at.is_(None)
                )
            )
    if not dry_run:
        db.session.commit()
    report.created += len(created)
    report.updated += len(changed)
    report.unchanged += outcome.unchanged
    report.rejected += outcome.rejected
    for problem in outcome.problems:
        report.add_problem(problem)
    report.created_ids.extend(outcome.created_ids)
