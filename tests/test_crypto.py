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


def test_rotate_command_reencrypts_all_secrets(database_url, monkeypatch):
    from conftest import CHEAP_ARGON2, NOW

    from portal import members, twofactor
    from portal.extensions import db
    from portal.models import TotpCredential
    from portal.twofactor import totp

    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    base = {
        "TESTING": True,
        "SECRET_KEY": "x" * 40,
        "SQLALCHEMY_DATABASE_URI": database_url,
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
    # Each context has given its session's connection back: closed with its engine.
    for a in (app, app2, app3):
        with a.app_context():
            db.engine.dispose()


def test_malformed_encryption_key_stops_start_up(tmp_path, monkeypatch):
    monkeypatch.setenv("PORTAL_ENCRYPTION_KEYS", "short")
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path))
    with pytest.raises((ValueError, ConfigError), match="PORTAL_ENCRYPTION_KEYS"):
        create_app({"SECRET_KEY": "x" * 40})


# --- added for mutation testing (tests/MUTATION.md) ---------------------------------

KEY_HINT = (
    "PORTAL_ENCRYPTION_KEYS must hold Fernet keys (32 url-safe base64-encoded bytes each; "
    "python -c 'from cryptography.fernet import Fernet; "
    "print(Fernet.generate_key().decode())')"
)


def test_no_key_is_a_clear_error():
    with pytest.raises(ValueError) as refused:
        SecretBox([])
    assert str(refused.value) == "at least one encryption key is required"


@pytest.mark.parametrize("key", ["not-a-key", None, 12345])
def test_a_bad_key_names_the_setting_and_how_to_make_a_key(key):
    """What the operator reads at start-up: the setting, the format and the command."""
    with pytest.raises(ValueError) as refused:
        SecretBox([Fernet.generate_key(), key])
    assert str(refused.value) == KEY_HINT


def test_a_tampered_secret_says_so_when_read_and_when_rotated():
    box = SecretBox([Fernet.generate_key()])
    foreign = SecretBox([Fernet.generate_key()]).encrypt("secret")
    for use in (box.decrypt, box.rotate):
        with pytest.raises(SecretTampered) as tampered:
            use(foreign)
        assert str(tampered.value) == "stored secret failed authentication"
        assert tampered.value.__cause__ is None and tampered.value.__suppress_context__


def test_hash_is_hmac_sha256_hex():
    import hashlib
    import hmac

    expected = hmac.new(b"k" * 32, b"abcde23456", hashlib.sha256).hexdigest()
    assert CodeHasher(b"k" * 32).hash("abcde23456") == expected


def stored_recovery_hashes(app):
    from conftest import NOW

    from portal import members, twofactor
    from portal.extensions import db
    from portal.models import RecoveryCode

    with app.app_context():
        db.create_all()
        m = members.create("alice", email="a@example.com", password="a long enough password")
        codes = twofactor.recovery.issue(m, NOW)
        hashes = set(db.session.scalars(db.select(RecoveryCode.code_hash)))
    with app.app_context():  # the first context's session has given its connection back
        db.engine.dispose()
    return [c.replace("-", "") for c in codes], hashes


def make_app(database_url, **config):
    from conftest import CHEAP_ARGON2

    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "s" * 40,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "PORTAL_ARGON2_PARAMS": CHEAP_ARGON2,
        }
        | config
    )


def test_portal_hmac_key_is_the_recovery_code_key(database_url):
    import hashlib
    import hmac

    codes, hashes = stored_recovery_hashes(
        make_app(database_url, PORTAL_HMAC_KEY="the recovery-code hmac key, 32+ chars")
    )
    assert hashes == {
        hmac.new(
            b"the recovery-code hmac key, 32+ chars", code.encode(), hashlib.sha256
        ).hexdigest()
        for code in codes
    }


def test_without_portal_hmac_key_the_key_is_derived_from_secret_key(database_url):
    import hashlib
    import hmac

    codes, hashes = stored_recovery_hashes(make_app(database_url))
    key = derive_key("s" * 40, HMAC_LABEL)
    assert hashes == {hmac.new(key, code.encode(), hashlib.sha256).hexdigest() for code in codes}


def test_secrets_are_encrypted_with_the_configured_or_derived_key(database_url):
    import base64

    from portal.twofactor.crypto import secret_box

    configured = Fernet.generate_key()
    with make_app(database_url, PORTAL_ENCRYPTION_KEYS=[configured.decode()]).app_context():
        token = secret_box().encrypt("JBSWY3DPEHPK3PXP")
    assert SecretBox([configured]).decrypt(token) == "JBSWY3DPEHPK3PXP"
    derived = base64.urlsafe_b64encode(derive_key("s" * 40, ENCRYPTION_LABEL))
    with make_app(database_url).app_context():
        token = secret_box().encrypt("JBSWY3DPEHPK3PXP")
    assert SecretBox([derived]).decrypt(token) == "JBSWY3DPEHPK3PXP"
