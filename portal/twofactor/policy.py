"""The operator's policy (二段階認証方式の設定): who must have 2FA, when the second step may
be skipped, which methods are offered, the issuer and the page after sign-in.

Stored in one database row, so a change reaches every worker and host on their next
request (views read it at most once per request). Validation is shared by the admin page
and the CLI; every saved change is returned as {field: (old, new)} for the audit log.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask_babel import gettext as _
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import Member, Policy

LEVELS = ("off", "recommend", "required")
METHODS = ("app", "email", "sms", "passkey")
MODES = ("skip", "always")
# A "skip" range may not be wider than this: skipping the second step for a whole
# provider's address space would switch it off for strangers too.
WIDEST_SKIP = {4: 16, 6: 48}
FIELDS = (
    "enforcement",
    "operator_enforcement",
    "grace_days",
    "allow_remember_device",
    "remember_days",
    "trusted_networks",
    "shared_terminal_skip",
    "methods",
    "passwordless",
    "issuer",
    "landing_path",
)
MAX_NETWORKS = 200


@dataclass(frozen=True)
class Network:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    mode: str  # "skip" | "always"

    def __str__(self) -> str:
        return f"{self.network} {self.mode}"


def current(now: datetime) -> Policy:
    """The policy, created with the defaults of a new install on first use (the grace
    periods of the defaults count from then)."""
    row = db.session.get(Policy, 1)
    if row is not None:
        return row
    db.session.add(Policy(id=1, enforcement_since=now, operator_enforcement_since=now))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # another request created it a moment ago
    return db.session.get(Policy, 1)


# --- reading the policy -----------------------------------------------------------------


def offered_methods(row: Policy) -> tuple[str, ...]:
    return tuple(m for m in row.methods.split(",") if m in METHODS)


def networks(row: Policy) -> list[Network]:
    """The stored lines, already validated on save."""
    found = []
    for line in row.trusted_networks.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] in MODES:
            try:
                found.append(Network(ipaddress.ip_network(parts[0], strict=False), parts[1]))
            except ValueError:
                continue
    return found


def network_mode(row: Policy, address: str | None) -> str | None:
    """ "always", "skip" or None for a client address. "always" wins where both match:
    a narrower "always" range carves personal desks out of an office's "skip" range."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return None
    modes = {n.mode for n in networks(row) if ip.version == n.network.version and ip in n.network}
    if "always" in modes:
        return "always"
    return "skip" if "skip" in modes else None


def level_for(row: Policy, member: Member) -> str:
    """The enforcement level for this member: operators get the stricter of the two."""
    if not member.is_operator:
        return row.enforcement
    return max(row.enforcement, row.operator_enforcement, key=LEVELS.index)


def _required_since(row: Policy, member: Member) -> datetime:
    if not member.is_operator:
        return row.enforcement_since
    since = [
        stamp
        for level, stamp in (
            (row.enforcement, row.enforcement_since),
            (row.operator_enforcement, row.operator_enforcement_since),
        )
        if level == "required"
    ]
    return min(since)


def setup_deadline(row: Policy, member: Member) -> datetime | None:
    """When a member without 2FA must set it up before going on (None: never). Grace
    days count from when the level became required, or from the member's creation if
    that is later."""
    if level_for(row, member) != "required":
        return None
    start = max(_required_since(row, member), member.created_at)
    return start + timedelta(days=row.grace_days)


def remember_for(row: Policy) -> timedelta | None:
    """How long a remembered device lasts, or None when remembering is not allowed."""
    return timedelta(days=row.remember_days) if row.allow_remember_device else None


def values(row: Policy) -> dict[str, str]:
    """Every field as text, the way the CLI shows it and the form is filled."""
    return {
        "enforcement": row.enforcement,
        "operator_enforcement": row.operator_enforcement,
        "grace_days": str(row.grace_days),
        "allow_remember_device": "yes" if row.allow_remember_device else "no",
        "remember_days": str(row.remember_days),
        "trusted_networks": row.trusted_networks,
        "shared_terminal_skip": "yes" if row.shared_terminal_skip else "no",
        "methods": row.methods,
        "passwordless": "yes" if row.passwordless else "no",
        "issuer": row.issuer,
        "landing_path": row.landing_path,
    }


# --- changing it ------------------------------------------------------------------------


def _days(raw: str, low: int, high: int, errors: dict, field: str) -> int | None:
    text = raw.strip()
    # The length first: int() refuses thousands of digits (Python's digit limit).
    digits = text.lstrip("0") or "0"
    if (
        not (text.isascii() and text.isdigit())
        or len(digits) > len(str(high))
        or not low <= int(digits) <= high
    ):
        errors[field] = _("%(low)d〜%(high)dの整数で入力してください。", low=low, high=high)
        return None
    return int(digits)


def _bool(raw: str) -> bool | None:
    text = raw.strip().lower()
    if text in ("1", "y", "yes", "true", "on"):
        return True
    if text in ("", "0", "n", "no", "false", "off"):
        return False
    return None


def parse_networks(raw: str) -> tuple[list[Network], str | None]:
    """One ``CIDR MODE`` per line (";" also separates lines); the error names the line."""
    found: list[Network] = []
    lines = [line.strip() for line in raw.replace(";", "\n").splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if len(lines) > MAX_NETWORKS:
        return [], _("信頼済みネットワークは%(max)d行までです。", max=MAX_NETWORKS)
    for number, line in enumerate(lines, 1):
        parts = line.split()
        if len(parts) != 2 or parts[1].lower() not in MODES:
            return [], _(
                "%(number)d行目「%(line)s」: 「192.0.2.0/24 skip」のように、"
                "アドレス範囲と skip または always を書いてください。",
                number=number,
                line=line[:60],
            )
        try:
            network = ipaddress.ip_network(parts[0], strict=False)
        except ValueError:
            return [], _(
                "%(number)d行目「%(line)s」はIPアドレスの範囲として正しくありません。",
                number=number,
                line=parts[0][:60],
            )
        mode = parts[1].lower()
        if mode == "skip" and network.prefixlen < WIDEST_SKIP[network.version]:
            return [], _(
                "%(number)d行目「%(network)s」: skip に指定できる範囲は、IPv4は /16、"
                "IPv6は /48 までです（それより広い範囲は指定できません）。",
                number=number,
                network=str(network),
            )
        found.append(Network(network, mode))
    return found, None


def validate(
    raw: Mapping[str, str | list[str]], *, path_exists: Callable[[str], bool]
) -> tuple[dict[str, object], dict[str, str]]:
    """Clean values for every field, and a message per bad field (reader's language). ``methods``
    may be a list (checkboxes) or comma-separated text (CLI)."""

    def text(field: str) -> str:
        value = raw.get(field, "")
        return value if isinstance(value, str) else ",".join(value)

    errors: dict[str, str] = {}
    clean: dict[str, object] = {}
    for field in ("enforcement", "operator_enforcement"):
        level = text(field).strip()
        if level not in LEVELS:
            errors[field] = _("off・recommend・required のいずれかを選んでください。")
        clean[field] = level
    clean["grace_days"] = _days(text("grace_days"), 0, 365, errors, "grace_days")
    clean["remember_days"] = _days(text("remember_days"), 1, 365, errors, "remember_days")
    for field in ("allow_remember_device", "shared_terminal_skip", "passwordless"):
        flag = _bool(text(field))
        if flag is None:
            errors[field] = _("yes か no で指定してください。")
        clean[field] = flag
    found, problem = parse_networks(text("trusted_networks"))
    if problem:
        errors["trusted_networks"] = problem
    clean["trusted_networks"] = "\n".join(str(n) for n in found)
    methods = [m.strip() for m in text("methods").split(",") if m.strip()]
    if any(m not in METHODS for m in methods):
        errors["methods"] = _("方法は app・email・sms・passkey から選んでください。")
    elif not methods:
        errors["methods"] = _("少なくとも1つの方法を選んでください。")
    clean["methods"] = ",".join(m for m in METHODS if m in methods)
    issuer = text("issuer").strip()
    if len(issuer) > 100 or any(ch in issuer for ch in ":\r\n\t") or not issuer.isprintable():
        errors["issuer"] = _("100文字以内で、「:」や改行を含めずに入力してください。")
    clean["issuer"] = issuer
    landing = text("landing_path").strip() or "/"
    if not _local_path(landing) or len(landing) > 200 or not path_exists(landing):
        errors["landing_path"] = _(
            "ポータル内にある「/」から始まるページのパスを入力してください。"
        )
    clean["landing_path"] = landing
    return clean, errors


def _local_path(path: str) -> bool:
    return (
        path.startswith("/")
        and not path.startswith("//")
        and "\\" not in path
        and path.isprintable()
        and path.isascii()
        and " " not in path
    )


def save(row: Policy, clean: Mapping[str, object], *, by: str, now: datetime) -> dict:
    """Set validated values (not committed: the caller's audit record commits them in
    the same transaction); returns {field: (old, new)} of what changed. A level that
    becomes "required" starts its grace period now."""
    before = values(row)
    for field in ("enforcement", "operator_enforcement"):
        if clean[field] == "required" and getattr(row, field) != "required":
            setattr(row, f"{field}_since", now)
    for field in FIELDS:
        setattr(row, field, clean[field])
    after = values(row)
    changes = {f: (before[f], after[f]) for f in FIELDS if before[f] != after[f]}
    if changes:
        row.updated_at, row.updated_by = now, by
    return changes
