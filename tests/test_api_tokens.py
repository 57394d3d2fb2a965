"""Admin API tokens (issue 14), the domain: made once, stored as a keyed hash, refused
when unknown, malformed, expired or revoked; the last use written at most once a minute."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from conftest import NOW

from portal import api_tokens
from portal.extensions import db
from portal.models import ApiToken


def test_a_token_is_256_random_bits_behind_a_prefix_and_only_its_hash_is_stored(ctx):
    token, row = api_tokens.create("HR system", "read", by="boss", now=NOW)
    assert re.fullmatch(r"pt_[A-Za-z0-9_-]{43}", token)
    other, _ = api_tokens.create("Help desk", "write", by="boss", now=NOW)
    assert other != token
    stored = db.session.get(ApiToken, row.id)
    assert token not in repr(vars(stored)) and token[3:] not in stored.token_hash
    assert len(stored.token_hash) == 64
    assert (stored.name, stored.scope, stored.created_by) == ("HR system", "read", "boss")
    assert stored.created_at == NOW and stored.expires_at is None


def test_authenticate_finds_the_token_by_its_hash(ctx):
    token, row = api_tokens.create("HR system", "read", by="boss", now=NOW)
    assert api_tokens.authenticate(token, NOW).id == row.id
    assert api_tokens.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B"), NOW) is None
    assert api_tokens.authenticate("", NOW) is None
    assert api_tokens.authenticate(token + "x", NOW) is None
    assert api_tokens.authenticate(token[3:], NOW) is None  # without its prefix


def test_the_hash_is_keyed_by_the_secret_key(app, ctx):
    token, _ = api_tokens.create("HR system", "read", by="boss", now=NOW)
    from portal import create_app

    other = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "another-secret-key-entirely-" + "x" * 16,
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
        }
    )
    with other.app_context():
        assert api_tokens.authenticate(token, NOW) is None
        db.session.remove()
        db.engine.dispose()


def test_an_expired_token_is_refused_from_its_expiry_on(ctx):
    token, row = api_tokens.create(
        "HR system", "read", by="boss", now=NOW, expires_at=NOW + timedelta(days=30)
    )
    assert api_tokens.authenticate(token, NOW + timedelta(days=30, seconds=-1)) is not None
    assert api_tokens.authenticate(token, NOW + timedelta(days=30)) is None
    assert api_tokens.state(row, NOW + timedelta(days=31)) == api_tokens.EXPIRED
    assert api_tokens.lookup(token).id == row.id  # known, so the API can say why


def test_a_revoked_token_is_refused_and_revoking_twice_counts_once(ctx):
    token, row = api_tokens.create("HR system", "write", by="boss", now=NOW)
    assert api_tokens.revoke(row, NOW) is True
    assert api_tokens.revoke(row, NOW + timedelta(minutes=1)) is False
    assert api_tokens.authenticate(token, NOW) is None
    assert api_tokens.state(row, NOW) == api_tokens.REVOKED
    assert db.session.get(ApiToken, row.id).revoked_at == NOW


def test_names_and_scopes_are_checked(ctx):
    api_tokens.create("HR system", "read", by="boss", now=NOW)
    with pytest.raises(api_tokens.NameTaken):
        api_tokens.create(" HR system ", "write", by="boss", now=NOW)
    for name, scope in (("", "read"), ("x" * 61, "read"), ("ok", "admin"), ("ok", "")):
        with pytest.raises(ValueError):
            api_tokens.create(name, scope, by="boss", now=NOW)
    with pytest.raises(ValueError):
        api_tokens.create("late", "read", by="boss", now=NOW, expires_at=NOW)


def test_a_name_is_free_again_once_its_token_is_revoked_or_expired(ctx):
    _, first = api_tokens.create("HR system", "read", by="boss", now=NOW)
    api_tokens.revoke(first, NOW)
    api_tokens.create("HR system", "read", by="boss", now=NOW, expires_at=NOW + timedelta(days=1))
    api_tokens.create("HR system", "read", by="boss", now=NOW + timedelta(days=1))
    assert [t.name for t in api_tokens.listed()] == ["HR system"] * 3


def test_the_last_use_is_written_at_most_once_a_minute_and_at_once(ctx):
    _, row = api_tokens.create("HR system", "read", by="boss", now=NOW)
    for when, kept in ((0, 0), (59, 0), (60, 60), (61, 60)):
        api_tokens.touch(row, NOW + timedelta(seconds=when))
        db.session.rollback()  # written for good, not left to a later commit
        assert row.last_used_at == NOW + timedelta(seconds=kept), when


def test_get_takes_any_integer(ctx):
    _, row = api_tokens.create("HR system", "read", by="boss", now=NOW)
    assert api_tokens.get(row.id).id == row.id
    assert api_tokens.get(0) is None and api_tokens.get(2**63) is None
    assert api_tokens.get(row.id + 1) is None
