"""Secrets at rest: encryption round trip, tamper detection, rotation, key derivation."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from portal import create_app
from portal.config import ConfigError
from portal.twofactor.crypto import (
    ENCRYPTION_LABEL,
    HMAC_LABEL,
    CodeHasher,
    SecretBox,
    SecretTampered,
    derive_key,
)


def test_round_trip_and_ciphertext_hides_secret():
    box = SecretBox([Fernet.generate_key()])
    token = box.encrypt("JBSWY3DPEHPK3PXP")
    assert b"JBSWY3DPEHPK3PXP" not in token
    assert box.decrypt(token) == "JBSWY3DPEHPK3PXP"


def test_tampering_is_detected():
    box = SecretBox([Fernet.generate_key()])
    token = bytearray(box.encrypt("JBSWY3DPEHPK3PXP"))
    token[-5] ^= 0x01
    with pytest.raises(SecretTampered):
        box.decrypt(bytes(token))


def test_wrong_key_is_detected():
    token = SecretBox([Fernet.generate_key()]).encrypt("secret")
    with pytest.raises(SecretTampered):
        SecretBox([Fernet.generate_key()]).decrypt(token)


def test_rotation_reads_old_and_writes_new():
    old_key, new_key = Fernet.generate_key(), Fernet.generate_key()
    token = SecretBox([old_key]).encrypt("secret")
    rotating = SecretBox([new_key, old_key])
    assert rotating.decrypt(token) == "secret"
    rotated = rotating.rotate(token)
    # After rotation the old key can be dropped.
    assert SecretBox([new_key]).decrypt(rotated) == "secret"


def test_bad_key_is_a_clear_error():
    with pytest.raises(ValueError, match="Fernet"):
        SecretBox(["not-a-key"])


def test_derived_keys_differ_by_label_and_from_secret_key():
    enc = derive_key("k" * 40, ENCRYPTION_LABEL)
    mac = derive_key("k" * 40, HMAC_LABEL)
    assert enc != mac and len(enc) == len(mac) == 32
    expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HMAC_LABEL).derive(
        b"k" * 40
    )
    assert mac == expected


def test_hasher_is_keyed():
    assert CodeHasher(b"a" * 32).hash("abc") != CodeHasher(b"b" * 32).hash("abc")


def test_rotate_command_reencrypts_all_secrets(tmp_path, monkeypatch):
    from conftest import CHEAP_ARGON2, NOW

    from portal import members, twofactor
    from portal.extensions import db
    from portal.models import TotpCredential
    from portal.twofactor import totp

    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    base = {
        "TESTING": True,
        "SECRET_KEY": "x" * 40,
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'p.db'}",
        "PORTAL_ARGON2_PARAMS": CHEAP_ARGON2,
    }
    app = create_app(base | {"PORTAL_ENCRYPTION_KEYS": [old_key]})
    with app.app_context():
        db.create_all()
        m = members.create("alice", email="a@example.com", password="rotate these keys please")
        nonce = "cli"  # the id of the session shown the secret
        secret = totp.begin_enrolment(m, NOW, nonce)
        import pyotp

        status, _ = twofactor.enable_app(m, pyotp.TOTP(secret).at(NOW), NOW, nonce, replace=False)
        assert status is twofactor.Enrolment.OK
    app2 = create_app(base | {"PORTAL_ENCRYPTION_KEYS": [new_key, old_key]})
    result = app2.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0 and "1" in result.output
    app3 = create_app(base | {"PORTAL_ENCRYPTION_KEYS": [new_key]})
    with app3.app_context():
        cred = db.session.scalar(db.select(TotpCredential))
        assert SecretBox([new_key]).decrypt(cred.secret_encrypted) == secret
        db.engine.dispose()
    for a in (app, app2):
        with a.app_context():
            db.engine.dispose()


def test_malformed_encryption_key_stops_start_up(tmp_path, monkeypatch):
    monkeypatch.setenv("PORTAL_ENCRYPTION_KEYS", "short")
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path))
    with pytest.raises((ValueError, ConfigError), match="PORTAL_ENCRYPTION_KEYS"):
        create_app({"SECRET_KEY": "x" * 40})
