"""SQLAlchemy models. Every change here lands with its migration in ``migrations/``."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    func,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, column_property, mapped_column, relationship
from sqlalchemy.orm.util import identity_key

from .extensions import db


def utcnow() -> datetime:
    return datetime.now(UTC)


# Every id is a 64-bit integer, on every backend, so the same ids (up to 2**63 - 1, which
# the views check before a lookup) are valid everywhere: SQLite's INTEGER PRIMARY KEY (its
# rowid) already is one; PostgreSQL's INTEGER is 32-bit, so there it is BIGINT (BIGSERIAL;
# migration 3c1e5b7d9a20). The foreign keys to an id take its type.
ID = BigInteger().with_variant(Integer, "sqlite")


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend.

    SQLite stores no zone, so values come back naive; comparing them with aware ``now``
    values would raise. This type normalises both directions.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Member(db.Model):
    __tablename__ = "member"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    # As typed at creation, for display; ``login_key`` is the lowercased identity.
    login_id: Mapped[str] = mapped_column(String(64))
    login_key: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(254), default="")
    phone: Mapped[str] = mapped_column(String(32), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    is_operator: Mapped[bool] = mapped_column(Boolean, default=False)
    # Bumped at sign-out (and later password change/reset): every cookie naming an
    # older generation stops working, so a copied cookie dies with the session.
    session_generation: Mapped[int] = mapped_column(Integer, default=0)
    # Wrong second-step attempts and the locks they cause (see twofactor/lockout.py);
    # kept here, not in the session, so a fresh password sign-in does not reset them.
    # Codes (app, email, SMS) and recovery codes count separately...
    tfa_failures: Mapped[int] = mapped_column(Integer, default=0)
    tfa_locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    tfa_locks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    recovery_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    recovery_locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    recovery_locks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # ...and both feed one streak of consecutive failures: at its limit the second step
    # is locked until an operator clears it.
    tfa_streak: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    tfa_blocked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_second_step_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The method /login/verify starts with: the first one set up, changeable in settings.
    preferred_method: Mapped[str | None] = mapped_column(String(8), nullable=True)
    # Set when an operator resets the second step; the next sign-in says so on screen
    # (not only by mail) and is cleared once shown.
    tfa_reset_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When the password was last set through a mailed link. Until a second step is
    # passed after it, a code to that same mailbox does not count as the second step.
    password_reset_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The WebAuthn user handle: random, made at the first passkey (never the login ID or
    # the row id, which a passkey would otherwise reveal to whoever holds the device).
    webauthn_user_id: Mapped[bytes | None] = mapped_column(
        LargeBinary(64), nullable=True, unique=True
    )
    # The member's language ("ja", "en") and IANA time zone; None: the browser's
    # language and PORTAL_TIMEZONE. Mail and SMS use the stored language (else Japanese).
    locale: Mapped[str | None] = mapped_column(String(8), nullable=True)
    timezone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    totp: Mapped[TotpCredential | None] = relationship(
        back_populates="member", uselist=False, cascade="all, delete-orphan"
    )

    # Flask-Login: the id carries the generation, so older cookies no longer load.
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return f"{self.id}:{self.session_generation}"

    def __repr__(self) -> str:
        return f"<Member {self.login_key}>"


class TotpCredential(db.Model):
    """A confirmed authenticator app. One per member; replacing swaps the secret in place."""

    __tablename__ = "totp_credential"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    member_id: Mapped[int] = mapped_column(
        ForeignKey("member.id", ondelete="CASCADE"), unique=True, index=True
    )
    secret_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    # Highest accepted 30-second step: a code is accepted once (replay protection).
    last_step: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    member: Mapped[Member] = relationship(back_populates="totp")


class TotpEnrolment(db.Model):
    """A secret shown to the member but not yet proven by a code.

    Kept in the database, never in the cookie session (Flask only signs it), and
    dropped once confirmed, expired or replaced by a set-up opened in another session.
    """

    __tablename__ = "totp_enrolment"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    member_id: Mapped[int] = mapped_column(
        ForeignKey("member.id", ondelete="CASCADE"), unique=True, index=True
    )
    secret_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    # Keyed hash of a nonce kept in the session that was shown the secret: only that
    # session can confirm it (another session opening the set-up replaces the row).
    session_hash: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RecoveryCode(db.Model):
    __tablename__ = "recovery_code"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"), index=True)
    # HMAC-SHA256 of the canonical code, hex: a database leak reveals no usable code.
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ContactMethod(db.Model):
    """Email or SMS as a second step. The destination is not stored here: it is always
    the member's *current* email or phone field (the guide's Q2)."""

    __tablename__ = "contact_method"
    __table_args__ = (UniqueConstraint("member_id", "kind"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # "email" | "sms"
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class OneTimeCode(db.Model):
    """A code sent by email or SMS. Only the latest per member and purpose exists."""

    __tablename__ = "one_time_code"
    __table_args__ = (Index("ix_one_time_code_member_purpose", "member_id", "purpose"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(32))  # e.g. "signin:email", "change:phone"
    channel: Mapped[str] = mapped_column(String(8))  # "email" | "sms"
    # Where it went; for an address change, the new address that takes over once proven.
    destination: Mapped[str] = mapped_column(String(254))
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    tries: Mapped[int] = mapped_column(Integer, default=0)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class CodeSend(db.Model):
    """One row per code handed to the mail server or SMS gateway, failed sends
    included (a gateway that timed out may still deliver, and bill): the daily caps
    count these."""

    __tablename__ = "code_send"
    __table_args__ = (Index("ix_code_send_channel_sent_at", "channel", "sent_at"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    member_id: Mapped[int | None] = mapped_column(
        ForeignKey("member.id", ondelete="SET NULL"), nullable=True, index=True
    )
    channel: Mapped[str] = mapped_column(String(8), default="sms")  # "email" | "sms"
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEvent(db.Model):
    """Append-only record of security events: who, what, to whom, when, from where.

    Never a password, code or secret. ``actor``/``subject`` keep a label beside the id,
    so the record still reads after a member is deleted.
    """

    __tablename__ = "audit_event"
    __table_args__ = (
        Index("ix_audit_event_subject_id", "subject_id", "id"),
        Index("ix_audit_event_event", "event", "id"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    event: Mapped[str] = mapped_column(String(40))
    actor_id: Mapped[int | None] = mapped_column(
        ForeignKey("member.id", ondelete="SET NULL"), nullable=True
    )
    actor_label: Mapped[str] = mapped_column(String(64), default="")
    subject_id: Mapped[int | None] = mapped_column(
        ForeignKey("member.id", ondelete="SET NULL"), nullable=True
    )
    subject_label: Mapped[str] = mapped_column(String(64), default="")
    method: Mapped[str | None] = mapped_column(String(8), nullable=True)
    ip: Mapped[str] = mapped_column(String(45), default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    detail: Mapped[str] = mapped_column(Text, default="{}")  # small JSON object


class Policy(db.Model):
    """The operator's two-step verification policy (二段階認証方式の設定). One row
    (id 1), read at most once per request, so a change reaches every worker and host on
    their next request. See ``portal/twofactor/policy.py`` for the rules."""

    __tablename__ = "policy"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    enforcement: Mapped[str] = mapped_column(String(10), default="recommend")
    # When the level last became "required": grace periods count from here.
    enforcement_since: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    operator_enforcement: Mapped[str] = mapped_column(String(10), default="required")
    operator_enforcement_since: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    grace_days: Mapped[int] = mapped_column(Integer, default=7)
    allow_remember_device: Mapped[bool] = mapped_column(Boolean, default=True)
    remember_days: Mapped[int] = mapped_column(Integer, default=30)
    trusted_networks: Mapped[str] = mapped_column(Text, default="")  # "CIDR MODE" lines
    shared_terminal_skip: Mapped[bool] = mapped_column(Boolean, default=False)
    methods: Mapped[str] = mapped_column(String(32), default="app,email,sms,passkey")
    # Whether a discoverable passkey with user verification may sign in alone (no password).
    passwordless: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    issuer: Mapped[str] = mapped_column(String(100), default="")  # "": PORTAL_ISSUER
    landing_path: Mapped[str] = mapped_column(String(200), default="/")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(64), default="")
    # Moved on by every change to a member page (the hooks below): a worker keeps the
    # listed pages of the menu until this moves, and reads it with the member anyway.
    pages_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class RememberedDevice(db.Model):
    """A browser where the member ticked この端末では次回からコード入力をスキップする.
    The cookie holds a random token; only its hash is stored."""

    __tablename__ = "remembered_device"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(80), default="")  # "Chrome / Windows"
    ip: Mapped[str] = mapped_column(String(45), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SharedTerminal(db.Model):
    """A browser an operator marked as a shared office terminal (the guide: skip on shared
    terminals, require on personal devices). Long-lived cookie; only its hash stored."""

    __tablename__ = "shared_terminal"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(80))
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class MemberPage(db.Model):
    """An operator's HTML page inside the member area, shown only after sign-in."""

    __tablename__ = "member_page"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")  # sanitised on save
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str] = mapped_column(String(64), default="")
    # Listed on マイページ and in the menu when ticked, in ``menu_order`` (then title).
    listed: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    menu_order: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class PasswordReset(db.Model):
    """A パスワードをお忘れの方 link: a random token mailed to the member; only its hash is
    stored. Single use, short-lived, and voided by a newer link."""

    __tablename__ = "password_reset"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Empty when the member asked; the operator's login ID when sent from the admin area.
    requested_by: Mapped[str] = mapped_column(String(64), default="")


class Passkey(db.Model):
    """A passkey or security key (WebAuthn credential) of a member: a phishing-resistant
    second step, and with user verification a sign-in of its own."""

    __tablename__ = "passkey"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"), index=True)
    credential_id: Mapped[bytes] = mapped_column(LargeBinary(1023), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE, as the library gives it
    # The authenticator's counter: one that goes backwards means a cloned key.
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    transports: Mapped[str] = mapped_column(String(200), default="")  # "usb,nfc,internal"
    aaguid: Mapped[str] = mapped_column(String(36), default="")
    backup_eligible: Mapped[bool] = mapped_column(Boolean, default=False)  # a synced passkey
    backed_up: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class WebAuthnChallenge(db.Model):
    """The challenge of one WebAuthn ceremony: bound to the browser session (a keyed hash
    of its id) and a purpose, single use, short-lived. Server-side, so a copied or replayed
    response cannot bring its own."""

    __tablename__ = "webauthn_challenge"
    __table_args__ = (UniqueConstraint("session_hash", "purpose"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    session_hash: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(16))  # register | second | reauth | passwordless
    # None for a passwordless sign-in: who it is comes from the passkey.
    member_id: Mapped[int | None] = mapped_column(
        ForeignKey("member.id", ondelete="CASCADE"), nullable=True
    )
    challenge: Mapped[bytes] = mapped_column(LargeBinary(64))
    name: Mapped[str] = mapped_column(String(64), default="")  # register: the chosen name
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class ApiToken(db.Model):
    """A token of the admin API (``/api/v1/``, issue 14): made by an operator on the
    admin page and shown once; only its keyed hash is stored, so a copy of the database
    (or a backup) holds no working token. ``read`` tokens read; ``write`` tokens may
    also reset a member's second step and send password links."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(60))  # shown in the list and the audit log
    scope: Mapped[str] = mapped_column(String(8))  # "read" | "write"
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(64), default="")  # the operator's login ID
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Written at most once a minute (api_tokens.touch), not on every call.
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class MemberForm(db.Model):
    """An operator's form inside the member area (申込フォーム, 予約; issue 15): its three
    pages (入力, 確認, サンキュー) and its fields, as :mod:`portal.member_forms` validates
    them. ``version`` moves on with every save, so a confirm step started on an older
    version of the form is sent back to its input page instead of storing stale fields."""

    __tablename__ = "member_form"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    is_open: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    require_2fa: Mapped[str] = mapped_column(String(8), default="off", server_default="off")
    step_up_minutes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    input_body: Mapped[str] = mapped_column(Text, default="")  # sanitised on save
    confirm_body: Mapped[str] = mapped_column(Text, default="")
    thanks_body: Mapped[str] = mapped_column(Text, default="")
    fields: Mapped[str] = mapped_column(Text, default="[]")  # JSON: member_forms.Field
    listed: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    menu_order: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(64), default="")


class FormSubmission(db.Model):
    """One member's answers to a form. A row is made at the confirm step (a draft:
    ``submitted_at`` empty) and sent by one guarded UPDATE, so a second POST of the
    same confirm page finds it sent and stores nothing. The login ID and name are kept
    as they were, so the list still says who sent it after the member is deleted."""

    __tablename__ = "form_submission"
    __table_args__ = (Index("ix_form_submission_form_sent", "form_id", "submitted_at"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    form_id: Mapped[int] = mapped_column(ForeignKey("member_form.id", ondelete="CASCADE"))
    member_id: Mapped[int | None] = mapped_column(
        ForeignKey("member.id", ondelete="SET NULL"), nullable=True, index=True
    )
    login_id: Mapped[str] = mapped_column(String(64), default="")
    member_name: Mapped[str] = mapped_column(String(200), default="")
    answers: Mapped[str] = mapped_column(Text, default="{}")  # JSON: field name -> text
    form_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The session's last second step when it was sent, and whether the form asked for
    # one within ``step_up_minutes`` and got it.
    second_step_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    stepped_up: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


# --- the member pages' version ----------------------------------------------------------


def _bump_pages_version(session) -> None:
    session.execute(
        update(Policy)
        .where(Policy.id == 1)
        .values(pages_version=Policy.pages_version + 1)
        .execution_options(synchronize_session=False)
    )
    held = session.identity_map.get(identity_key(Policy, 1))
    if held is not None:
        session.expire(held, ["pages_version"])


@event.listens_for(Session, "before_flush")
def _pages_changed_in_flush(session, flush_context, instances) -> None:
    """Every member page written through the session moves the version on in the same
    transaction, so no worker's menu outlives the change."""
    changed = (*session.new, *session.dirty, *session.deleted)
    if any(isinstance(row, MemberPage | MemberForm) for row in changed):
        _bump_pages_version(session)


@event.listens_for(Session, "do_orm_execute")
def _pages_changed_by_statement(state) -> None:
    table = getattr(state.statement, "table", None)
    if not state.is_select and getattr(table, "name", None) in (
        MemberPage.__tablename__,
        MemberForm.__tablename__,
    ):
        _bump_pages_version(state.session)


# --- a member's methods, read with the member -------------------------------------------
# When each second-step method was set up (None: not set up), as deferred columns of one
# group: not read with every member (the admin list loads thousands), but a loader that
# needs them (sign-in, the signed-in member) asks for them with ``undefer_group(METHODS)``
# and gets them in the member's own SELECT; otherwise the first one read loads all four
# in one query. twofactor.enabled_methods() reads them; twofactor expires them when a
# method row is written.
METHODS_GROUP = "methods"


def _since(model, column, *where):
    return column_property(
        select(column).where(*where).correlate_except(model).scalar_subquery(),
        deferred=True,
        group=METHODS_GROUP,
    )


Member.app_since = _since(
    TotpCredential, TotpCredential.created_at, TotpCredential.member_id == Member.id
)
Member.email_since = _since(
    ContactMethod,
    ContactMethod.created_at,
    ContactMethod.member_id == Member.id,
    ContactMethod.kind == "email",
)
Member.sms_since = _since(
    ContactMethod,
    ContactMethod.created_at,
    ContactMethod.member_id == Member.id,
    ContactMethod.kind == "sms",
)
Member.passkey_since = _since(Passkey, func.min(Passkey.created_at), Passkey.member_id == Member.id)
# Each method and the member attribute saying since when it is set up.
METHOD_SINCE = {
    "app": "app_since",
    "email": "email_since",
    "sms": "sms_since",
    "passkey": "passkey_since",
}


__all__ = [
    "ApiToken",
    "AuditEvent",
    "MemberPage",
    "ContactMethod",
    "OneTimeCode",
    "Passkey",
    "PasswordReset",
    "Policy",
    "RememberedDevice",
    "SharedTerminal",
    "CodeSend",
    "Member",
    "RecoveryCode",
    "TotpCredential",
    "TotpEnrolment",
    "WebAuthnChallenge",
    "utcnow",
]
