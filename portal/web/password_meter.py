"""The live password strength meter (ASVS 2.1.8), shared by the password change and the
パスワードをお忘れの方 page: the same judgement as the final check, rendered as the
``#password-strength`` partial the new-password field swaps in as the member types."""

from __future__ import annotations

from collections.abc import Sequence

from flask import render_template
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from .. import members

STRENGTH_LABELS = {
    0: _l("とても弱い"),
    1: _l("弱い"),
    2: _l("やや弱い"),
    3: _l("十分"),
    4: _l("強い"),
}


def render_meter(password: str, user_inputs: Sequence[str]) -> str:
    """The meter for ``password``; ``user_inputs`` (login ID, name, email) count as
    known words. Empty input shows the advice instead of a score."""
    if not password:
        return render_template("settings/_password_strength.html", score=None)
    if not members.PASSWORD_MIN <= len(password) <= members.PASSWORD_MAX:
        score, reason = (
            0,
            _(
                "%(min)d文字以上%(max)d文字以内にしてください。",
                min=members.PASSWORD_MIN,
                max=members.PASSWORD_MAX,
            ),
        )
    else:
        score, reason = members.strength(password, user_inputs)
    return render_template(
        "settings/_password_strength.html",
        score=score,
        label=STRENGTH_LABELS[score],
        reason=reason,
    )
