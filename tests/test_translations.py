"""The English catalogue is complete and current: every message in the source (Python,
page and mail templates) is in it, translated, not fuzzy, with the same placeholders;
and the compiled catalogue is the one the tests run with.

Stale means the message ids differ after ``pybabel extract`` and ``pybabel update``
(never the header's timestamps): a Japanese text changed in the code and not in the
catalogue would otherwise silently show Japanese to English readers.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from babel.messages.frontend import CommandLineInterface
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
CATALOGUES = ROOT / "portal" / "translations"
PO = CATALOGUES / "en" / "LC_MESSAGES" / "messages.po"
MO = PO.with_suffix(".mo")
# As in README.md (Languages and time zones).
KEYWORDS = ["-k", "_l", "-k", "lazy_gettext", "-k", "lazy_pgettext:1c,2"]
PLACEHOLDER = re.compile(r"%(?:\(\w+\))?[-#0 +]*\d*(?:\.\d+)?[sdifr%]")


def pybabel(*args: str) -> None:
    CommandLineInterface().run(["pybabel", "-q", *args])


def ids(catalog) -> set[tuple[str | None, str]]:
    return {(m.context, m.id) for m in catalog if m.id}


def read(path: Path):
    with path.open("rb") as f:
        return read_po(f)


@pytest.fixture(scope="module")
def extracted(tmp_path_factory) -> Path:
    pot = tmp_path_factory.mktemp("pot") / "messages.pot"
    pybabel("extract", "-F", str(ROOT / "babel.cfg"), *KEYWORDS, "-o", str(pot), str(ROOT))
    return pot


def test_every_message_in_the_source_is_in_the_catalogue(extracted):
    source, catalogue = ids(read(extracted)), ids(read(PO))
    missing = sorted(source - catalogue, key=str)
    stale = sorted(catalogue - source, key=str)
    assert not missing, f"not in the catalogue (run pybabel extract + update): {missing[:10]}"
    assert not stale, f"no longer in the source (run pybabel update): {stale[:10]}"


def test_pybabel_update_changes_no_message(extracted, tmp_path):
    """What ``pybabel update`` would do: no message added, dropped or marked fuzzy."""
    copy = tmp_path / "en" / "LC_MESSAGES" / "messages.po"
    copy.parent.mkdir(parents=True)
    shutil.copy(PO, copy)
    pybabel("update", "-i", str(extracted), "-d", str(tmp_path), "-l", "en")
    before, after = read(PO), read(copy)
    assert ids(after) == ids(before)
    assert not [m.id for m in after if m.id and m.fuzzy]
    assert not after.obsolete


def test_every_message_is_translated_and_none_is_fuzzy():
    catalogue = read(PO)
    untranslated = [m.id for m in catalogue if m.id and not m.string]
    fuzzy = [m.id for m in catalogue if m.id and m.fuzzy]
    assert not untranslated, f"untranslated: {untranslated[:10]}"
    assert not fuzzy, f"fuzzy: {fuzzy[:10]}"
    assert not catalogue.obsolete, f"obsolete entries: {list(catalogue.obsolete)[:10]}"


def test_translations_keep_the_placeholders():
    """%(n)d in the Japanese must be %(n)d in the English (a missing name raises at
    render time; an extra one would print raw), and a literal %% stays doubled."""
    wrong = [
        (m.id, m.string)
        for m in read(PO)
        if m.id and sorted(PLACEHOLDER.findall(m.id)) != sorted(PLACEHOLDER.findall(m.string))
    ]
    assert not wrong, wrong[:5]


def test_english_has_no_japanese_left():
    japanese = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
    left = [(m.id, m.string) for m in read(PO) if m.id and japanese.search(m.string)]
    assert not left, left[:5]


def test_the_compiled_catalogue_is_the_current_one():
    """``make`` compiles the .po at install; a stale .mo would test old English."""
    assert MO.exists(), "portal/translations/en/LC_MESSAGES/messages.mo missing: run make"
    with MO.open("rb") as f:
        compiled = read_mo(f)
    source = read(PO)
    assert {(m.context, m.id): m.string for m in compiled if m.id} == {
        (m.context, m.id): m.string for m in source if m.id
    }, "messages.mo is older than messages.po: run make (pybabel compile)"


def test_msgids_are_the_japanese_source_texts():
    """Japanese stays the source language: message ids are the Japanese texts."""
    catalogue = read(PO)
    assert catalogue.locale_identifier == "en"
    assert ("audit event", "パスワードの変更") in ids(catalogue)
    assert catalogue.get("認証コードが正しくありません。").string == "The code is incorrect."
