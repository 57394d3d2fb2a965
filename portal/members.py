"""Members: the rules for IDs, passwords and contact fields, and password hashing."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime

import phonenumbers
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.orm import Load, joinedload

from .extensions import db
from .models import METHODS_GROUP, Member, PasswordReset, Policy, RememberedDevice

LOGIN_ID_RE = re.compile(r"[A-Za-z0-9._-]{3,64}")
# Deliberately simple: one @, a printable ASCII local part without the characters that
# split or quote addresses, a dot in the domain. Deliverability is proven by the codes
# we send, not by a regex; the domain must also survive IDNA encoding for SMTP.
EMAIL_RE = re.compile(
    r"[!#-'*+\-./0-9=?A-Z^-~]{1,64}@[^@\s.<>()\[\],;:\"\\]+(\.[^@\s.<>()\[\],;:\"\\]+)+"
)
PASSWORD_MIN = 12
PASSWORD_MAX = 128  # ASVS 2.1.2: at least 64 allowed, more than 128 refused


class MemberError(ValueError):
    """Input that breaks a member rule; the message is shown to the person as-is."""


def login_key(login_id: str) -> str:
    return login_id.strip().lower()


def check_login_id(login_id: str) -> str:
    value = login_id.strip()
    if not LOGIN_ID_RE.fullmatch(value):
        raise MemberError(_("ログインIDは3〜64文字の半角英数字と「. _ -」で入力してください。"))
    return value


def check_password_rule(password: str, user_inputs: Sequence[str] = ()) -> str:
    """12 to 128 characters, and not guessable (ASVS 2.1.7): zxcvbn's estimate, with
    its bundled lists of common passwords, words and names, must reach
    PORTAL_PASSWORD_MIN_SCORE. ``user_inputs`` (login ID, name, email) count as known
    words. No composition rules (ASVS 2.1.9): a long passphrase is the best password."""
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise MemberError(
            _(
                "パスワードは%(min)d文字以上%(max)d文字以内で入力してください。",
                min=PASSWORD_MIN,
                max=PASSWORD_MAX,
            )
        )
    reason = weakness(password, user_inputs)
    if reason is not None:
        raise MemberError(
            _("このパスワードは推測されやすいため使えません。%(reason)s", reason=reason)
        )
    return password


# zxcvbn scores the first 72 characters; a longer password is judged by its start.
STRENGTH_WINDOW = 72


def weakness(password: str, user_inputs: Sequence[str] = ()) -> str | None:
    """Why the password is too easy to guess, in the reader's language; None when strong."""
    return strength(password, user_inputs)[1]


def strength(password: str, user_inputs: Sequence[str] = ()) -> tuple[int, str | None]:
    """zxcvbn's score (0–4) and, below PORTAL_PASSWORD_MIN_SCORE, the reason in words:
    the same judgement for the live meter on the password page and the final check."""
    from zxcvbn import zxcvbn

    inputs = [part for value in user_inputs if value for part in _input_words(value)]
    result = zxcvbn(password[:STRENGTH_WINDOW], user_inputs=inputs)
    score = int(result["score"])
    if score >= current_app.config["PORTAL_PASSWORD_MIN_SCORE"]:
        return score, None
    return score, _reason(result)


def _reason(result: dict) -> str:
    patterns = {match["pattern"] for match in result["sequence"]}
    dictionaries = {match.get("dictionary_name") for match in result["sequence"]}
    if "user_inputs" in dictionaries:
        return _("ログインID・氏名・メールアドレスを含めないでください。")
    if "passwords" in dictionaries:
        return _("よく使われているパスワードや、その一部です。")
    if "repeat" in patterns:
        return _("同じ文字や文字列の繰り返しは推測されやすくなります。")
    if "sequence" in patterns:
        return _("「abc」「123」のような連続した文字は推測されやすくなります。")
    if "spatial" in patterns:
        return _("キーボードの並び（qwerty など）は推測されやすくなります。")
    if "date" in patterns or "regex" in patterns:
        return _("日付や年は推測されやすくなります。")
    return _("単語を4つ以上組み合わせるなど、長く推測されにくいパスワードにしてください。")


def _input_words(value: str) -> list[str]:
    """The whole value and its parts: "alice@example.com" also yields "alice"."""
    parts = [value, *re.split(r"[@._\-\s]+", value)]
    return [part.lower() for part in parts if len(part) >= 3]


def check_email(email: str) -> str:
    value = email.strip()
    if len(value) > 254 or not EMAIL_RE.fullmatch(value) or _has_control(value):
        raise MemberError(_("メールアドレスの形式が正しくありません。"))
    try:
        value.split("@", 1)[1].encode("idna")
    except UnicodeError:
        raise MemberError(_("メールアドレスの形式が正しくありません。")) from None
    return value


def _has_control(value: str) -> bool:
    return any(unicodedata.category(ch) in {"Cc", "Cf", "Cs"} for ch in value)


def check_name(name: str) -> str:
    """Control characters (NUL among them) are refused: PostgreSQL rejects NUL in text."""
    value = name.strip()
    if _has_control(value):
        raise MemberError(_("氏名に使用できない文字が含まれています。"))
    return value


def normalise_phone(raw: str, countries: list[str] | None = None) -> str:
    """E.164 (``+819012345678``) for a valid number in an allowed country; "" for blank.

    Numbers without a country code are read as Japanese. SMS costs money and attracts
    toll fraud, so only the countries the operator allows are accepted.
    """
    value = unicodedata.normalize("NFKC", raw or "").strip()
    if not value:
        return ""
    allowed = countries or current_app.config["PORTAL_SMS_COUNTRIES"]
    try:
        number = phonenumbers.parse(value, "JP")
    except phonenumbers.NumberParseException:
        raise MemberError(_("電話番号の形式が正しくありません。")) from None
    if not phonenumbers.is_valid_number(number):
        raise MemberError(_("電話番号の形式が正しくありません。"))
    if phonenumbers.region_code_for_number(number) not in allowed:
        raise MemberError(_("この国・地域の電話番号は登録できません。"))
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def display_phone(e164: str) -> str:
    """A stored number as people write it: 090-1234-5678 for Japan, +44 7700 900123
    elsewhere (what the member typed, not a masked form)."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    if phonenumbers.region_code_for_number(number) == "JP":
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def hasher() -> PasswordHasher:
    """argon2id with argon2-cffi's defaults; tests may ask for cheaper parameters."""
    ph = current_app.extensions.get("portal.password_hasher")
    if ph is None:
        params = current_app.config.get("PORTAL_ARGON2_PARAMS") or {}
        ph = current_app.extensions["portal.password_hasher"] = PasswordHasher(**params)
    return ph


def _dummy_hash() -> str:
    dummy = current_app.extensions.get("portal.dummy_hash")
    if dummy is None:
        dummy = current_app.extensions["portal.dummy_hash"] = hasher().hash("not a password")
    return dummy


def hash_password(password: str) -> str:
    return hasher().hash(password)


# The stored "hash" of a member who has never set a password (imported, invited): no
# password verifies against it, and nothing else is ever stored without the argon2 prefix.
NO_PASSWORD = "!"  # noqa: S105 - a marker, not a password


def has_password(member: Member) -> bool:
    """Whether the member has set a password (an imported member has not until the
    invitation or a reset link is used)."""
    return member.password_hash != NO_PASSWORD


# What the sign-in path and every signed-in page read of the member: its methods (the
# deferred group) and its authenticator app, in the member's own SELECT.
REQUEST_LOAD = (Load(Member).undefer_group(METHODS_GROUP), joinedload(Member.totp))


def load_with_policy(where: ColumnElement[bool]) -> tuple[Member | None, Policy | None]:
    """The member a request signs in or serves, with what those paths read of it (its
    methods and its app) and the site's policy, in one SELECT: the sign-in path reads
    the database a handful of times in all (bench/README.md), and every signed-in page
    needs all three. The policy is None only before a new site's first one is made."""
    row = db.session.execute(
        select(Member, Policy).outerjoin(Policy, Policy.id == 1).where(where).options(*REQUEST_LOAD)
    ).first()
    return (row[0], row[1]) if row is not None else (None, None)


def find(login_id: str) -> Member | None:
    return db.session.scalar(db.select(Member).where(Member.login_key == login_key(login_id)))


def authenticate(login_id: str, password: str) -> Member | None:
    """The member if the password matches, else None.

    An unknown ID is checked against a dummy hash, so both failures cost one argon2
    verification and take the same time (no account enumeration by timing).
    """
    return authenticate_member(named(login_id), password)


def named_key(login_id: str) -> str | None:
    """The login key a typed login ID names; None for a malformed one (never looked up)."""
    return login_key(login_id) if LOGIN_ID_RE.fullmatch(login_id.strip()) else None


def named(login_id: str) -> Member | None:
    """The member a typed login ID names; None for an unknown or malformed one."""
    return find(login_id) if named_key(login_id) is not None else None


def authenticate_member(member: Member | None, password: str) -> Member | None:
    """:func:`authenticate` for the member the typed ID named (:func:`named`), looked up
    once by a caller that needs it anyway; None (no such member) costs one argon2
    verification all the same."""
    dummy = _dummy_hash()  # made on first use in this process, whichever path is taken
    usable = member is not None and has_password(member)
    # A member without a password costs the same argon2 check as anyone: the time of the
    # answer does not tell that the ID exists but was never given a password.
    stored = member.password_hash if usable else dummy
    try:
        hasher().verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if not usable:
        return None
    if hasher().check_needs_rehash(stored):
        member.password_hash = hash_password(password)
        db.session.commit()
    return member


def create(
    login_id: str,
    *,
    email: str,
    password: str,
    name: str = "",
    phone: str = "",
    is_operator: bool = False,
    now: datetime | None = None,
) -> Member:
    login_id = check_login_id(login_id)
    email = check_email(email)
    phone = normalise_phone(phone)
    check_password_rule(password, (login_id, name, email))
    if find(login_id) is not None:
        raise MemberError(_("ログインID「%(login_id)s」は既に使われています。", login_id=login_id))
    member = Member(
        login_id=login_id,
        login_key=login_key(login_id),
        name=check_name(name),
        email=email,
        phone=phone,
        password_hash=hash_password(password),
        is_operator=is_operator,
    )
    if now is not None:
        member.created_at = member.updated_at = now
    db.session.add(member)
    db.session.commit()
    return member


def set_password(member: Member, password: str) -> None:
    """New password; every existing session of the member ends with it, every
    remembered device must give a code again (it may have been a thief's), and every
    pending パスワードをお忘れの方 link dies (it was asked for under the old one)."""
    check_password_rule(password, (member.login_id, member.name, member.email))
    member.password_hash = hash_password(password)
    member.session_generation += 1
    db.session.execute(delete(RememberedDevice).where(RememberedDevice.member_id == member.id))
    db.session.execute(
        delete(PasswordReset).where(
            PasswordReset.member_id == member.id, PasswordReset.used_at.is_(None)
        )
    )
    db.session.commit()


def new_password_errors(member: Member, new: str, confirm: str) -> dict[str, str]:
    """Every problem with a new password and its confirmation, by field, so a form can
    show them all at once (empty when the password may be set)."""
    new_field, confirm_field = "new_password", "new_password_confirm"
    errors: dict[str, str] = {}
    if not new:
        errors[new_field] = _("新しいパスワードを入力してください。")
    else:
        try:
            check_password_rule(new, (member.login_id, member.name, member.email))
        except MemberError as exc:
            errors[new_field] = str(exc)
    if not confirm:
        errors[confirm_field] = _("確認用のパスワードを入力してください。")
    elif new and confirm != new:
        errors[confirm_field] = _("確認用のパスワードが一致しません。")
    return errors


def check_password(member: Member, password: str) -> bool:
    try:
        return hasher().verify(member.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def end_sessions(member: Member) -> None:
    """Invalidate every cookie issued to this member (sign-out, password change)."""
    db.session.execute(
        update(Member)
        .where(Member.id == member.id)
        .values(session_generation=Member.session_generation + 1)
    )
    db.session.commit()
