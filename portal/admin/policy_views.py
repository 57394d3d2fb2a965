"""二段階認証方式の設定: the operator's policy page, and the shared terminals marked on it.

Saving needs the admin area's recent second step, like every admin change; every change
is audited with the old and new values.
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from .. import audit, sessions
from ..twofactor import devices
from ..twofactor import policy as rules
from ..web import cookies, policy
from ..web.dialogs import dialog
from ..web.forms import ActionForm
from ..web.htmx import redirect_to
from . import bp
from .common import ask_for_second_step, stale_operator
from .forms import PolicyForm, TerminalForm

# The policy's yes/no fields: checkboxes on the page (an unticked box sends nothing).
FLAGS = ("allow_remember_device", "shared_terminal_skip", "passwordless")


def _filled(row) -> PolicyForm:
    form = PolicyForm(formdata=None)
    for name, value in rules.values(row).items():
        field = getattr(form, name)
        if name in FLAGS:
            field.data = value == "yes"
        elif name == "methods":
            field.data = value.split(",")
        else:
            field.data = value
    return form


def _raw(form: PolicyForm) -> dict[str, str | list[str]]:
    """What was sent, as the policy module reads it (checkboxes as yes/no)."""
    raw: dict[str, str | list[str]] = {
        name: request.form.get(name, "") for name in rules.FIELDS if name != "methods"
    }
    for name in FLAGS:
        raw[name] = "yes" if getattr(form, name).data else "no"
    raw["methods"] = request.form.getlist("methods")
    return raw


def _page(
    form: PolicyForm,
    errors: dict[str, str],
    status: int = 200,
    terminal_form: TerminalForm | None = None,
):
    here = devices.terminal(cookies.terminal_token())
    return (
        render_template(
            "admin/policy.html",
            form=form,
            errors=errors,
            terminals=devices.terminals(),
            this_terminal=here.id if here else None,
            terminal_form=terminal_form or TerminalForm(formdata=None),
            row=policy.current(),
            passkey_problem=not policy.passkeys_possible(),
        ),
        status,
    )


@bp.route("/policy", methods=["GET", "POST"])
def policy_page() -> ResponseReturnValue:
    row = policy.current()
    if request.method == "GET":
        return _page(_filled(row), {})
    if stale_operator():
        return ask_for_second_step(url_for("admin.policy_page"))
    form = PolicyForm()
    if not form.validate_on_submit():
        return _page(form, form.first_errors(), 400)
    clean, errors = rules.validate(_raw(form), path_exists=policy.landing_exists)
    if errors:
        return _page(form, errors, 400)
    changes = rules.save(row, clean, by=current_user.login_id, now=sessions.now())
    if not changes:
        flash(_("変更はありませんでした。"))
        return redirect(url_for("admin.policy_page"))
    audit.record_request(
        "admin.policy_changed", changes={k: list(v) for k, v in changes.items()}
    )  # commits the policy and its audit row together
    if "allow_remember_device" in changes and not row.allow_remember_device:
        count = devices.forget_everyone()
        flash(_("記憶していた端末（%(n)d台）の記憶を解除しました。", n=count))
    flash(_("二段階認証方式の設定を保存しました。"))
    return redirect(url_for("admin.policy_page"))


@bp.route("/policy/terminal", methods=["POST"])
def terminal_mark() -> ResponseReturnValue:
    """Mark the browser the operator is using as a shared office terminal."""
    if stale_operator():
        return ask_for_second_step(url_for("admin.policy_page"))
    form = TerminalForm()
    if not form.validate_on_submit():
        errors = {"label": form.label.errors[0]} if form.label.errors else {}
        return _page(_filled(policy.current()), errors, 400, terminal_form=form)
    token, terminal = devices.mark_terminal(form.label.data, current_user.login_id, sessions.now())
    audit.record_request("admin.terminal_marked", terminal=terminal.id, label=terminal.label)
    flash(_("この端末を共用端末「%(label)s」として登録しました。", label=terminal.label))
    response = redirect_to(url_for("admin.policy_page") + "#terminals")
    cookies.set_terminal(response, token)
    return response


@bp.route("/policy/terminals/<int:terminal_id>/remove", methods=["GET", "POST"])
def terminal_remove(terminal_id: int) -> ResponseReturnValue:
    here = url_for("admin.terminal_remove", terminal_id=terminal_id)
    found = devices.terminal_by_id(terminal_id)
    if found is None:
        abort(404)
    if stale_operator():
        return ask_for_second_step(here)
    form = ActionForm()
    if form.validate_on_submit():
        devices.unmark_terminal(terminal_id)
        audit.record_request("admin.terminal_removed", terminal=terminal_id, label=found.label)
        flash(_("共用端末「%(label)s」の登録を解除しました。", label=found.label))
        response = redirect_to(url_for("admin.policy_page") + "#terminals")
        if devices.terminal(cookies.terminal_token()) is None:
            cookies.clear_terminal(response)  # this browser was that terminal (or none)
        return response
    return dialog("admin/_terminal_remove.html", form=form, action=here, terminal=found)
