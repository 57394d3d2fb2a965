"""Members: ID and password rules, argon2id hashing, and the CLI."""

from __future__ import annotations

import unicodedata

import pytest
from conftest import PASSWORD

from portal import members
from portal.extensions import db
from portal.models import Member


def count(app) -> int:
    with app.app_context():
        return db.session.scalar(db.select(db.func.count(Member.id)))


def test_login_id_is_case_insensitive(ctx, member):
    assert members.authenticate("ALICE", PASSWORD) is not None
    with pytest.raises(members.MemberError, match="既に使われています"):
        members.create("Alice", email="x@example.com", password=PASSWORD)


def test_password_is_argon2id(ctx, member):
    stored = members.find("alice").password_hash
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_rehash_on_sign_in_when_parameters_change(app, member):
    with app.app_context():
        old = members.find("alice").password_hash
        assert "m=8," in old
        app.config["PORTAL_ARGON2_PARAMS"] = {"time_cost": 2, "memory_cost": 16, "parallelism": 1}
        app.extensions.pop("portal.password_hasher")
        assert members.authenticate("alice", PASSWORD) is not None
        new = members.find("alice").password_hash
        assert new != old and "m=16," in new and "t=2," in new


def test_unknown_id_and_wrong_password_cost_one_hash_check_each(ctx, member, hash_checks):
    assert members.authenticate("nobody", PASSWORD) is None
    assert members.authenticate("alice", "wrong password!!") is None
    assert members.authenticate("x", PASSWORD) is None  # malformed ID: still one check
    assert len(hash_checks) == 3


def run_create(runner, *args, password=PASSWORD):
    return runner.invoke(
        args=["members", "create", *args, "--password-stdin"], input=password + "\n"
    )


def test_cli_create(app, runner):
    result = run_create(
        runner,
        "Bob.Smith",
        "--email",
        "bob@example.com",
        "--name",
        "ボブ",
        "--phone",
        "090-1234-5678",
        "--operator",
    )
    assert result.exit_code == 0, result.output
    with app.app_context():
        bob = members.find("bob.smith")
        assert bob.login_id == "Bob.Smith" and bob.name == "ボブ" and bob.is_operator
        assert bob.phone == "+819012345678"
        assert members.authenticate("BOB.SMITH", PASSWORD) is not None


@pytest.mark.parametrize(
    ("args", "password", "message"),
    [
        (["ab", "--email", "a@example.com"], PASSWORD, "ログインID"),
        (["a" * 65, "--email", "a@example.com"], PASSWORD, "ログインID"),
        (["bad id", "--email", "a@example.com"], PASSWORD, "ログインID"),
        (["ünï", "--email", "a@example.com"], PASSWORD, "ログインID"),
        (["carol", "--email", "not-an-email"], PASSWORD, "メールアドレス"),
        (["carol", "--email", "a@b"], PASSWORD, "メールアドレス"),
        (["carol", "--email", "a@example.com"], "short", "パスワード"),
        (["carol", "--email", "a@example.com"], "x" * 129, "パスワード"),
        (["ALICE", "--email", "a@example.com"], PASSWORD, "既に使われています"),
        (["carol", "--email", "a@example.com", "--phone", "12"], PASSWORD, "電話番号"),
        (["carol", "--email", "a@example.com", "--phone", "+1 650 253 0000"], PASSWORD, "国"),
    ],
)
def test_cli_create_refuses_bad_input(app, runner, member, args, password, message):
    before = count(app)
    result = run_create(runner, *args, password=password)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output
    assert count(app) == before


def test_cli_requires_password_on_stdin(app, runner):
    result = runner.invoke(args=["members", "create", "carol", "--email", "c@example.com"])
    assert result.exit_code == 1 and "--password-stdin" in result.output
    assert count(app) == 0


def test_cli_set_password_ends_sessions(app, runner, member, client, auth):
    auth.login()
    assert client.get("/").status_code == 200
    result = runner.invoke(
        args=["members", "set-password", "alice", "--password-stdin"],
        input="a brand new password\n",
    )
    assert result.exit_code == 0, result.output
    assert client.get("/").status_code == 302  # the old session is gone
    with app.app_context():
        assert members.authenticate("alice", "a brand new password") is not None


def test_cli_set_password_errors(runner, member):
    result = runner.invoke(
        args=["members", "set-password", "nobody", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert result.exit_code == 1 and "nobody" in result.output
    result = runner.invoke(
        args=["members", "set-password", "alice", "--password-stdin"], input="short\n"
    )
    assert result.exit_code == 1 and "パスワード" in result.output


@pytest.mark.settings(PORTAL_ENV="development")
def test_demo_accounts_are_created_then_refreshed(app, runner):
    first = runner.invoke(args=["demo-accounts"])
    assert first.exit_code == 0
    second = runner.invoke(args=["demo-accounts"])
    assert second.exit_code == 0 and first.output != second.output
    with app.app_context():
        assert members.find("admin").is_operator and not members.find("demo").is_operator
        demo_line = next(line for line in second.output.splitlines() if "  demo " in line)
        demo_password = demo_line.split("パスワード：")[1].split()[0]
        assert members.authenticate("demo", demo_password) is not None


@pytest.mark.settings(PORTAL_ENV="production")
def test_demo_accounts_are_refused_in_production(app, runner):
    """A well-known operator account has no place on a real site (ASVS 2.5.4)."""
    result = runner.invoke(args=["demo-accounts"])
    assert result.exit_code == 1 and "PORTAL_ENV=development" in result.output
    with app.app_context():
        assert members.find("admin") is None and members.find("demo") is None


def columns(text: str) -> int:
    """Terminal columns: a wide (Japanese) character takes two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


@pytest.mark.settings(PORTAL_ENV="development", PORT=5001)
def test_demo_accounts_are_printed_framed_with_the_address(app, runner):
    """`make run` prints the address and the accounts last, in a box that stands out."""
    result = runner.invoke(args=["demo-accounts"])
    lines = [line for line in result.output.splitlines() if line]
    assert lines[0] == lines[-1] and set(lines[0]) == {"+", "-"}
    assert all(line.startswith("|") and line.endswith("|") for line in lines[1:-1])
    assert len({columns(line) for line in lines}) == 1  # Japanese takes two columns a letter
    body = result.output
    assert "http://localhost:5001/" in body and "demo" in body and "admin" in body
