"""パスワード再設定のリンクを送る: an operator mails a member the same single-use link
as パスワードをお忘れの方 (a member who cannot even remember their login ID calls the
office). The operator never sees the link or the new password; the mail says an
operator sent it, and the member still needs their second step to sign in. A member
who has no password yet (imported) gets the invitation instead (portal/invitations.py)."""

from __future__ import annotations

from flask import abort, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from .. import audit, invitations, members, notify, password_reset, sessions
from ..models import Member
from ..web.dialogs import dialog, done
from ..web.forms import ActionForm
from . import bp
from .common import ask_for_second_step, stale_operator

TITLE = _l("パスワード再設定のリンク")
INVITE_TITLE = _l("招待メール")
MINUTES = password_reset.MINUTES


def _member_or_404(login_id: str) -> Member:
    found = members.find(login_id) if members.LOGIN_ID_RE.fullmatch(login_id) else None
    if found is None:
        abort(404)
    return found


@bp.route("/members/<login_id>/password-reset", methods=["GET", "POST"])
def member_password_reset(login_id: str) -> ResponseReturnValue:
    m = _member_or_404(login_id)
    here = url_for("admin.member_password_reset", login_id=m.login_id)
    back = url_for("admin.member_detail", login_id=m.login_id)
    if not m.email:
        # Nothing is issued, mailed or audited: there is nowhere to send the link.
        return done(
            str(TITLE),
            _(
                "このメンバーにはメールアドレスが登録されていないため、"
                "パスワード再設定のリンクを送れません。"
            ),
            close_url=back,
        )
    if stale_operator():
        return ask_for_second_step(here)
    invite_days = 0 if members.has_password(m) else invitations.invite_lifetime().days
    form = ActionForm()
    if form.validate_on_submit():
        sent = invitations.send_link(m, sessions.now(), requested_by=current_user.login_id)
        event, detail = sent.audit()
        audit.record_request(event, subject=m, **detail)
        if not sent.mailed:
            return done(
                str(TITLE),
                _("メールを送信できませんでした。しばらくしてからもう一度お試しください。"),
                close_url=back,
            )
        who = {
            "name": m.name or m.login_id,
            "login_id": m.login_id,
            "email": notify.mask_email(m.email),
        }
        if sent.kind == "invitation":
            title, said = (
                INVITE_TITLE,
                _(
                    "%(name)s（%(login_id)s）の登録メールアドレス %(email)s に、"
                    "招待メール（パスワード設定のリンク、有効期限%(n)d日）を送信しました。",
                    n=sent.days,
                    **who,
                ),
            )
        else:
            title, said = (
                TITLE,
                _(
                    "%(name)s（%(login_id)s）の登録メールアドレス %(email)s に、"
                    "パスワード再設定のリンクを送信しました（有効期限%(n)d分）。",
                    n=sent.minutes,
                    **who,
                ),
            )
        return done(str(title), said, close_url=back)
    return dialog(
        "admin/_password_reset.html",
        form=form,
        action=here,
        m=m,
        minutes=MINUTES,
        invite_days=invite_days,
    )
