"""Member pages: operators' HTML pages inside the member area (the guide's FAQ Q4).

The body is sanitised with nh3 when it is saved (an allow-list of tags and attributes,
http/https/mailto and relative URLs only), and the replacement keywords are filled in
only when a signed-in member views the page. No request objects here: the views pass
the member and the settings URL in.

Keywords survive sanitising: before cleaning, each keyword is swapped for a placeholder
of letters and digits (a plain relative URL or word that no nh3 version rewrites, made
unguessable per call), and swapped back afterwards. So ``<a href="%url/rel:tfa:setting%">``
is stored as written, whatever nh3 makes of ``%url/rel:`` (a scheme? a percent-escape?).
"""

from __future__ import annotations

import re
import secrets

import nh3
from flask_babel import lazy_gettext as _l
from markupsafe import Markup, escape
from sqlalchemy.exc import IntegrityError

from .extensions import db
from .models import Member, MemberPage, utcnow

SETTINGS_URL = "%url/rel:tfa:setting%"
MEMBER_NAME = "%member:name%"
MEMBER_LOGIN_ID = "%member:login_id%"
KEYWORDS = (SETTINGS_URL, MEMBER_NAME, MEMBER_LOGIN_ID)
KEYWORD_RE = re.compile("|".join(re.escape(k) for k in KEYWORDS))

SLUG_RE = re.compile(r"[a-z0-9-]{1,64}")
MAX_TITLE = 200
MAX_BODY = 100_000
MAX_MENU_ORDER = 999

TAGS = {
    "p",
    "br",
    "hr",
    "h2",
    "h3",
    "h4",
    "ul",
    "ol",
    "li",
    "a",
    "strong",
    "em",
    "code",
    "pre",
    "blockquote",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "img",
}
# "*": no attribute on every tag (nh3 would otherwise allow lang and title everywhere).
ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt"}, "*": set()}
URL_SCHEMES = {"http", "https", "mailto"}
LINK_REL = "noopener noreferrer"
# Elements removed together with their content (the rest lose the tag, keep the text).
CLEAN_CONTENT_TAGS = {
    "script",
    "style",
    "iframe",
    "frame",
    "frameset",
    "noframes",
    "noscript",
    "noembed",
    "object",
    "embed",
    "svg",
    "math",
    "template",
    "textarea",
    "select",
    "title",
    "xmp",
}


class PageError(ValueError):
    """A page cannot be saved as given; ``field`` says which form field is at fault."""

    def __init__(self, field: str, message: object) -> None:
        super().__init__(str(message))
        self.field = field


def _clean(html: str) -> str:
    return nh3.clean(
        html,
        tags=TAGS,
        clean_content_tags=CLEAN_CONTENT_TAGS,
        attributes=ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel=LINK_REL,
        strip_comments=True,
    )


def sanitise(body: str, keywords: re.Pattern[str] = KEYWORD_RE) -> str:
    """The body with everything outside the allow-list stripped, keywords kept as
    written. ``keywords``: what counts as one (forms add ``%form:FIELD%``)."""
    nonce = secrets.token_hex(8)
    placeholders: dict[str, str] = {}

    def hold(match: re.Match[str]) -> str:
        return placeholders.setdefault(match.group(0), f"portalkw{nonce}n{len(placeholders)}")

    cleaned = _clean(keywords.sub(hold, body))
    for keyword, placeholder in placeholders.items():
        cleaned = cleaned.replace(placeholder, keyword)
    return cleaned


def fill(body: str, values: dict[str, str]) -> Markup:
    """``body`` with each keyword in ``values`` replaced by its (already escaped) text,
    cleaned once more: a value that lands in an href (``<a href="%member:name%">`` with
    a name ``javascript:…``) or a row stored without :func:`sanitise` still cannot run
    script."""
    pattern = re.compile("|".join(re.escape(k) for k in values)) if values else None
    filled = pattern.sub(lambda m: values[m.group(0)], body or "") if pattern else body or ""
    # Safe to mark: nh3's output, built from escaped values, is the allow-list only.
    return Markup(_clean(filled))  # noqa: S704


def member_values(member: Member, settings_url: str) -> dict[str, str]:
    """The member keywords' texts for ``member``, escaped: the settings URL as given
    (root-relative), the name and login ID."""
    return {
        SETTINGS_URL: str(escape(settings_url)),
        MEMBER_NAME: str(escape(member.name or "")),
        MEMBER_LOGIN_ID: str(escape(member.login_id)),
    }


def render_keywords(body: str, member: Member, settings_url: str) -> Markup:
    """The stored body with the keywords filled in for ``member`` (signed in; the view
    makes sure)."""
    return fill(body, member_values(member, settings_url))


def valid_slug(slug: str) -> bool:
    return bool(SLUG_RE.fullmatch(slug or ""))


def find(slug: str) -> MemberPage | None:
    if not valid_slug(slug):
        return None
    return db.session.scalar(db.select(MemberPage).where(MemberPage.slug == slug))


def get(page_id: int) -> MemberPage | None:
    return db.session.get(MemberPage, page_id)


def listed_pages() -> list[MemberPage]:
    """The pages an operator chose to list on マイページ and in the menu, in their order
    (then by title, then oldest first), in one query."""
    return list(
        db.session.scalars(
            db.select(MemberPage)
            .where(MemberPage.listed.is_(True))
            .order_by(MemberPage.menu_order, MemberPage.title, MemberPage.id)
        )
    )


def all_pages() -> list[MemberPage]:
    return list(
        db.session.scalars(
            db.select(MemberPage).order_by(MemberPage.updated_at.desc(), MemberPage.id.desc())
        )
    )


def slug_taken(slug: str, except_id: int | None = None) -> bool:
    query = db.select(MemberPage.id).where(MemberPage.slug == slug)
    if except_id is not None:
        query = query.where(MemberPage.id != except_id)
    return db.session.scalar(query) is not None


SLUG_TAKEN = _l("このスラッグは既に使われています。")
SLUG_INVALID = _l("スラッグは1〜64文字の半角英小文字・数字・ハイフン（-）で入力してください。")
MENU_ORDER_INVALID = _l("表示順は0〜999の半角数字で入力してください。")


def save(
    page: MemberPage | None,
    *,
    title: str,
    slug: str,
    body: str,
    by: str,
    listed: bool = False,
    menu_order: int = 0,
) -> MemberPage:
    """Create (``page`` None) or update a page; the body is sanitised here. ``listed``
    puts it on マイページ and in the menu, at ``menu_order`` (0–999, smallest first).
    Raises :class:`PageError` when the slug is taken (also when another save won the
    race) or the order is out of range."""
    if not valid_slug(slug):
        raise PageError("slug", SLUG_INVALID)
    if isinstance(menu_order, bool) or not 0 <= menu_order <= MAX_MENU_ORDER:
        raise PageError("menu_order", MENU_ORDER_INVALID)
    if slug_taken(slug, page.id if page is not None else None):
        raise PageError("slug", SLUG_TAKEN)
    if page is None:
        page = MemberPage(created_at=utcnow())
        db.session.add(page)
    page.title = title
    page.slug = slug
    page.body = sanitise(body)
    page.listed = bool(listed)
    page.menu_order = menu_order
    page.updated_at = utcnow()
    page.updated_by = by[:64]
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise PageError("slug", SLUG_TAKEN) from None
    return page


def delete(page: MemberPage) -> None:
    db.session.delete(page)
    db.session.commit()
