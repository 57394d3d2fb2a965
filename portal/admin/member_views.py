"""Member list (with the members *without* 2FA the guide's vendor cannot list), CSV
export, member detail and the reset (無効化)."""

from __future__ import annotations

from flask import abort, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import format_datetime
from flask_babel import gettext as _
from flask_login import current_user

from .. import audit, invitations, member_resets, members, notices, sessions, twofactor
from ..extensions import db
from ..models import AuditEvent, ContactMethod, Member
from ..queries import METHODS, MemberFilter, describe, iter_members, member_page
from ..texts import METHOD_SHORT
from ..twofactor import devices, lockout, passkeys, recovery
from ..web import audit_text
from ..web.dialogs import dialog, done
from ..web.forms import ActionForm, ConfirmForm
from ..web.htmx import render
from . import bp
from .common import PAGE_SIZE, ask_for_second_step, csv_response, id_arg, stale_operator


@bp.route("/members")
def members_list() -> ResponseReturnValue:
    flt = MemberFilter.from_args(request.args)
    page = member_page(flt, id_arg("after"), id_arg("before"), PAGE_SIZE)
    return render(
        "admin/members.html",
        "admin/_members_table.html",
        flt=flt,
        result=page,
        methods=METHODS,
        method_short=METHOD_SHORT,
    )


@bp.route("/members.csv")
def members_csv() -> ResponseReturnValue:
    flt = MemberFilter.from_args(request.args)
    # Every member's address leaves the portal: who took it, when, with which filter.
    audit.record_request("admin.export", export="members.csv", filters=flt.as_args())

    def fmt(value) -> str:
        return format_datetime(value, "yyyy-MM-dd HH:mm") if value else ""

    rows = (
        [
            row.member.login_id,
            row.member.name,
            row.member.email,
            audit_text.join_words(audit_text.method_name(kind) for kind in row.methods),
            fmt(row.set_up_on),
            fmt(row.member.last_second_step_at),
            row.recovery_left if row.methods else "",
            row.passkeys if row.methods else "",
        ]
        for row in iter_members(flt)
    )
    header = [
        _("ログインID"),
        _("氏名"),
        _("メールアドレス"),
        _("二段階認証の方法"),
        _("設定日"),
        _("最終二段階認証"),
        _("リカバリーコード残数"),
        _("パスキー数"),  # last: scripts reading the columns before it by position still work
    ]
    return csv_response("members.csv", header, rows)


def _member_or_404(login_id: str) -> Member:
    found = members.find(login_id) if members.LOGIN_ID_RE.fullmatch(login_id) else None
    if found is None:
        abort(404)
    return found


@bp.route("/members/<login_id>")
def member_detail(login_id: str) -> ResponseReturnValue:
    m = _member_or_404(login_id)
    row = describe([m])[0]
    cred = twofactor.totp_credential(m)
    contacts = {
        c.kind: c
        for c in db.session.scalars(db.select(ContactMethod).where(ContactMethod.member_id == m.id))
    }
    events = list(
        db.session.scalars(
            db.select(AuditEvent)
            .where(AuditEvent.subject_id == m.id)
            .order_by(AuditEvent.id.desc())
            .limit(20)
        )
    )
    return render(
        "admin/member.html",
        "admin/member.html",
        m=m,
        row=row,
        cred=cred,
        contacts=contacts,
        keys=passkeys.listed(m),
        events=events,
        event_labels=audit.EVENTS,
        method_short=METHOD_SHORT,
        recovery_left=recovery.remaining(m),
        is_self=m.id == current_user.id,
        remembered=devices.listed(m, sessions.now()),
        code_lock=lockout.current_lock(m, sessions.now(), lockout.CODE),
        recovery_lock=lockout.current_lock(m, sessions.now(), lockout.RECOVERY),
        has_password=members.has_password(m),
        invite_days=invitations.invite_lifetime().days,
    )


@bp.route("/members/<login_id>/reset", methods=["GET", "POST"])
def member_reset(login_id: str) -> ResponseReturnValue:
    """無効化: remove every method, the recovery codes and sessions of one member."""
    m = _member_or_404(login_id)
    here = url_for("admin.member_reset", login_id=m.login_id)
    if m.id == current_user.id:
        return done(
            _("二段階認証の無効化"),
            _("自分の二段階認証は、二段階認証設定ページで変更してください。"),
        )
    back = url_for("admin.member_detail", login_id=m.login_id)
    if not twofactor.has_two_factor(m):
        return _nothing_to_reset(back)
    if stale_operator():
        return ask_for_second_step(here)
    form = ConfirmForm()
    error = None
    if form.validate_on_submit():
        if form.confirm.data:
            try:
                member_resets.reset_second_step(
                    m,
                    actor=current_user._get_current_object(),
                    actor_label=current_user.login_id,
                    now=sessions.now(),
                    **notices.request_details(),
                )
            except twofactor.NoSecondStep:
                return _nothing_to_reset(back)  # another operator's reset came first
            return done(
                _("二段階認証の無効化"),
                _(
                    "%(name)s（%(login_id)s）の二段階認証を無効化しました。",
                    name=m.name,
                    login_id=m.login_id,
                ),
                close_url=back,
            )
        error = _("無効化するには「はい、無効化して問題ありません。」にチェックを入れてください。")
    return dialog("admin/_reset.html", form=form, error=error, action=here, m=m)


def _nothing_to_reset(back: str) -> ResponseReturnValue:
    """A second 無効化 (a stale page, another operator's reset, a member who never set
    2FA up) changes nothing: no session ends, no mail, no audit row."""
    return done(
        _("二段階認証の無効化"), _("このメンバーは二段階認証を設定していません。"), close_url=back
    )


@bp.route("/members/<login_id>/unlock", methods=["GET", "POST"])
def member_unlock(login_id: str) -> ResponseReturnValue:
    """Lift the member's second-step locks, the permanent one (100 failures) included.
    The member is told by mail; the action is audited."""
    m = _member_or_404(login_id)
    here = url_for("admin.member_unlock", login_id=m.login_id)
    if stale_operator():
        return ask_for_second_step(here)
    form = ActionForm()
    if form.validate_on_submit():
        was_blocked = m.tfa_blocked_at is not None
        lockout.clear(m)
        audit.record_request("admin.unlock_2fa", subject=m, was_blocked=was_blocked)
        notices.send(m, "tfa_unlocked", now=sessions.now(), **notices.request_details())
        return done(
            _("ロックの解除"),
            _(
                "%(name)s（%(login_id)s）の二段階認証のロックを解除しました。",
                name=m.name or m.login_id,
                login_id=m.login_id,
            ),
        )
    return dialog("admin/_unlock.html", form=form, action=here, m=m)
