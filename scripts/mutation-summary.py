#!/usr/bin/env python3
"""Summarise a mutmut run of portal/twofactor/ against tests/MUTATION.md (`make mutation`).

Reads mutmut's result files (mutants/**/*.meta) and the mutant names listed in
tests/MUTATION.md: those under "## Equivalent mutants" are left out of the score, those
under "## Not killed" are known survivors. Prints the totals and the score
killed / (total - equivalent), and names every survivor that MUTATION.md does not list
(and every listed one that is no longer a survivor), so the list stays true.
Exits 1 when the score is below --min (default 95).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

# mutmut's exit codes (mutmut/stats.py)
STATUS = {0: "survived", 1: "killed", 3: "killed", 5: "no tests", 33: "no tests", 34: "skipped"}
TIMEOUT = {24, -24, 36, 152, 255}
NAME = re.compile(r"portal\.twofactor\.\S+?__mutmut_\d+")


def status(code: int | None) -> str:
    if code is None:
        return "not checked"
    if code in TIMEOUT:
        return "timeout"
    return STATUS.get(code, "suspicious")


def listed(markdown: str, heading: str) -> set[str]:
    """Mutant names in the section that starts with ``heading`` (up to the next ##)."""
    match = re.search(rf"^{re.escape(heading)}.*?$(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    return set(NAME.findall(match.group(1))) if match else set()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", default="mutants/portal/twofactor")
    parser.add_argument("--notes", default="tests/MUTATION.md")
    parser.add_argument("--min", type=float, default=95.0)
    args = parser.parse_args()

    results: dict[str, str] = {}
    for meta in sorted(Path(args.mutants).glob("*.meta")):
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            results[name] = status(code)
    if not results:
        print(f"no mutmut results under {args.mutants}: run `make mutation` first")
        return 1
    notes = Path(args.notes).read_text(encoding="utf-8")
    equivalent = listed(notes, "## Equivalent mutants")
    known = listed(notes, "## Not killed")

    counts = Counter(results.values())
    survivors = {name for name, s in results.items() if s not in ("killed", "timeout")}
    equivalent_now = equivalent & survivors
    total = len(results)
    scored = total - len(equivalent_now)
    killed = counts["killed"]
    print(f"mutants {total}: " + ", ".join(f"{s} {n}" for s, n in sorted(counts.items())))
    print(f"equivalent (tests/MUTATION.md) {len(equivalent_now)}")
    score = 100 * killed / scored
    print(f"score: killed / (total - equivalent) = {killed} / {scored} = {score:.1f} %")
    print(
        f"       (killed + timeout) / (total - equivalent) = "
        f"{killed + counts['timeout']} / {scored} = "
        f"{100 * (killed + counts['timeout']) / scored:.1f} %"
    )
    unlisted = sorted(survivors - equivalent - known)
    stale = sorted((equivalent | known) - survivors)
    for name in unlisted:
        print(f"NOT IN tests/MUTATION.md: {name} ({results[name]})")
    for name in stale:
        print(f"listed in tests/MUTATION.md but {results.get(name, 'gone')}: {name}")
    return 0 if score >= args.min else 1


if __name__ == "__main__":
    sys.exit(main())
