"""Shape checks for what members type. The truth of a code is checked elsewhere."""

from __future__ import annotations

import re
import unicodedata

_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015\u2212\u30fc]+")
_SIX_DIGITS = re.compile(r"[0-9]{6}")


def normalise(raw: str | None) -> str:
    """NFKC first, so full-width digits (１２３４５６) from Japanese IMEs become ASCII,
    then drop the spaces and hyphens people paste in."""
    if not raw:
        return ""
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", raw))


def six_digits(raw: str | None) -> str | None:
    """The code as 6 ASCII digits, or None for anything else (which counts as wrong)."""
    code = normalise(raw)
    return code if _SIX_DIGITS.fullmatch(code) else None
