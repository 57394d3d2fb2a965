"""Member and audit queries for operators (the admin area, the admin API and the CLI),
built to stay fast on a million members: keyset pagination on the primary key (no
OFFSET, no COUNT per page view) and the per-row details fetched for one page of ids at a
time."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo

from sqlalchemy import Select, and_, exists, func, not_, or_, select, union_all

from . import audit, members
from .extensions import db
from .models import AuditEvent, ContactMethod, Member, Passkey, RecoveryCode, TotpCredential

METHODS = ("app", "email", "sms", "passkey")  # the order the admin area lists them in


@dataclass
class MemberFilter:
    q: str = ""
    tfa: str = ""  # "on" | "off" | ""
    method: str = ""  # one of METHODS, or ""

    @classmethod
    def from_args(cls, args) -> MemberFilter:
        tfa = args.get("tfa", "")
        method = args.get("method", "")
        raw_q = "".join(ch for ch in (args.get("q") or "") if ch.isprintable())
        return cls(
            q=raw_q.strip()[:100],
            tfa=tfa if tfa in ("on", "off") else "",
            method=method if method in METHODS else "",
        )

    def as_args(self) -> dict[str, str]:
        return {k: v for k, v in {"q": self.q, "tfa": self.tfa, "method": self.method}.items() if v}


def like_pattern(text: str) -> str:
    """``%text%`` for a case-insensitive LIKE (with ``escape="\\"``) that matches the
    typed text literally: its ``%``, ``_`` and backslashes are escaped."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def member_select(flt: MemberFilter, after: int | None = None, before: int | None = None) -> Select:
    """Members matching ``flt`` with ``after < id < before``. The bounds are repeated
    inside the method subqueries: PostgreSQL does not carry ``member.id > after`` over
    to the correlated ``member_id``, so its merge anti join would otherwise read every
    method row below ``after`` for each deep page."""
    stmt = select(Member)
    if flt.q:
        pattern = like_pattern(flt.q)
        stmt = stmt.where(
            or_(
                Member.login_key.like(pattern, escape="\\"),
                func.lower(Member.name).like(pattern, escape="\\"),
                func.lower(Member.email).like(pattern, escape="\\"),
            )
        )

    def bounded(column):
        conds = []
        if after is not None:
            conds.append(column > after)
        if before is not None:
            conds.append(column < before)
        return conds

    if after is not None:
        stmt = stmt.where(Member.id > after)
    if before is not None:
        stmt = stmt.where(Member.id < before)
    has_app = exists().where(
        TotpCredential.member_id == Member.id, *bounded(TotpCredential.member_id)
    )
    has_contact = exists().where(
        ContactMethod.member_id == Member.id, *bounded(ContactMethod.member_id)
    )
    has_passkey = exists().where(Passkey.member_id == Member.id, *bounded(Passkey.member_id))
    if flt.tfa == "on":
        # One EXISTS over both tables: "a OR b" makes PostgreSQL hash all of contact_method.
        any_method = union_all(
            select(TotpCredential.member_id).where(*bounded(TotpCredential.member_id)),
            select(ContactMethod.member_id).where(*bounded(ContactMethod.member_id)),
            select(Passkey.member_id).where(*bounded(Passkey.member_id)),
        ).subquery()
        stmt = stmt.where(exists().where(any_method.c.member_id == Member.id))
    elif flt.tfa == "off":
        stmt = stmt.where(and_(not_(has_app), not_(has_contact), not_(has_passkey)))
    if flt.method == "app":
        stmt = stmt.where(has_app)
    elif flt.method == "passkey":
        stmt = stmt.where(has_passkey)
    elif flt.method in ("email", "sms"):
        stmt = stmt.where(
            exists().where(
                ContactMethod.member_id == Member.id,
                ContactMethod.kind == flt.method,
                *bounded(ContactMethod.member_id),
            )
        )
    return stmt


@dataclass
class Page:
    rows: list[MemberRow]
    next_after: int | None = None  # id to continue after
    prev_before: int | None = None  # id to go back before


@dataclass
class MemberRow:
    member: Member
    methods: list[str] = field(default_factory=list)
    set_up_on: datetime | None = None
    recovery_left: int = 0
    passkeys: int = 0  # how many passkeys (a member may have up to 10)


def member_page(flt: MemberFilter, after: int | None, before: int | None, size: int) -> Page:
    if before is not None:
        stmt = member_select(flt, before=before)
        found = list(db.session.scalars(stmt.order_by(Member.id.desc()).limit(size + 1)))
        more_before = len(found) > size
        found = list(reversed(found[:size]))
        return Page(
            rows=describe(found),
            next_after=found[-1].id if found else None,
            prev_before=found[0].id if found and more_before else None,
        )
    stmt = member_select(flt, after=after)
    found = list(db.session.scalars(stmt.order_by(Member.id).limit(size + 1)))
    more = len(found) > size
    found = found[:size]
    return Page(
        rows=describe(found),
        next_after=found[-1].id if found and more else None,
        prev_before=found[0].id if found and after is not None else None,
    )


def describe(found: Sequence[Member]) -> list[MemberRow]:
    """Methods, set-up date, passkeys and recovery codes left for one page of members, in
    four queries whatever the page size."""
    ids = [m.id for m in found]
    rows = {m.id: MemberRow(m) for m in found}
    if not ids:
        return []
    first: dict[int, datetime] = {}
    for member_id, created in db.session.execute(
        select(TotpCredential.member_id, TotpCredential.created_at).where(
            TotpCredential.member_id.in_(ids)
        )
    ):
        rows[member_id].methods.append("app")
        first[member_id] = created
    for member_id, kind, created in db.session.execute(
        select(ContactMethod.member_id, ContactMethod.kind, ContactMethod.created_at).where(
            ContactMethod.member_id.in_(ids)
        )
    ):
        rows[member_id].methods.append(kind)
        if member_id not in first or created < first[member_id]:
            first[member_id] = created
    for member_id, keys, created in db.session.execute(
        select(Passkey.member_id, func.count(Passkey.id), func.min(Passkey.created_at))
        .where(Passkey.member_id.in_(ids))
        .group_by(Passkey.member_id)
    ):
        rows[member_id].methods.append("passkey")
        rows[member_id].passkeys = keys
        if member_id not in first or created < first[member_id]:
            first[member_id] = created
    for member_id, left in db.session.execute(
        select(RecoveryCode.member_id, func.count(RecoveryCode.id))
        .where(RecoveryCode.member_id.in_(ids), RecoveryCode.used_at.is_(None))
        .group_by(RecoveryCode.member_id)
    ):
        rows[member_id].recovery_left = left
    for member_id, row in rows.items():
        row.methods.sort(key=METHODS.index)
        row.set_up_on = first.get(member_id)
    return [rows[i] for i in ids]


def iter_members(flt: MemberFilter, batch: int = 1000) -> Iterator[MemberRow]:
    """Every matching member, in batches by keyset: memory stays flat for any count."""
    after = 0
    while True:
        found = list(
            db.session.scalars(member_select(flt, after=after).order_by(Member.id).limit(batch))
        )
        if not found:
            return
        if flt.tfa == "off":
            # Members without 2FA have no methods or recovery codes: nothing to look up.
            yield from (MemberRow(m) for m in found)
        else:
            yield from describe(found)
        after = found[-1].id
        db.session.expunge_all()  # let the batch go


@dataclass
class AuditFilter:
    member_id: int | None = None  # events where the member acted or was acted on
    event: str = ""
    start: datetime | None = None
    end: datetime | None = None


# What can be wrong with a typed audit filter (each caller words it in its own way).
UNKNOWN_MEMBER, BAD_DATE, DATES_REVERSED = "unknown_member", "bad_date", "dates_reversed"


def audit_filter_from(args, zone: tzinfo) -> tuple[AuditFilter, dict[str, str]]:
    """The audit log's filter from the query string (``member``: a login ID, ``event``,
    ``from`` and ``to``: days in ``zone``, ``to`` included), and the problem of each
    field typed wrongly. A wrong field matches nothing rather than everything."""
    problems: dict[str, str] = {}
    flt = AuditFilter()
    login_id = (args.get("member") or "").strip()
    if login_id:
        found = members.find(login_id) if members.LOGIN_ID_RE.fullmatch(login_id) else None
        if found is None:
            problems["member"] = UNKNOWN_MEMBER
            flt.member_id = -1
        else:
            flt.member_id = found.id
    event = args.get("event") or ""
    flt.event = event if event in audit.EVENTS else ""
    for name, attr, shift in (("from", "start", 0), ("to", "end", 1)):
        raw = (args.get(name) or "").strip()
        if not raw:
            continue
        try:
            day = datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=zone)
        except ValueError:
            day = None
        if day is None or not 1900 <= day.year <= 9998:
            problems[name] = BAD_DATE
            continue
        setattr(flt, attr, day + timedelta(days=shift))  # "to" includes that whole day
    if flt.start is not None and flt.end is not None and flt.start >= flt.end:
        problems["from"] = DATES_REVERSED
        flt.end = flt.start  # an empty range: match nothing rather than guess
    return flt, problems


def audit_select(flt: AuditFilter) -> Select:
    stmt = select(AuditEvent)
    if flt.member_id is not None:
        stmt = stmt.where(
            or_(AuditEvent.subject_id == flt.member_id, AuditEvent.actor_id == flt.member_id)
        )
    if flt.event:
        stmt = stmt.where(AuditEvent.event == flt.event)
    if flt.start is not None:
        stmt = stmt.where(AuditEvent.created_at >= flt.start)
    if flt.end is not None:
        stmt = stmt.where(AuditEvent.created_at < flt.end)
    return stmt


def audit_page(
    flt: AuditFilter, before: int | None, size: int
) -> tuple[list[AuditEvent], int | None]:
    stmt = audit_select(flt)
    if before is not None:
        stmt = stmt.where(AuditEvent.id < before)
    found = list(db.session.scalars(stmt.order_by(AuditEvent.id.desc()).limit(size + 1)))
    more = len(found) > size
    found = found[:size]
    return found, (found[-1].id if found and more else None)


def iter_audit(flt: AuditFilter, batch: int = 1000) -> Iterator[AuditEvent]:
    before = None
    while True:
        found, _ = audit_page(flt, before, batch)
        if not found:
            return
        yield from found
        before = found[-1].id
        db.session.expunge_all()
