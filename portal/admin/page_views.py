"""Member pages (the guide's FAQ Q4): operators write simple HTML pages that signed-in
members read at /pages/<slug>. The body is sanitised on save (see :mod:`portal.pages`);
saving and deleting need a recent second step, like every admin change."""

from __future__ import annotations

from flask import abort, flash, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from .. import audit, pages
from ..models import MemberPage
from ..web.dialogs import dialog
from ..web.htmx import redirect_to
from . import bp
from .common import ask_for_second_step, stale_operator
from .forms import DeletePageForm, PageForm


def _page_or_404(page_id: int) -> MemberPage:
    if page_id > 2**63 - 1:
        abort(404)  # larger than any database integer
    page = pages.get(page_id)
    if page is None:
        abort(404)
    return page


@bp.route("/pages")
def pages_list() -> ResponseReturnValue:
    return render_template("admin/pages.html", pages=pages.all_pages())


def _editor(page: MemberPage | None, here: str) -> ResponseReturnValue:
    if stale_operator():
        return ask_for_second_step(here)
    form = PageForm(obj=page if request.method == "GET" else None)
    if form.validate_on_submit():
        try:
            saved = pages.save(
                page,
                title=form.title.data,
                slug=form.slug.data,
                body=form.body.data or "",
                by=current_user.login_id,
                listed=form.listed.data,
                menu_order=form.order(),
            )
        except pages.PageError as refused:
            field = form.menu_order if refused.field == "menu_order" else form.slug
            field.errors.append(str(refused))
        else:
            audit.record_request(
                "admin.page_saved",
                slug=saved.slug,
                page_id=saved.id,
                created=page is None,
                listed=saved.listed,
                menu_order=saved.menu_order,
            )
            flash(_("メンバーページ「%(title)s」を保存しました。", title=saved.title))
            return redirect_to(url_for("admin.pages_list"))
    return render_template(
        "admin/page_form.html", form=form, page=page, action=here, errors=form.first_errors()
    )


@bp.route("/pages/new", methods=["GET", "POST"])
def page_new() -> ResponseReturnValue:
    return _editor(None, url_for("admin.page_new"))


@bp.route("/pages/<int:page_id>/edit", methods=["GET", "POST"])
def page_edit(page_id: int) -> ResponseReturnValue:
    page = _page_or_404(page_id)
    return _editor(page, url_for("admin.page_edit", page_id=page.id))


@bp.route("/pages/<int:page_id>/delete", methods=["GET", "POST"])
def page_delete(page_id: int) -> ResponseReturnValue:
    """A confirmation dialog (htmx swaps it into the page's <dialog>; without JavaScript
    it is a page of its own), then the deletion."""
    page = _page_or_404(page_id)
    here = url_for("admin.page_delete", page_id=page.id)
    if stale_operator():
        return ask_for_second_step(here)
    form = DeletePageForm()
    if form.validate_on_submit():
        slug, title = page.slug, page.title
        pages.delete(page)
        audit.record_request("admin.page_deleted", slug=slug, page_id=page_id)
        flash(_("メンバーページ「%(title)s」を削除しました。", title=title))
        return redirect_to(url_for("admin.pages_list"))
    return dialog("admin/_page_delete.html", form=form, action=here, member_page=page)
