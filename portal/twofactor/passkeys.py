"""Passkeys and security keys (WebAuthn): registration and assertion ceremonies.

Options and verification come from py_webauthn; nothing here parses CBOR or COSE. Each
ceremony's challenge is random, kept in the database bound to the browser session (a
keyed hash of its id) and a purpose, used once and valid for five minutes: a response
recorded elsewhere, or replayed, has no challenge to match.

Purposes: ``register`` (settings), ``second`` (the second step after the password),
``reauth`` (a fresh second step before a 2FA change) and ``passwordless`` (a passkey
alone signs in: user verification required, the member found from the credential).
"""

from __future__ import annotations

import enum
import hmac
import json
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask_babel import gettext as _
from sqlalchemy import delete, func, update
from sqlalchemy.exc import IntegrityError
from webauthn import (
    base64url_to_bytes,
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    decode_credential_public_key,
    decoded_public_key_to_cryptography,
    parse_authentication_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from ..extensions import db
from ..models import Member, Passkey, WebAuthnChallenge
from .crypto import code_hasher

MAX_KEYS = 10
CREDENTIAL_ID_MAX = 1023  # bytes (WebAuthn L3 7.1: longer IDs are refused)
NAME_MAX = 64
CHALLENGE_SECONDS = 5 * 60
# A browser's response is a few kilobytes; anything far larger is not one.
RESPONSE_MAX = 64 * 1024
PURPOSES = ("register", "second", "reauth", "passwordless")
TIMEOUT_MS = CHALLENGE_SECONDS * 1000


@dataclass(frozen=True)
class RelyingParty:
    """Who the passkeys are for: the RP ID (a domain, never an IP address), the origin
    the browser must report, and the name shown in its prompt."""

    id: str
    origin: str
    name: str


class Failure(enum.Enum):
    """Why a ceremony's response was refused."""

    GONE = "gone"  # no live challenge for this session: expired, used, or never asked
    INVALID = "invalid"  # the response does not verify (origin, RP ID, signature, flags)
    UNKNOWN = "unknown"  # no such passkey (or, at the second step, another member's)
    CLONED = "cloned"  # the sign count went backwards: a copy of the authenticator
    DUPLICATE = "duplicate"  # registering a passkey that is already registered
    TOO_MANY = "too_many"  # registering an eleventh passkey


# --- the member's passkeys ----------------------------------------------------------------


def listed(member: Member) -> list[Passkey]:
    return list(
        db.session.scalars(
            db.select(Passkey).where(Passkey.member_id == member.id).order_by(Passkey.id)
        )
    )


def count(member: Member) -> int:
    return db.session.scalar(
        db.select(func.count()).select_from(Passkey).where(Passkey.member_id == member.id)
    )


def first_added(member: Member) -> datetime | None:
    """When the member's oldest passkey was added (the method's "since"), or None."""
    return db.session.scalar(
        db.select(func.min(Passkey.created_at)).where(Passkey.member_id == member.id)
    )


def owned(member: Member, key_id: int) -> Passkey | None:
    """The member's passkey with this id; another member's is None, as if missing."""
    if not 0 < key_id < 2**63:
        return None  # no such row, and larger than a database integer can hold
    return db.session.scalar(
        db.select(Passkey).where(Passkey.id == key_id, Passkey.member_id == member.id)
    )


def clean_name(raw: str | None) -> str:
    return unicodedata.normalize("NFC", (raw or "").strip())


def name_error(member: Member, raw: str | None, *, key_id: int | None = None) -> str | None:
    """Why this name cannot be used (a message in the reader's language), or None. Names
    tell the member's keys apart in the list, so two of one member's keys never share one."""
    name = clean_name(raw)
    if not name:
        return _("パスキーの名前を入力してください。")
    if len(name) > NAME_MAX:
        return _("名前は%(max)d文字以内で入力してください。", max=NAME_MAX)
    if not name.isprintable():
        return _("名前に改行や制御文字は使えません。")
    same = db.select(Passkey.id).where(Passkey.member_id == member.id, Passkey.name == name)
    if key_id is not None:
        same = same.where(Passkey.id != key_id)
    if db.session.scalar(same) is not None:
        return _("同じ名前のパスキーが既にあります。別の名前を付けてください。")
    return None


def rename(member: Member, key_id: int, raw: str | None) -> Passkey | None:
    """Rename one of the member's keys (the caller checked :func:`name_error`)."""
    key = owned(member, key_id)
    if key is None:
        return None
    key.name = clean_name(raw)
    db.session.commit()
    return key


def remove(member: Member, key_id: int | None = None) -> list[str]:
    """Remove one of the member's keys, or all of them; returns the names removed."""
    query = db.select(Passkey).where(Passkey.member_id == member.id)
    if key_id is not None:
        if owned(member, key_id) is None:
            return []
        query = query.where(Passkey.id == key_id)
    keys = list(db.session.scalars(query))
    names = [key.name for key in keys]
    if keys:
        db.session.execute(delete(Passkey).where(Passkey.id.in_([key.id for key in keys])))
    db.session.execute(delete(WebAuthnChallenge).where(WebAuthnChallenge.member_id == member.id))
    db.session.commit()
    return names


# --- challenges ---------------------------------------------------------------------------


def _session_hash(session_key: str) -> str:
    return code_hasher().hash(f"webauthn:{session_key}")


def _store_challenge(
    session_key: str, purpose: str, member: Member | None, now: datetime, name: str = ""
) -> bytes:
    """A new challenge for this session and purpose; an older one of the same pair is
    replaced (only the latest prompt can be answered). Expired rows of anyone go too."""
    if not session_key or purpose not in PURPOSES:
        raise ValueError("a challenge needs a session and a known purpose")
    challenge = secrets.token_bytes(32)
    mine = _session_hash(session_key)
    for _attempt in range(2):
        db.session.execute(
            delete(WebAuthnChallenge).where(
                (WebAuthnChallenge.expires_at <= now)
                | (
                    (WebAuthnChallenge.session_hash == mine)
                    & (WebAuthnChallenge.purpose == purpose)
                )
            )
        )
        db.session.add(
            WebAuthnChallenge(
                session_hash=mine,
                purpose=purpose,
                member_id=member.id if member is not None else None,
                challenge=challenge,
                name=name,
                expires_at=now + timedelta(seconds=CHALLENGE_SECONDS),
            )
        )
        try:
            db.session.commit()
            return challenge
        except IntegrityError:
            db.session.rollback()  # a parallel request of the same session stored one
    raise RuntimeError("could not store a WebAuthn challenge")


def _take_challenge(
    session_key: str, purpose: str, member: Member | None, now: datetime
) -> _Challenge | None:
    """The session's live challenge for ``purpose``, deleted as it is read: of two
    requests racing with one response, only one gets it."""
    if not session_key:
        return None
    row = db.session.scalar(
        db.select(WebAuthnChallenge).where(
            WebAuthnChallenge.session_hash == _session_hash(session_key),
            WebAuthnChallenge.purpose == purpose,
        )
    )
    if row is None:
        return None
    taken = _Challenge(row.challenge, row.name, row.member_id, row.expires_at)
    deleted = db.session.execute(
        delete(WebAuthnChallenge)
        .where(WebAuthnChallenge.id == row.id)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    if deleted != 1 or taken.expires_at <= now:
        return None
    if taken.member_id != (member.id if member is not None else None):
        return None
    return taken


@dataclass(frozen=True)
class _Challenge:
    """A challenge taken from the database (the row itself is gone)."""

    challenge: bytes
    name: str
    member_id: int | None
    expires_at: datetime


def _parsed(response: str | None) -> dict | None:
    """The browser's JSON response as a dict, or None when it is not one at all."""
    if not response or len(response) > RESPONSE_MAX:
        return None
    try:
        data = json.loads(response)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _transports(raw: str) -> list[AuthenticatorTransport]:
    known = {t.value: t for t in AuthenticatorTransport}
    return [known[t] for t in raw.split(",") if t in known]


def _descriptors(keys: list[Passkey]) -> list[PublicKeyCredentialDescriptor]:
    return [
        PublicKeyCredentialDescriptor(id=key.credential_id, transports=_transports(key.transports))
        for key in keys
    ]


# --- registration -------------------------------------------------------------------------


def _user_handle(member: Member) -> bytes:
    """The member's WebAuthn user handle, made on first use (random, 32 bytes)."""
    if member.webauthn_user_id is None:
        db.session.execute(
            update(Member)
            .where(Member.id == member.id, Member.webauthn_user_id.is_(None))
            .values(webauthn_user_id=secrets.token_bytes(32))
        )
        db.session.commit()
        db.session.refresh(member)
    return member.webauthn_user_id


def begin_registration(
    member: Member, name: str, rp: RelyingParty, session_key: str, now: datetime
) -> str:
    """The options for navigator.credentials.create(), as JSON. The name is kept with
    the challenge (checked before: the browser makes the key only after this).

    Resident keys are preferred (a passkey then also signs in alone); security keys
    without room for one still work as a second step. Keys already registered are
    excluded, so the browser says so instead of making a second one."""
    challenge = _store_challenge(session_key, "register", member, now, clean_name(name))
    options = generate_registration_options(
        rp_id=rp.id,
        rp_name=rp.name,
        user_id=_user_handle(member),
        user_name=member.login_id,
        user_display_name=member.name or member.login_id,
        challenge=challenge,
        timeout=TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=_descriptors(listed(member)),
    )
    return options_to_json(options)


def pending_name(member: Member, session_key: str, now: datetime) -> str | None:
    """The name of the registration this session began (to show it again), or None."""
    row = db.session.scalar(
        db.select(WebAuthnChallenge).where(
            WebAuthnChallenge.session_hash == _session_hash(session_key),
            WebAuthnChallenge.purpose == "register",
            WebAuthnChallenge.member_id == member.id,
            WebAuthnChallenge.expires_at > now,
        )
    )
    return row.name if row is not None else None


def finish_registration(
    member: Member, response: str | None, rp: RelyingParty, session_key: str, now: datetime
) -> Passkey | Failure:
    """Verify the browser's answer to :func:`begin_registration` and keep the passkey."""
    row = _take_challenge(session_key, "register", member, now)
    if row is None:
        return Failure.GONE
    data = _parsed(response)
    if data is None:
        return Failure.INVALID
    try:
        verified = verify_registration_response(
            credential=data,
            expected_challenge=row.challenge,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            require_user_verification=False,
        )
        # A key that cannot verify anything (py_webauthn takes a bare 0x04 as a U2F point).
        decoded_public_key_to_cryptography(
            decode_credential_public_key(verified.credential_public_key)
        )
    except (WebAuthnException, ValueError, TypeError, LookupError):
        return Failure.INVALID
    if len(verified.credential_id) > CREDENTIAL_ID_MAX or _framed(data):
        return Failure.INVALID
    if count(member) >= MAX_KEYS:
        return Failure.TOO_MANY
    name = row.name
    if name_error(member, name) is not None:
        name = _free_name(member, name)
    transports = data["response"].get("transports")
    if not isinstance(transports, list):
        transports = []
    key = Passkey(
        member_id=member.id,
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        # Known names once each (at most seven: well inside the column).
        transports=",".join(
            dict.fromkeys(t for t in transports if isinstance(t, str) and t in _known_transports())
        ),
        aaguid=str(verified.aaguid)[:36],
        backup_eligible=verified.credential_device_type.value == "multi_device",
        backed_up=verified.credential_backed_up,
        name=name,
        created_at=now,
    )
    db.session.add(key)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # this credential is registered already (to anyone)
        return Failure.DUPLICATE
    # Two registrations racing past the count above: the later key gives way.
    newer = db.select(func.count()).where(Passkey.member_id == member.id, Passkey.id <= key.id)
    if db.session.scalar(newer) > MAX_KEYS:
        db.session.execute(delete(Passkey).where(Passkey.id == key.id))
        db.session.commit()
        return Failure.TOO_MANY
    return key


def _known_transports() -> set[str]:
    return {t.value for t in AuthenticatorTransport}


def _free_name(member: Member, name: str) -> str:
    """A parallel registration took the name meanwhile: number this one."""
    for number in range(2, MAX_KEYS + 2):
        candidate = f"{name[: NAME_MAX - 4]} ({number})"
        if name_error(member, candidate) is None:
            return candidate
    return f"passkey-{secrets.token_hex(4)}"


# --- assertion ----------------------------------------------------------------------------


def begin_authentication(
    member: Member | None, rp: RelyingParty, session_key: str, purpose: str, now: datetime
) -> str:
    """The options for navigator.credentials.get(), as JSON. With a member (second step,
    re-authentication) only that member's keys are allowed; without one (passwordless)
    the browser offers its discoverable passkeys, and user verification is required."""
    if (member is None) != (purpose == "passwordless"):
        raise ValueError("only a passwordless sign-in has no member")
    challenge = _store_challenge(session_key, purpose, member, now)
    options = generate_authentication_options(
        rp_id=rp.id,
        challenge=challenge,
        timeout=TIMEOUT_MS,
        allow_credentials=_descriptors(listed(member)) if member is not None else [],
        user_verification=UserVerificationRequirement.REQUIRED
        if member is None
        else UserVerificationRequirement.PREFERRED,
    )
    return options_to_json(options)


@dataclass(frozen=True)
class Assertion:
    """The outcome of :func:`check_assertion`: the key used, or why it was refused."""

    key: Passkey | None = None
    failure: Failure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


def check_assertion(
    member: Member | None,
    response: str | None,
    rp: RelyingParty,
    session_key: str,
    purpose: str,
    now: datetime,
) -> Assertion:
    """Verify the browser's answer to :func:`begin_authentication` of this session.

    The challenge is spent first, whatever follows. The passkey must be the member's
    (second step, re-authentication); passwordless, its user handle must be its owner's
    and the authenticator must have verified the user. A sign count that does not grow
    (when either side counts) means a cloned key: refused, and reported as CLONED."""
    row = _take_challenge(session_key, purpose, member, now)
    if row is None:
        return Assertion(failure=Failure.GONE)
    data = _parsed(response)
    if data is None:
        return Assertion(failure=Failure.INVALID)
    try:
        credential = parse_authentication_credential_json(data)
    except (WebAuthnException, ValueError, TypeError, LookupError):
        return Assertion(failure=Failure.INVALID)
    query = db.select(Passkey).where(Passkey.credential_id == credential.raw_id)
    if member is not None:
        query = query.where(Passkey.member_id == member.id)
    key = db.session.scalar(query)
    if key is None:
        return Assertion(failure=Failure.UNKNOWN)
    # The user handle, when the authenticator sends one, must be the key owner's (WebAuthn
    # L3 7.2 step 6); passwordless, it must be there, since it says who signs in.
    owner = member if member is not None else db.session.get(Member, key.member_id)
    handle = credential.response.user_handle
    if (handle is None and member is None) or (
        handle is not None
        and (
            owner is None
            or owner.webauthn_user_id is None
            or not hmac.compare_digest(handle, owner.webauthn_user_id)
        )
    ):
        return Assertion(failure=Failure.UNKNOWN)
    try:
        # The counter is compared below, after the signature, so that only a response
        # signed by the key itself can report a clone.
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=row.challenge,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            credential_public_key=key.public_key,
            credential_current_sign_count=0,
            require_user_verification=purpose == "passwordless",
        )
    except (WebAuthnException, ValueError, TypeError, LookupError):
        return Assertion(key=key, failure=Failure.INVALID)
    synced = verified.credential_device_type.value == "multi_device"
    if _framed(data) or (key.backup_eligible and not synced):
        # Run inside another site's frame, or a synced passkey answering as a device-bound
        # one (L3 7.2: backup eligibility never changes that way): not this key's answer.
        return Assertion(key=key, failure=Failure.INVALID)
    new_count = verified.new_sign_count
    if (new_count or key.sign_count) and new_count <= key.sign_count:
        return Assertion(key=key, failure=Failure.CLONED)
    # Conditional on the count read, so two racing uses of one response cannot both pass.
    moved = db.session.execute(
        update(Passkey)
        .where(Passkey.id == key.id, Passkey.sign_count == key.sign_count)
        .values(sign_count=new_count, last_used_at=now, backed_up=verified.credential_backed_up)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    if moved != 1:
        # Another answer of this key was accepted meanwhile (or the key was removed): no
        # proof of a clone, so refused quietly rather than reported as one.
        return Assertion(key=key, failure=Failure.GONE)
    db.session.refresh(key)
    return Assertion(key=key)


def _framed(data: dict) -> bool:
    """Whether the ceremony ran inside a cross-origin frame (clientDataJSON's crossOrigin
    or topOrigin, which py_webauthn does not look at). The portal forbids framing; a
    response that says it was framed did not come from the portal's own page."""
    try:
        client = json.loads(base64url_to_bytes(data["response"]["clientDataJSON"]))
    except (ValueError, TypeError, LookupError, RecursionError):
        return True
    if not isinstance(client, dict):
        return True
    return client.get("crossOrigin") is True or "topOrigin" in client
