"""The operator's policy in the domain (portal.twofactor.policy), field by field: what
``validate`` accepts and refuses (with the exact message), what ``values`` shows, what
``save`` changes and reports for the audit log, and how stored trusted networks are read.

Every call gets an explicit ``now``; what is asserted is what a caller gets back or what
is stored."""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import NOW, get_member
from test_policy import exists, valid

from portal.extensions import db
from portal.models import Policy
from portal.twofactor import policy as rules

DAY = timedelta(days=1)


def check(**changes) -> tuple[dict, dict]:
    return rules.validate(valid(**changes), path_exists=exists)


def anywhere(path: str) -> bool:
    """A page check that says yes to everything: the domain's own rules still apply."""
    return True


# --- the row ----------------------------------------------------------------------------


def test_a_row_created_by_another_request_meanwhile_is_the_one_used(ctx, monkeypatch):
    """Two first requests race to create the row: the one that loses uses the winner's
    row, and the table still holds one row."""
    real_get = db.session.get
    calls = []

    def get_after_the_other_request(model, ident):
        if not calls:  # the first read saw no row; the other request then wrote it
            calls.append(ident)
            with db.engine.begin() as other:
                other.execute(
                    db.insert(Policy).values(
                        id=1,
                        enforcement="off",
                        enforcement_since=NOW - DAY,
                        operator_enforcement_since=NOW - DAY,
                    )
                )
            return None
        return real_get(model, ident)

    monkeypatch.setattr(db.session, "get", get_after_the_other_request)
    row = rules.current(NOW)
    monkeypatch.undo()
    assert row.id == 1 and row.enforcement == "off" and row.enforcement_since == NOW - DAY
    assert db.session.scalars(db.select(Policy.id)).all() == [1]


# --- reading it -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remember", "terminal"), [(True, False), (False, True), (True, True), (False, False)]
)
def test_values_show_each_flag_as_yes_or_no(ctx, remember, terminal):
    row = rules.current(NOW)
    row.allow_remember_device, row.shared_terminal_skip = remember, terminal
    row.passwordless = terminal
    shown = rules.values(row)
    assert shown["allow_remember_device"] == ("yes" if remember else "no")
    assert shown["shared_terminal_skip"] == ("yes" if terminal else "no")
    assert shown["passwordless"] == ("yes" if terminal else "no")


def test_values_show_every_field_as_stored(ctx):
    row = rules.current(NOW)
    row.enforcement, row.operator_enforcement = "off", "recommend"
    row.grace_days, row.remember_days = 0, 365
    row.trusted_networks = "192.0.2.0/24 skip\n2001:db8::/64 always"
    row.methods, row.issuer, row.landing_path = "app,sms", "Example Co", "/settings/2fa"
    assert rules.values(row) == {
        "enforcement": "off",
        "operator_enforcement": "recommend",
        "grace_days": "0",
        "allow_remember_device": "yes",
        "remember_days": "365",
        "trusted_networks": "192.0.2.0/24 skip\n2001:db8::/64 always",
        "shared_terminal_skip": "no",
        "methods": "app,sms",
        "passwordless": "yes",
        "issuer": "Example Co",
        "landing_path": "/settings/2fa",
    }


def test_remembering_lasts_the_policy_days_only_while_allowed(ctx):
    row = rules.current(NOW)
    row.remember_days = 12
    assert rules.remember_for(row) == timedelta(days=12)
    row.allow_remember_device = False
    assert rules.remember_for(row) is None


def test_stored_networks_skip_blank_comment_and_unreadable_lines(ctx):
    """``networks`` reads the stored lines without failing on one it cannot use: a bad
    line is left out and the lines after it still count."""
    row = rules.current(NOW)
    row.trusted_networks = "\n".join(
        [
            "",
            "# office",
            "192.0.2.0/33 skip",  # not a range
            "198.51.100.0/24 maybe",  # not a mode
            "203.0.113.0/24",  # no mode
            "192.0.2.0/24 skip extra",  # three words
            "192.0.2.7/24 skip",  # host bits set: still the /24
            "2001:db8::/64 always",
        ]
    )
    assert [str(n) for n in rules.networks(row)] == ["192.0.2.0/24 skip", "2001:db8::/64 always"]
    assert rules.network_mode(row, "192.0.2.10") == "skip"
    assert rules.network_mode(row, "198.51.100.1") is None
    assert rules.network_mode(row, "2001:db8::1") == "always"


def test_required_since_is_each_roles_own_start(ctx, member, operator):
    """A member's grace counts from when the members' level became required; an
    operator's from the earlier of the two required levels."""
    row = rules.current(NOW)
    row.enforcement, row.enforcement_since = "required", NOW
    row.operator_enforcement, row.operator_enforcement_since = "required", NOW - 10 * DAY
    row.grace_days = 7
    alice, boss = get_member(member), get_member(operator)
    alice.created_at = boss.created_at = NOW - 100 * DAY
    assert rules.setup_deadline(row, alice) == NOW + 7 * DAY
    assert rules.setup_deadline(row, boss) == NOW - 3 * DAY
    row.enforcement = "recommend"  # only the operators' level is required
    assert rules.setup_deadline(row, alice) is None
    assert rules.setup_deadline(row, boss) == NOW - 3 * DAY
    row.enforcement, row.operator_enforcement = "required", "off"
    row.operator_enforcement_since = NOW - 50 * DAY  # not required: its date does not count
    assert rules.setup_deadline(row, boss) == NOW + 7 * DAY


# --- validating a change ----------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["1", "y", "Y", "yes", "YES", "true", "True", "on", " ON "])
@pytest.mark.parametrize("field", ["allow_remember_device", "shared_terminal_skip"])
def test_every_spelling_of_yes(ctx, field, spelling):
    clean, errors = check(**{field: spelling})
    assert errors == {} and clean[field] is True


@pytest.mark.parametrize(
    "spelling", ["", "  ", "0", "n", "N", "no", "No", "false", "FALSE", "off", "Off"]
)
@pytest.mark.parametrize("field", ["allow_remember_device", "shared_terminal_skip"])
def test_every_spelling_of_no(ctx, field, spelling):
    clean, errors = check(**{field: spelling})
    assert errors == {} and clean[field] is False


@pytest.mark.parametrize("spelling", ["maybe", "2", "yess", "はい", "t", "f"])
def test_other_spellings_of_a_flag_are_refused(ctx, spelling):
    clean, errors = check(shared_terminal_skip=spelling)
    assert errors == {"shared_terminal_skip": "yes か no で指定してください。"}
    assert clean["shared_terminal_skip"] is None


def test_fields_left_out_are_empty(ctx):
    """An unticked checkbox is not sent at all: the flag is off. Other missing fields
    read as empty (the landing page then is "/")."""
    raw = valid()
    for field in ("allow_remember_device", "shared_terminal_skip", "trusted_networks"):
        del raw[field]
    del raw["landing_path"]
    clean, errors = rules.validate(raw, path_exists=exists)
    assert errors == {}
    assert clean["allow_remember_device"] is False and clean["shared_terminal_skip"] is False
    assert clean["trusted_networks"] == "" and clean["landing_path"] == "/"
    clean, errors = rules.validate({}, path_exists=exists)
    assert set(errors) == {"enforcement", "operator_enforcement", "grace_days"} | {
        "remember_days",
        "methods",
    }
    assert clean["landing_path"] == "/" and clean["issuer"] == ""


@pytest.mark.parametrize(
    ("field", "low", "high"), [("grace_days", 0, 365), ("remember_days", 1, 365)]
)
def test_days_accept_exactly_their_range(ctx, field, low, high):
    for days in (low, low + 1, high - 1, high):
        clean, errors = check(**{field: str(days)})
        assert errors == {} and clean[field] == days
    message = f"{low}〜{high}の整数で入力してください。"
    for raw in (str(low - 1), str(high + 1), "1.5", "7 days", ""):
        clean, errors = check(**{field: raw})
        assert errors == {field: message} and clean[field] is None, raw


@pytest.mark.parametrize("field", ["enforcement", "operator_enforcement"])
def test_levels_accept_only_the_three_names(ctx, field):
    for level in rules.LEVELS:
        clean, errors = check(**{field: f" {level} "})
        assert errors == {} and clean[field] == level
    clean, errors = check(**{field: "Required"})
    assert errors == {field: "off・recommend・required のいずれかを選んでください。"}


def test_method_messages(ctx):
    wrong = {"methods": "方法は app・email・sms・passkey から選んでください。"}
    assert check(methods="app,fax")[1] == wrong
    assert check(methods=" , ")[1] == {"methods": "少なくとも1つの方法を選んでください。"}
    assert check(methods=[])[1] == {"methods": "少なくとも1つの方法を選んでください。"}


ISSUER_MESSAGE = "100文字以内で、「:」や改行を含めずに入力してください。"


@pytest.mark.parametrize("issuer", ["x" * 100, "Example X", "XX Corp", "株式会社エックス"])
def test_issuers_accepted(ctx, issuer):
    clean, errors = check(issuer=f" {issuer} ")
    assert errors == {} and clean["issuer"] == issuer


@pytest.mark.parametrize("issuer", ["x" * 101, "Evil: Corp", "A\tB", "A\nB", "A\rB", "A\x00B"])
def test_issuers_refused(ctx, issuer):
    assert check(issuer=issuer)[1] == {"issuer": ISSUER_MESSAGE}


LANDING_MESSAGE = "ポータル内にある「/」から始まるページのパスを入力してください。"


@pytest.mark.parametrize(
    "path",
    [
        "https://evil.example/",
        "evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "/a b",
        "/a\tb",
        "/a\x00",
        "/ページ",
        "/" + "a" * 200,
    ],
)
def test_landing_paths_refused_even_if_such_a_page_existed(ctx, path):
    """The path's shape is the domain's own rule, whatever the page check answers."""
    clean, errors = rules.validate(valid(landing_path=path), path_exists=anywhere)
    assert errors == {"landing_path": LANDING_MESSAGE}


@pytest.mark.parametrize("path", ["/", "/settings/2fa?tab=1", "/pages/welcome", "/" + "a" * 199])
def test_landing_paths_accepted(ctx, path):
    clean, errors = rules.validate(valid(landing_path=path), path_exists=anywhere)
    assert errors == {} and clean["landing_path"] == path


def test_a_landing_page_that_does_not_exist_is_refused(ctx):
    assert check(landing_path="/nowhere")[1] == {"landing_path": LANDING_MESSAGE}


# --- trusted networks -------------------------------------------------------------------

FORMAT = "「192.0.2.0/24 skip」のように、アドレス範囲と skip または always を書いてください。"
WIDTH = (
    "skip に指定できる範囲は、IPv4は /16、IPv6は /48 までです（それより広い範囲は指定できません）。"
)


def networks_error(raw: str) -> str | None:
    found, problem = rules.parse_networks(raw)
    if problem is not None:
        assert found == []
    return problem


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("192.168.0.0/16 skip", "192.168.0.0/16 skip"),
        ("192.168.0.0/17 skip", "192.168.0.0/17 skip"),
        ("2001:db8::/48 skip", "2001:db8::/48 skip"),
        ("2001:db8::/49 skip", "2001:db8::/49 skip"),
        ("0.0.0.0/0 always", "0.0.0.0/0 always"),
        ("::/0 ALWAYS", "::/0 always"),
        ("192.0.2.99 skip", "192.0.2.99/32 skip"),
    ],
)
def test_widest_skip_ranges_and_any_always_range_are_accepted(ctx, raw, stored):
    clean, errors = check(trusted_networks=raw)
    assert errors == {} and clean["trusted_networks"] == stored


@pytest.mark.parametrize(
    ("raw", "shown"),
    [("192.168.0.0/15 skip", "192.168.0.0/15"), ("2001:db8::/47 skip", "2001:db8::/47")],
)
def test_a_skip_range_one_bit_wider_is_refused(ctx, raw, shown):
    assert networks_error(f"# office\n192.0.2.0/24 always\n{raw}") == f"2行目「{shown}」: {WIDTH}"


def test_network_errors_name_the_line_and_what_was_wrong(ctx):
    assert networks_error("192.0.2.0/24 maybe") == f"1行目「192.0.2.0/24 maybe」: {FORMAT}"
    assert networks_error("\n# c\n192.0.2.0/24 skip; 192.0.2.0/24") == (
        f"2行目「192.0.2.0/24」: {FORMAT}"
    )
    assert networks_error("192.0.2.0/24 skip\n192.0.2.0/33 skip") == (
        "2行目「192.0.2.0/33」はIPアドレスの範囲として正しくありません。"
    )
    long_line = "192.0.2.0/24 " + "x" * 100
    assert networks_error(long_line) == f"1行目「{long_line[:60]}」: {FORMAT}"
    long_address = "1" * 100 + " skip"
    assert networks_error(long_address) == (
        f"1行目「{'1' * 60}」はIPアドレスの範囲として正しくありません。"
    )


def test_at_most_two_hundred_networks(ctx):
    lines = [f"10.0.{i // 256}.{i % 256}/32 always" for i in range(201)]
    found, problem = rules.parse_networks("\n".join(lines[:200]) + "\n# comment\n\n")
    assert problem is None and len(found) == 200
    assert networks_error("\n".join(lines)) == "信頼済みネットワークは200行までです。"


# --- saving -----------------------------------------------------------------------------


def test_saving_reports_every_change_and_who_made_it(ctx):
    row = rules.current(NOW - DAY)
    clean, _ = check(
        allow_remember_device="no",
        shared_terminal_skip="yes",
        grace_days="0",
        trusted_networks="192.0.2.0/24 skip",
    )
    later = NOW + DAY
    changes = rules.save(row, clean, by="boss", now=later)
    assert changes == {
        "grace_days": ("7", "0"),
        "allow_remember_device": ("yes", "no"),
        "trusted_networks": ("", "192.0.2.0/24 skip"),
        "shared_terminal_skip": ("no", "yes"),
    }
    assert (row.updated_at, row.updated_by) == (later, "boss")
    assert rules.save(row, clean, by="other", now=later + DAY) == {}  # nothing changed
    assert (row.updated_at, row.updated_by) == (later, "boss")


@pytest.mark.parametrize("field", ["enforcement", "operator_enforcement"])
def test_a_level_becoming_required_starts_its_grace_now(ctx, field):
    row = rules.current(NOW)
    clean, _ = check(enforcement="recommend", operator_enforcement="recommend")
    rules.save(row, clean, by="boss", now=NOW + DAY)
    since = f"{field}_since"
    assert getattr(row, since) == NOW  # "required" → "recommend" keeps it
    rules.save(row, clean, by="boss", now=NOW + 2 * DAY)  # recommend stays recommend
    assert getattr(row, since) == NOW
    clean, _ = check(
        **{"enforcement": "recommend", "operator_enforcement": "recommend"} | {field: "required"}
    )
    changes = rules.save(row, clean, by="boss", now=NOW + 3 * DAY)
    assert changes == {field: ("recommend", "required")}
    assert getattr(row, since) == NOW + 3 * DAY
    rules.save(row, clean, by="boss", now=NOW + 4 * DAY)  # required stays required
    assert getattr(row, since) == NOW + 3 * DAY


def test_a_saved_row_is_stored(ctx):
    row = rules.current(NOW)
    clean, _ = check(methods="sms", issuer="Example", remember_days="365")
    rules.save(row, clean, by="cli", now=NOW)
    db.session.commit()
    db.session.expire_all()
    stored = rules.values(db.session.get(Policy, 1))
    assert (stored["methods"], stored["issuer"], stored["remember_days"]) == (
        "sms",
        "Example",
        "365",
    )


@pytest.mark.parametrize(("raw", "flag"), [("yes", True), ("no", False), ("ON", True), ("", False)])
def test_passwordless_is_a_yes_or_no_switch(ctx, raw, flag):
    clean, errors = check(passwordless=raw)
    assert not errors and clean["passwordless"] is flag


def test_passwordless_refuses_anything_else(ctx):
    assert check(passwordless="maybe")[1] == {"passwordless": "yes か no で指定してください。"}
