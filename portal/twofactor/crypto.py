"""Keys for secrets at rest.

TOTP secrets must be readable again (to compute codes), so they are encrypted with
Fernet (AES-128-CBC + HMAC-SHA256, authenticated: a tampered value fails to decrypt).
Recovery codes only need comparing, so they are stored as keyed HMAC-SHA256 hashes.
Both keys default to HKDF derivations of SECRET_KEY under different labels, so one
leaked derived key reveals neither SECRET_KEY nor the other key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask, current_app

ENCRYPTION_LABEL = b"member-portal totp-secret encryption v1"
HMAC_LABEL = b"member-portal recovery-code hmac v1"


class SecretTampered(Exception):
    """A stored secret failed authentication: altered, or encrypted under an unknown key."""


def derive_key(secret_key: str, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(
        secret_key.encode()
    )


class SecretBox:
    """Encrypts with the newest key; decrypts with any listed key (for rotation)."""

    def __init__(self, keys: list[bytes | str]):
        if not keys:
            raise ValueError("at least one encryption key is required")
        try:
            self._fernet = MultiFernet([Fernet(key) for key in keys])
        except (ValueError, TypeError) as exc:
            raise ValueError(
                "PORTAL_ENCRYPTION_KEYS must hold Fernet keys "
                "(32 url-safe base64-encoded bytes each; "
                "python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())')"
            ) from exc

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken:
            raise SecretTampered("stored secret failed authentication") from None

    def rotate(self, token: bytes) -> bytes:
        """Re-encrypt under the newest key (the old key can then be dropped)."""
        try:
            return self._fernet.rotate(token)
        except InvalidToken:
            raise SecretTampered("stored secret failed authentication") from None


class CodeHasher:
    """Keyed hashes: a copy of the database alone does not allow offline guessing."""

    def __init__(self, key: bytes):
        self._key = key

    def hash(self, canonical: str) -> str:
        return hmac.new(self._key, canonical.encode(), hashlib.sha256).hexdigest()


def init_app(app: Flask) -> None:
    secret_key = app.config["SECRET_KEY"]
    keys = app.config.get("PORTAL_ENCRYPTION_KEYS") or [
        base64.urlsafe_b64encode(derive_key(secret_key, ENCRYPTION_LABEL))
    ]
    hmac_key = app.config.get("PORTAL_HMAC_KEY")
    app.extensions["portal.secret_box"] = SecretBox(keys)
    app.extensions["portal.code_hasher"] = CodeHasher(
        hmac_key.encode() if hmac_key else derive_key(secret_key, HMAC_LABEL)
    )


def secret_box() -> SecretBox:
    return current_app.extensions["portal.secret_box"]


def code_hasher() -> CodeHasher:
    return current_app.extensions["portal.code_hasher"]
