"""axe-core in the browser tests, plus the checks of WCAG 2.2 AA that axe leaves to people.

axe-core is vendored in tests/vendor/ (MPL-2.0, licence beside it; never shipped: tests/
is not part of the package). The portal's CSP allows no inline script, so
``page.add_script_tag`` is refused; the source is run with ``page.evaluate`` instead
(the DevTools protocol's Runtime.evaluate, which the page's CSP does not govern).
test_browser_a11y checks both facts, so a change in either shows.

``assert_accessible(page, what)`` runs axe over the whole document (an open dialog and
the page behind it) and fails on any violation of any impact or any "needs review" result
of an unknown kind, then checks what axe cannot: buttons at least 24 x 24 px and other
targets sized or spaced as WCAG 2.5.8 asks, form errors announced and tied to their
field, and status badges saying their state in words and an icon, not colour alone.
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page

AXE_VERSION = "4.14.1"
AXE_FILE = Path(__file__).resolve().parent / "vendor" / f"axe-core-{AXE_VERSION}.min.js"
# WCAG 2.0, 2.1 and 2.2 at levels A and AA, and Deque's best practices (landmarks, one
# h1, heading order, ...). WCAG 2.2 added no level-A rule to axe, so it has no wcag22a tag.
WCAG = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa")
TAGS = (*WCAG, "best-practice")
# Rules switched off, each with its reason. Nothing is switched off today.
DISABLED_RULES: dict[str, str] = {}
# "Needs review" results are not violations, but each must be one of these known kinds,
# or the audit fails: axe cannot tell the colour behind text drawn over the signed-out
# pages' soft gradient, beside a ::before icon, under the dialog's sticky ×, or in the
# overview's chart (SVG text, one-digit axis labels). A person checked those colours:
# text, muted text and links keep at least 4.5:1 on every colour there.
UNDECIDED_CONTRAST = (
    "due to a background gradient",
    "due to a pseudo element",
    "because it is overlapped by another element",
    "because element contains an image node",
    "content is too short to determine if it is actual text content",
)
# The smallest target WCAG 2.5.8 (AA) allows, in CSS px.
TARGET_MIN = 24

_source: str | None = None


def axe_source() -> str:
    global _source
    if _source is None:
        _source = AXE_FILE.read_text(encoding="utf-8")
    return _source


def load_axe(page: Page) -> None:
    """Put axe into the page (each navigation needs it again)."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(axe_source())


def axe_results(page: Page, tags: tuple[str, ...] = TAGS) -> dict:
    load_axe(page)
    return page.evaluate(
        """([tags, disabled]) => axe.run(document, {
            runOnly: {type: "tag", values: tags},
            rules: Object.fromEntries(disabled.map(id => [id, {enabled: false}])),
            resultTypes: ["violations", "incomplete"],
        })""",
        [list(tags), list(DISABLED_RULES)],
    )


def unexplained(incomplete: list[dict]) -> list[dict]:
    """The "needs review" results that are not one of the known kinds above."""
    found = []
    for result in incomplete:
        nodes = [
            node
            for node in result["nodes"]
            if result["id"] != "color-contrast"
            or not any(
                reason in check["message"] for check in node["any"] for reason in UNDECIDED_CONTRAST
            )
        ]
        if nodes:
            found.append(result | {"nodes": nodes})
    return found


def describe_violations(violations: list[dict]) -> str:
    """One paragraph per rule: id, impact, what it asks, and each element (its selector
    and HTML) with axe's explanation."""
    lines: list[str] = []
    for v in violations:
        lines.append(f"- {v['id']} ({v['impact']}): {v['help']} <{v['helpUrl']}>")
        for node in v["nodes"]:
            target = " ".join(
                " >> ".join(t) if isinstance(t, list) else str(t) for t in node["target"]
            )
            lines.append(f"    at {target}")
            lines.append(f"       {node['html'][:300]}")
            summary = (node.get("failureSummary") or "").replace("\n", " / ")
            if summary:
                lines.append(f"       {summary[:400]}")
    return "\n".join(lines)


# Controls someone clicks or taps: what WCAG 2.5.8 calls targets.
_TARGETS = (
    "a[href], button, input:not([type=hidden]), select, textarea, summary, "
    "[role=button], [role=link], [tabindex]:not([tabindex='-1'])"
)

_TARGET_SIZES = """([selector, minimum]) => {
  const visible = el => {
    const r = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && style.visibility !== "hidden"
      && !el.closest("[inert]") && el.checkVisibility();
  };
  // Open modal dialog: only its controls can be reached.
  const modal = document.querySelector("dialog[open]:modal");
  const all = [...document.querySelectorAll(selector)].filter(
    el => visible(el) && (!modal || modal.contains(el)));
  // WCAG 2.5.8's "inline" exception: a link inside a sentence (its block has words
  // outside any control), sized by the line of text.
  const inline = el => {
    if (getComputedStyle(el).display !== "inline") return false;
    const block = el.parentElement.closest("p, li, dd, dt, td, th, label, div");
    if (!block) return false;
    const words = document.createTreeWalker(block, NodeFilter.SHOW_TEXT);
    for (let node = words.nextNode(); node; node = words.nextNode()) {
      if (node.textContent.trim() && !node.parentElement.closest(selector)) return true;
    }
    return false;
  };
  const rectOf = el => {
    const r = el.getBoundingClientRect();
    return {x: r.left, y: r.top, w: r.width, h: r.height};
  };
  // The portal's own rule, stricter than WCAG: a button is never smaller, spaced or not.
  const button = el => el.matches("button, summary, [role=button], input[type=submit]");
  const describe = (el, r) =>
    `${el.outerHTML.slice(0, 160)} is ${r.w.toFixed(1)} x ${r.h.toFixed(1)} px`;
  const small = [];
  const boxes = all.map(el => ({el, r: rectOf(el)}));
  for (const {el, r} of boxes) {
    if (r.w >= minimum - 0.5 && r.h >= minimum - 0.5) continue;
    if (button(el)) {
      small.push(describe(el, r));
      continue;
    }
    if (inline(el)) continue;
    // The spacing exception: a 24 px circle centred on the target touches no other
    // target, nor the circle of another undersized one.
    const cx = r.x + r.w / 2, cy = r.y + r.h / 2, radius = minimum / 2;
    const crowded = boxes.some(({el: other, r: o}) => {
      if (other === el || other.contains(el) || el.contains(other)) return false;
      const nx = Math.max(o.x, Math.min(cx, o.x + o.w));
      const ny = Math.max(o.y, Math.min(cy, o.y + o.h));
      if ((nx - cx) ** 2 + (ny - cy) ** 2 < radius ** 2) return true;
      const small = o.w < minimum - 0.5 || o.h < minimum - 0.5;
      const ox = o.x + o.w / 2, oy = o.y + o.h / 2;
      return small && !inline(other) && (ox - cx) ** 2 + (oy - cy) ** 2 < (2 * radius) ** 2;
    });
    if (crowded) small.push(describe(el, r));
  }
  return small;
}"""


def small_targets(page: Page) -> list[str]:
    """Buttons under 24 x 24 px; other controls (links, checkboxes) under it that are
    neither inline in a sentence nor spaced clear of every other control (WCAG 2.5.8)."""
    return page.evaluate(_TARGET_SIZES, [_TARGETS, TARGET_MIN])


_ERRORS = """() => {
  const problems = [];
  const visible = el => el.checkVisibility() && el.textContent.trim() !== "";
  const announced = el => !!el.closest('[role=alert], [aria-live=assertive], [aria-live=polite]');
  // Errors of forms and fields (and the passkey prompts' messages): read out when they
  // appear, and named by the field they belong to.
  const errors = [...document.querySelectorAll("form .error, .field .error, [data-passkey-error]")]
    .filter(visible);
  for (const error of errors) {
    if (!announced(error)) problems.push(`not announced: ${error.outerHTML.slice(0, 200)}`);
    const field = error.closest(".field");
    if (field) {
      const inputs = [...field.querySelectorAll("input, select, textarea")];
      const tied = error.id && inputs.some(i =>
        (i.getAttribute("aria-describedby") || "").split(/\\s+/).includes(error.id));
      if (!tied) problems.push(`not tied to its field: ${error.outerHTML.slice(0, 200)}`);
    }
  }
  // A field marked invalid names its message.
  for (const input of document.querySelectorAll('[aria-invalid="true"]')) {
    const ids = (input.getAttribute("aria-describedby") || "").split(/\\s+/).filter(Boolean);
    const messages = ids.map(id => document.getElementById(id)).filter(e => e && visible(e));
    if (!messages.some(m => m.matches(".error"))) {
      problems.push(`invalid without its message: ${input.outerHTML.slice(0, 200)}`);
    }
  }
  return problems;
}"""


def error_problems(page: Page) -> list[str]:
    return page.evaluate(_ERRORS)


_STATES = """() => {
  // Badges and states (設定済み / 未設定 / 残り n 個, an enabled method's tag): a word,
  // and for the coloured ones an icon too, so nothing is said by colour alone.
  const problems = [];
  const selector = ".badge, .state-on, .state-off, .tag.badge-on, .flash, .notice-box, "
    + "p.notice, .done, .error, .warning";
  for (const el of document.querySelectorAll(selector)) {
    if (!el.checkVisibility()) continue;
    if (el.textContent.trim() === "") problems.push(`no words: ${el.outerHTML.slice(0, 200)}`);
    const before = getComputedStyle(el, "::before");
    const icon = before.content !== "none" && before.display !== "none"
      && (before.maskImage || before.webkitMaskImage || "none") !== "none";
    const plain = el.matches(".method p.state-on");  // a date line in muted grey, no colour
    if (!icon && !plain) problems.push(`no icon: ${el.outerHTML.slice(0, 200)}`);
  }
  return problems;
}"""


def colour_only_problems(page: Page) -> list[str]:
    return page.evaluate(_STATES)


def assert_accessible(page: Page, what: str, tags: tuple[str, ...] = TAGS) -> None:
    """axe-core finds no violation of any impact, and the manual checks pass. ``tags``:
    the rule sets (a printed sheet is held to WCAG alone: best practice's landmark and
    heading rules describe a page on screen)."""
    # Let a dialog's entrance and any hover transition end first: axe measures colours.
    page.evaluate("Promise.allSettled(document.getAnimations().map(a => a.finished))")
    results = axe_results(page, tags)
    violations = results["violations"]
    problems = []
    if violations:
        problems.append(f"axe-core {AXE_VERSION}:\n{describe_violations(violations)}")
    if undecided := unexplained(results["incomplete"]):
        problems.append(f"axe-core could not decide:\n{describe_violations(undecided)}")
    for title, found in (
        ("targets under 24 x 24 px", small_targets(page)),
        ("errors", error_problems(page)),
        ("information by colour alone", colour_only_problems(page)),
    ):
        if found:
            problems.append(f"{title}:\n" + "\n".join(f"- {p}" for p in found))
    assert not problems, f"{what} ({page.url}):\n" + "\n".join(problems)
