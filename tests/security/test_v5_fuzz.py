"""OWASP ASVS 4.0.3, V5 Validation: property-based fuzzing of every form and every query
parameter of the portal, for a visitor, a pending sign-in (password done, app code
owed), a signed-in member with 2FA (fresh second step) and an operator.

Two properties, checked after every generated request:

1. never a server error: no status >= 500, no exception out of a view (the test app
   propagates them), and no response header a WSGI server would refuse (non-Latin-1 or
   a line break: gunicorn drops such a response, see test_v5_input);
2. never a changed record: the member rows, authenticator credentials, contact methods,
   recovery codes and member pages are snapshotted before and after each request and
   must be equal, except for the few changes that the input makes valid by design of
   the portal (each is listed and justified in :func:`expected_state`). The strategies
   never produce a correct password, a valid code or a ticked confirmation of a
   destructive action, so those changes are practically impossible.

Routes are discovered from ``app.url_map``; converters are filled with sample values
(each option of an ``any(...)`` converter) and, where they are strings or integers,
fuzzed themselves. Field names come from the forms each view uses (the mapping is
checked against the url map, the form classes and the templates by
``test_v5_fuzz_covers_every_post_route_form_and_template_field``), plus the field
names of every other form and unknown names; query parameters are those the views read.
Each example of ``test_v5_fuzz`` sweeps one group of routes: one generated request per
route and method, so every route is fuzzed for every identity in every run.

``next`` only matters after a successful sign-in, which the fuzzing never reaches (no
valid password or code): ``test_v5_fuzz_next_through_a_real_sign_in`` signs in for real
with an arbitrary ``next`` and checks the redirect stays on the site.

Run with ``--hypothesis-show-statistics`` to see, per test, the routes and statuses
reached and how often each allowed change happened ("valid change: ..."); with ``-s``
each test also prints how many requests it sent and how often the harness stepped in.
"""

from __future__ import annotations

import copy
import io
import itertools
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from conftest import OPERATOR_PASSWORD, PASSWORD
from flask import request as flask_request
from flask.testing import EnvironBuilder
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from sqlalchemy import update
from werkzeug.datastructures import MultiDict
from werkzeug.routing import AnyConverter, IntegerConverter
from wtforms.fields.core import UnboundField

from portal import create_app, members, pages
from portal.admin.forms import (
    ApiTokenForm,
    DeleteFormForm,
    DeletePageForm,
    FormEditorForm,
    FormOpenForm,
    ImportForm,
    PageForm,
    PolicyForm,
    TerminalForm,
)
from portal.auth.forms import CodeForm as SignInCodeForm
from portal.auth.forms import (
    ForgotForm,
    LoginForm,
    PasskeyForm,
    PasskeyLoginForm,
    RecoveryForm,
)
from portal.extensions import db
from portal.models import ContactMethod, Member, MemberPage, RecoveryCode, TotpCredential
from portal.settings.forms import CodeForm as SettingsCodeForm
from portal.settings.forms import (
    ContactConfirmForm,
    ContactKindForm,
    LocaleForm,
    PasskeyAnswerForm,
    PasskeyNameForm,
    PasswordChangeForm,
    PasswordStrengthForm,
    ProfileForm,
)
from portal.twofactor import lockout
from portal.web.forms import (
    ActionForm,
    ConfirmForm,
    LanguageForm,
    MethodForm,
    NewPasswordForm,
    PortalForm,
    ReauthCodeForm,
    ReauthPasswordForm,
)

ROOT = Path(__file__).resolve().parents[2]
# Keep Hypothesis' example database and caches out of the work tree (.pytest_cache is
# ignored by git); a failure found once is replayed first on the next run.
set_hypothesis_home_dir(ROOT / ".pytest_cache" / "hypothesis")

# --- what the portal reads -------------------------------------------------------------

# The forms each POST view builds from the request (read from the views). The guard
# test below fails when a POST route, a form class or a template field is missing here.
FORMS_BY_ENDPOINT: dict[str, tuple[type[PortalForm], ...]] = {
    "auth.login": (LoginForm,),
    "auth.verify": (SignInCodeForm,),
    "auth.recovery_login": (RecoveryForm,),
    "auth.resend": (ActionForm,),
    "auth.choose_method": (MethodForm,),
    "auth.verify_passkey": (PasskeyForm,),
    "auth.passkey_options": (),  # reads no form: a prompt's options (JSON)
    "auth.passkey_login": (PasskeyLoginForm,),
    "auth.logout": (),  # reads no form at all
    "auth.forgot": (ForgotForm,),  # issues a link: same answer for every value
    "auth.reset_password": (NewPasswordForm,),  # no link opened: nothing to change
    "auth.reset_strength": (NewPasswordForm,),  # judges, stores nothing
    "settings.reauth": (ReauthCodeForm, ReauthPasswordForm),
    "settings.reauth_send": (MethodForm,),
    "settings.reauth_passkey": (PasskeyAnswerForm,),
    "settings.passkey_setup": (PasskeyNameForm,),
    "settings.passkey_register": (PasskeyAnswerForm,),
    "settings.passkey_rename": (PasskeyNameForm,),
    "settings.passkey_remove": (ConfirmForm,),
    "settings.preferred": (MethodForm,),
    "settings.method_disable": (ConfirmForm,),
    "settings.recovery_regenerate": (ActionForm,),
    "settings.totp_setup": (SettingsCodeForm,),
    "settings.totp_replace": (SettingsCodeForm,),
    "settings.contact_setup": (SettingsCodeForm,),
    "settings.contact_send": (ActionForm,),
    "settings.profile": (ProfileForm,),
    "settings.profile_confirm": (ContactConfirmForm,),
    "settings.profile_resend": (ContactKindForm,),
    "settings.profile_cancel": (ContactKindForm,),
    "settings.profile_locale": (LocaleForm,),  # a language and a zone from lists
    "main.set_language": (LanguageForm,),  # a cookie and the member's language
    "settings.password": (PasswordChangeForm,),
    "settings.password_strength": (PasswordStrengthForm,),  # judges, stores nothing
    "settings.end_other_sessions": (ActionForm,),
    "settings.hide_banner": (ActionForm,),  # a session flag only
    "settings.forget_device": (ActionForm,),  # remembered devices: not compared
    "settings.forget_all_devices": (ActionForm,),
    "admin.policy_page": (PolicyForm,),  # random values never make a valid policy
    "admin.terminal_mark": (TerminalForm,),  # marks the fuzzing browser: not compared
    "admin.terminal_remove": (ActionForm,),
    "admin.api_token_new": (ApiTokenForm,),  # makes a token: not compared
    "admin.api_token_revoke": (ActionForm,),
    "api.member_reset": (),  # a token in a header or nothing: no form, no cookie
    "api.member_password_link": (),
    "admin.member_reset": (ConfirmForm,),
    "admin.member_unlock": (ActionForm,),  # lifts locks only: no compared record changes
    "admin.member_password_reset": (ActionForm,),  # issues a link: no compared record changes
    "admin.page_new": (PageForm,),
    "admin.members_import": (ImportForm,),  # without a file nothing is read or written
    "admin.page_edit": (PageForm,),
    "admin.page_delete": (DeletePageForm,),
    "admin.form_new": (FormEditorForm,),  # saves only a whole valid form (parse)
    "admin.form_edit": (FormEditorForm,),
    "admin.form_open": (FormOpenForm,),  # "0" or "1": a form's 受付, not compared
    "admin.form_delete": (DeleteFormForm,),
    "forms.show": (ActionForm,),  # a member-area form's answers (f_*): a draft only
    "forms.confirm": (ActionForm,),  # sends the member's own draft; none exists here
}

# Every query parameter a view reads (grep request.args / id_arg in portal/), plus
# ``next`` everywhere (it is what a redirect to the sign-in page carries).
QUERY_PARAMS = (
    *("next", "q", "tfa", "method", "after", "before", "member", "event", "from", "to"),
    *("cursor", "limit"),  # the admin API's pages (its callers hold no cookie: all 401)
    "draft",  # a member-area form's 戻る: the member's own draft, else blank
    "stepped_up",  # a form's submissions: sent after a fresh second step or not
)


def form_fields(form: type[PortalForm]) -> list[str]:
    return sorted(
        name
        for klass in form.__mro__
        for name, value in vars(klass).items()
        if isinstance(value, UnboundField)
    )


def all_form_classes() -> set[type[PortalForm]]:
    found, todo = set(), [PortalForm]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in found:
                found.add(sub)
                todo.append(sub)
    return found


FIELDS_BY_ENDPOINT = {
    endpoint: sorted({name for form in forms for name in form_fields(form)})
    for endpoint, forms in FORMS_BY_ENDPOINT.items()
}
ALL_FIELD_NAMES = sorted(
    {name for form in all_form_classes() for name in form_fields(form)} | {"csrf_token"}
)

# --- routes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One concrete URL shape: a rule with its ``any(...)`` converters chosen."""

    rule: str
    endpoint: str
    methods: tuple[str, ...]
    fixed: tuple[tuple[str, str], ...]  # any(...) converter -> the option of this variant
    strings: tuple[str, ...]  # string converters (filled with samples, or fuzzed)
    ints: tuple[str, ...]  # integer converters (filled with samples, or fuzzed)

    @property
    def fuzzable(self) -> bool:
        return bool(self.strings or self.ints)

    def label(self) -> str:
        path = self.rule
        for name, value in self.fixed:
            path = re.sub(rf"<any\([^)]*\):{name}>", value, path)
        return path


def discover(app) -> list[Route]:
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        methods = tuple(sorted(rule.methods & {"GET", "POST"}))  # HEAD/OPTIONS are implied
        converters = rule._converters  # Werkzeug has no public accessor
        options = [
            [(name, item) for item in sorted(conv.items)]
            for name, conv in converters.items()
            if isinstance(conv, AnyConverter)
        ]
        ints = tuple(n for n, c in converters.items() if isinstance(c, IntegerConverter))
        strings = tuple(
            n for n, c in converters.items() if not isinstance(c, AnyConverter | IntegerConverter)
        )
        for combo in itertools.product(*options):
            routes.append(Route(rule.rule, rule.endpoint, methods, combo, strings, ints))
    return sorted(routes, key=lambda r: (r.label(), r.endpoint))


def _discovery_app():
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "fuzz-discovery-key-not-for-production",
            "SQLALCHEMY_DATABASE_URI": "sqlite://",
            "WTF_CSRF_ENABLED": False,
            "RATELIMIT_ENABLED": False,
        }
    )


ROUTES = discover(_discovery_app())
# One test per group of routes (neighbours by path) and identity; each example sends a
# request to every route of its group (see fuzz_group).
GROUP_SIZE = 6
GROUPS = [ROUTES[i : i + GROUP_SIZE] for i in range(0, len(ROUTES), GROUP_SIZE)]
GROUP_IDS = [f"{group[0].label()} to {group[-1].label()}" for group in GROUPS]


# --- values ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Huge:
    """``unit`` repeated to ``n`` characters; printed short in a falsifying example."""

    unit: str
    n: int

    def __str__(self) -> str:
        return (self.unit * (self.n // len(self.unit) + 1))[: self.n]


@dataclass(frozen=True)
class FilePart:
    """A multipart file part where the portal expects text."""

    content: bytes
    filename: str
    content_type: str | None


SPECIAL = st.sampled_from(
    [
        "\x00",
        "\r",
        "\n",
        "\r\n",
        "\t",
        "\x1b",
        "\x7f",
        "\x85",
        "\u2028",
        "\u200b",
        "\u200e",  # LRM
        "\u200f",  # RLM
        "\u202e",  # RLO
        "\u2066",
        "\ufeff",
        "\ufffd",
        "\uffff",
        "\U0010ffff",
        "\u3000",  # ideographic space
        "\u0301",  # combining accent
        "\U0001f600",
        "ﾃｽﾄ",
        "ｱﾘｽ",
        "%00",
        "%",
        "%%",
        "&",
        "=",
        "+",
        ";",
        "\\",
        "/",
        "//",
        "'",
        '"',
        "<",
        ">",
        "{{7*7}}",
        "${7*7}",
        "%(x)s",
        "%s",
        "{0}",
        "％",
    ]
)
# Shapes the portal looks for, none of them a secret: no password, no current code.
PLAUSIBLE = st.sampled_from(
    [
        "",
        " ",
        "alice",
        "ALICE",
        " alice ",
        "boss",
        "nobody",
        "app",
        "email",
        "sms",
        "recovery",
        "APP",
        "y",
        "on",
        "off",
        "true",
        "false",
        "1",
        "0",
        "alice@example.com",
        "ALICE@EXAMPLE.COM",
        "new@example.com",
        "a@b",
        "a@例え.テスト",
        "+819012345678",
        "090-1234-5678",
        "０９０１２３４５６７８",
        "+1 202 555 0100",
        "guide",
        "new-page",
        "UPPER",
        "a" * 65,
        "abcde-fghij",
        "ABCDE-FGHIJ",
        "abcde fghij",
        "/",
        "//evil.example",
        "/\\evil.example",
        "https://evil.example/",
        "/settings/2fa",
        "/pages/ご案内",
        "javascript:alert(1)",
        "<script>alert(1)</script>",
        '"><img src=x onerror=alert(1)>',
        "<a href=%url/rel:tfa:setting%>%member:name%</a>",
        "%member:name%",
        "%member:login_id%",
        "=cmd|' /C calc'!A0",
        "' OR '1'='1",
        "2026-11-25",
        "2026-02-30",
        "9999-12-31",
        "0001-01-01",
        "signin.success",
        "admin.reset_2fa",
        "wrong password",
    ]
)
FULLWIDTH = str.maketrans("0123456789-+.", "０１２３４５６７８９－＋．")
NUMBERS = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.integers(0, 999_999).map(lambda n: f"{n:06d}"),  # code-shaped, never the code
    st.floats().map(repr),
    st.sampled_from(["-0", "1e309", "NaN", "inf", "0x10", "٣٤٥", "१२३", "²", "Ⅻ", "9" * 40]),
)
RECOVERY_SHAPED = st.from_regex(r"[a-z0-9]{5}-?[a-z0-9]{5}", fullmatch=True)
SHORT = st.one_of(
    st.text(),  # any code point but surrogates: control characters and NUL included
    st.text(alphabet=st.characters(codec="utf-8")),
    st.text(alphabet=st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Mn"])),
    PLAUSIBLE,
    SPECIAL,
    NUMBERS,
    NUMBERS.map(lambda s: s.translate(FULLWIDTH)),
    RECOVERY_SHAPED,
    st.lists(st.one_of(st.text(max_size=8), SPECIAL, PLAUSIBLE, NUMBERS), max_size=6).map("".join),
)


def huge(max_n: int) -> st.SearchStrategy[Huge]:
    unit = st.one_of(st.text(min_size=1, max_size=8), SPECIAL, PLAUSIBLE.filter(bool))
    return st.builds(Huge, unit=unit, n=st.integers(min(10_000, max_n // 2), max_n))


BODY_VALUE = st.one_of(SHORT, huge(200_000))
QUERY_VALUE = st.one_of(SHORT, huge(4_000))  # servers refuse request lines over ~8 KB
# A BooleanField is ticked by any value but "" and "false" (its first value counts). A
# ticked ``confirm`` is the valid, destructive answer (turn a method off, reset a
# member), so it is only ever sent unticked: empty, "false", first of several, missing
# (below) or as a file part.
CONFIRM_VALUE = st.one_of(
    st.sampled_from(["", "false"]),
    st.tuples(st.sampled_from(["", "false"]), st.lists(BODY_VALUE, min_size=1, max_size=3)).map(
        lambda t: [t[0], *t[1]]
    ),
)
# Values a field is compared with: the members' current email and phone (so a profile
# form is often valid and its name is saved), method names, slugs that are free or taken.
HINTS = {
    "login_id": ["alice", "boss", "ALICE"],
    "email": ["alice@example.com", "boss@example.com", " alice@example.com "],
    "phone": ["+819012345678", "090-1234-5678", "０９０ー１２３４ー５６７８", ""],
    "method": ["app", "email", "sms", "passkey", "recovery"],
    "kind": ["email", "sms", "app"],
    "slug": ["guide", "new-page", "x", "-", "a" * 64, "Guide"],
    "title": ["ご案内", " t ", "x" * 200, "x" * 201],
}
FIELD_NAME = st.one_of(st.sampled_from(ALL_FIELD_NAMES), st.text(max_size=12), SPECIAL)


def file_parts() -> st.SearchStrategy[FilePart]:
    return st.builds(
        FilePart,
        content=st.one_of(st.binary(max_size=2_000), st.just(b"\x00\xff" * 5_000)),
        filename=st.one_of(st.just("f.bin"), st.text(max_size=20)),
        content_type=st.sampled_from([None, "application/octet-stream", "text/plain"]),
    )


@st.composite
def field_value(draw, name: str):
    """A text value, several values for one key, or a file part."""
    shape = draw(st.sampled_from(["text", "text", "text", "repeated", "file"]))
    if shape == "file":
        return draw(file_parts())
    if name == "confirm":
        return draw(CONFIRM_VALUE)
    value = st.one_of(BODY_VALUE, st.sampled_from(HINTS[name])) if name in HINTS else BODY_VALUE
    if shape == "repeated":
        return draw(st.lists(value, min_size=2, max_size=4))
    return draw(value)


@dataclass(frozen=True)
class Form:
    fields: tuple[tuple[str, object], ...]  # value: str | Huge | list | FilePart
    multipart: bool

    def has_file(self, names) -> bool:
        return any(isinstance(v, FilePart) for n, v in self.fields if n in names)

    def first_text(self, name: str) -> str | None:
        """What a WTForms field reads: the first text value under ``name``."""
        for n, value in self.fields:
            if n == name and not isinstance(value, FilePart):
                return str(value[0] if isinstance(value, list) else value)
        return None

    def multidict(self) -> MultiDict:
        data = MultiDict()
        for name, value in self.fields:
            if isinstance(value, FilePart):
                data.add(name, (io.BytesIO(value.content), value.filename, value.content_type))
            elif isinstance(value, list):
                for item in value:
                    data.add(name, str(item))
            else:
                data.add(name, str(value))
        return data


@dataclass(frozen=True)
class Raw:
    """A body that is not what any form sends: invalid UTF-8, broken encodings."""

    data: bytes
    content_type: str


BODY_LIMIT = 900_000  # the portal refuses bodies over 1 MiB (413) before reading them


def body_size(form: Form) -> int:
    if form.multipart or form.has_file({n for n, _ in form.fields}):
        size = 0
        for name, value in form.fields:
            for item in _items(value):
                if isinstance(item, FilePart):
                    size += len(item.content) + len(item.filename.encode()) * 3
                else:
                    size += len(str(item).encode())
                size += 3 * len(name.encode()) + 200
        return size
    return len(urlencode(list(form.multidict().items(multi=True))).encode())


def _items(value) -> list:
    return value if isinstance(value, list) else [value]


def fit(form: Form) -> Form:
    """Shrink huge values until the whole body stays under the limit (deterministic,
    so the printed example is the one that was sent)."""
    while body_size(form) > BODY_LIMIT and any(
        isinstance(v, Huge) and v.n for _, value in form.fields for v in _items(value)
    ):
        fields = []
        for name, value in form.fields:
            if isinstance(value, Huge):
                value = Huge(value.unit, value.n // 2)
            elif isinstance(value, list):
                value = [Huge(v.unit, v.n // 2) if isinstance(v, Huge) else v for v in value]
            fields.append((name, value))
        form = Form(tuple(fields), form.multipart)
    return form


SLUGS = st.from_regex(r"[a-z0-9-]{1,64}", fullmatch=True)
TITLES = st.one_of(SHORT, st.text(st.characters(exclude_categories=["Cc", "Cs"]), min_size=1))


def baseline(endpoint: str, current: dict[str, str]) -> dict | None:
    """A form that passes validation, harmless: the current email and phone, a wrong
    password, a fresh slug. Then one field may be fuzzed or left out, so the views'
    work behind validation (saving a name, sanitising a page body) is reached too."""
    wrong = st.just("wrong password")
    return {
        "auth.login": {"login_id": st.sampled_from(["alice", "boss"]), "password": BODY_VALUE},
        "settings.profile": {
            "name": BODY_VALUE,
            "email": st.just(current["email"]),
            "phone": st.just(current["phone"]),
            "current_password": wrong,
        },
        "settings.password": {
            "current_password": wrong,
            "new_password": BODY_VALUE,
            "new_password_confirm": BODY_VALUE,
        },
        "settings.password_strength": {"new_password": BODY_VALUE},
        "settings.preferred": {"method": st.sampled_from(["app", "email", "sms"])},
        "settings.profile_confirm": {"kind": st.sampled_from(["email", "sms"]), "code": NUMBERS},
        "settings.reauth": {
            "method": st.sampled_from(["", "email", "sms"]),
            "code": st.one_of(NUMBERS, RECOVERY_SHAPED),
            "password": BODY_VALUE,
        },
        "admin.page_new": {"title": TITLES, "slug": SLUGS, "body": BODY_VALUE},
        "admin.page_edit": {"title": TITLES, "slug": SLUGS, "body": BODY_VALUE},
    }.get(endpoint)


@st.composite
def forms(draw, endpoint: str, current: dict[str, str]):
    own = FIELDS_BY_ENDPOINT.get(endpoint, [])
    base = baseline(endpoint, current)
    if base and draw(st.integers(0, 2)):
        chosen = {name: draw(strategy) for name, strategy in base.items()}
        for name in draw(st.lists(st.sampled_from(sorted(chosen)), unique=True, max_size=1)):
            if draw(st.booleans()):
                del chosen[name]  # a missing field
            else:
                chosen[name] = draw(field_value(name))
        fields = list(chosen.items())
    else:
        names = draw(st.lists(st.sampled_from(own), unique=True)) if own else []
        fields = [(name, draw(field_value(name))) for name in names]
    # Other forms' fields and unknown ones.
    fields += [(name, draw(field_value(name))) for name in draw(st.lists(FIELD_NAME, max_size=3))]
    form = Form(tuple(fields), multipart=draw(st.booleans()))
    if form.multipart or form.has_file({name for name, _ in fields}):
        form = Form(tuple(_multipart_safe(name, value) for name, value in fields), True)
    return fit(form)


def _escape_part_header(text: str) -> str:
    """What a browser sends for a name or file name in a multipart part header (HTML:
    CR, LF and " percent-encoded; a backslash too, which would escape the closing quote).
    Werkzeug's test client writes them raw, so a name like ``x"; name="confirm`` would
    reach the server as another field than the one drawn."""
    for raw, escaped in (("\\", "%5C"), ("\r", "%0D"), ("\n", "%0A"), ('"', "%22")):
        text = text.replace(raw, escaped)
    return text


def _multipart_safe(name: str, value):
    if isinstance(value, FilePart):
        value = FilePart(value.content, _escape_part_header(value.filename), value.content_type)
    return _escape_part_header(name), value


RAW_BODIES = st.builds(
    Raw,
    data=st.one_of(
        st.binary(max_size=300),
        st.sampled_from(
            [
                b"code=%ff%fe%00&code=\xff\xfe",
                b"login_id=alice&password=%E3%81",
                b"name=%C0%AE%C0%AE&email=%",
                b"=&&==&%%%",
                b'--x\r\nContent-Disposition: form-data; name="code"\r\n\r\n1\r\n',
            ]
        ),
    ),
    content_type=st.sampled_from(
        [
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded; charset=latin-1",
            "multipart/form-data; boundary=x",
            "multipart/form-data",
            "application/json",
            "text/plain",
        ]
    ),
)

HEADERS = st.sampled_from(
    [(), (("HX-Request", "true"),), (("HX-Request", "true"), ("HX-Boosted", "true"))]
)


@dataclass(frozen=True)
class Req:
    method: str
    route: str  # the route label, for reading
    path_args: tuple[tuple[str, object], ...]  # fuzzed converter values (else samples)
    query: tuple[tuple[str, object], ...]
    body: Form | Raw | None
    headers: tuple[tuple[str, str], ...]


def queries():
    name = st.one_of(st.sampled_from(QUERY_PARAMS), FIELD_NAME)
    pair = st.tuples(name, QUERY_VALUE)
    return st.lists(pair, max_size=5).map(tuple)


@st.composite
def requests(draw, route: Route, method: str, current: dict[str, str]):
    path_args: tuple = ()
    if route.fuzzable and draw(st.integers(0, 2)) == 2:
        # A third of the time, fuzz the converters themselves: arbitrary text
        # (URL-quoted) and integers; else the sample (alice, the sample page).
        args = [(n, draw(st.one_of(SHORT, huge(2_000)))) for n in route.strings]
        ints = st.one_of(st.integers(0, 2**70), st.sampled_from([2**63 - 1, 2**63, 2**64]), SHORT)
        args += [(n, draw(ints)) for n in route.ints]
        path_args = tuple(args)
    query = draw(queries()) if method != "POST" or draw(st.booleans()) else ()
    body = None
    if method == "POST":
        form = forms(route.endpoint, current)
        body = draw(st.one_of(form, form, RAW_BODIES))
    return Req(method, route.label(), path_args, query, body, draw(HEADERS))


# --- the portal under test ---------------------------------------------------------------

SLUG = "guide"
PAGE_TITLE = "ご案内"
PAGE_BODY = '<p>%member:name% (%member:login_id%) <a href="%url/rel:tfa:setting%">設定</a></p>'
CREDENTIALS = {"alice": PASSWORD, "boss": OPERATOR_PASSWORD}
# Who is signed in (whose records their own requests may change), for each identity.
ME = {"visitor": None, "pending": None, "member": "alice", "operator": "boss"}


@dataclass(repr=False)
class World:
    identity: str
    app: object
    client: object
    totp: dict[str, object]  # login key -> pyotp.TOTP
    page_id: int = 0
    re_signins: int = 0
    lockout_resets: int = 0
    page_restores: int = 0
    sent: int = 0  # requests fuzzed
    posted: bool = False  # since the identity was last checked
    last: dict | None = None  # the records after the last example, if nothing came since
    locked: set[str] = field(default_factory=set)  # members whose second step is locked

    def __repr__(self) -> str:  # printed in every falsifying example: keep it short
        return f"World({self.identity!r})"

    @property
    def me(self) -> str | None:
        return ME[self.identity]

    # -- keeping the identity -------------------------------------------------------------

    def prepare(self) -> dict:
        """Before each example: only what the next example needs to mean anything.
        Returns the records as they are now."""
        state = self.last if self.last is not None else self.snapshot()
        touched = False
        if self.locked:
            # A lock makes every later code check answer "locked" without reading the
            # code (and refuses our own re-sign-in): clear it, as an operator would.
            with self.app.app_context():
                for login_id in self.locked:
                    lockout.clear(members.find(login_id))
            self.lockout_resets += len(self.locked)
            touched = True
        if self.page_id not in state["page"]:
            # Deleting the sample page is a valid POST (the form has no fields but the
            # CSRF token): put it back so edit/delete/show keep being fuzzed.
            with self.app.app_context():
                slug = SLUG if not pages.slug_taken(SLUG) else f"{SLUG}-{self.page_restores}"
                page = MemberPage(
                    id=self.page_id, slug=slug, title=PAGE_TITLE, body=PAGE_BODY, updated_by=""
                )
                db.session.add(page)
                db.session.commit()
            self.page_restores += 1
            touched = True
        if self.posted:  # a GET ends no session: the identity is still the one wanted
            self.posted = False
            here = {"pending": "/login/verify", "member": "/settings/2fa", "operator": "/admin/"}
            if self.identity in here and self.client.get(here[self.identity]).status_code != 200:
                self.sign_in(self.me or "alice", second_step=self.identity != "pending")
                touched = True
        state = self.snapshot() if touched else state
        self.last = None  # stale from now on, until the snapshot after this example
        return state

    def sign_in(self, login_id: str, *, second_step: bool = True) -> None:
        """Password, then (unless pending is wanted) a fresh app code."""
        self.re_signins += 1
        response = self.client.post(
            "/login", data={"login_id": login_id, "password": CREDENTIALS[login_id]}
        )
        assert response.location == "/login/verify", response.text
        if not second_step:
            return
        # The member may have chosen email as the first method (a valid POST above).
        self.client.post("/login/method", data={"method": "app"})
        with self.app.app_context():
            # Codes are accepted once per 30-second step: let this step's code in again.
            m = members.find(login_id)
            db.session.execute(
                update(TotpCredential).where(TotpCredential.member_id == m.id).values(last_step=0)
            )
            db.session.commit()
        response = self.client.post("/login/verify", data={"code": self.totp[login_id].now()})
        assert response.status_code == 302, response.text

    # -- one request ----------------------------------------------------------------------

    def current(self, state: dict) -> dict[str, str]:
        """The signed-in member's email and phone (alice's for the others)."""
        return {k: state["member"][self.me or "alice"][k] for k in ("email", "phone")}

    def path(self, route: Route, req: Req, state: dict) -> str:
        fuzzed = dict(req.path_args)
        samples = {"login_id": "alice", "slug": state["page"][self.page_id]["slug"]}

        def fill(match: re.Match) -> str:
            name = match.group(1)
            if name in fuzzed:
                return quote(str(fuzzed[name]), safe="")
            if name in dict(route.fixed):
                return dict(route.fixed)[name]
            if name in route.ints:
                return str(self.page_id)
            return quote(samples.get(name, "sample"), safe="")

        return re.sub(r"<(?:[^:<>]+:)?(\w+)>", fill, route.rule)

    def send(self, route: Route, req: Req, state: dict):
        path = self.path(route, req, state)
        query = urlencode([(n, str(v)) for n, v in req.query])
        kwargs: dict = {"query_string": query, "headers": list(req.headers)}
        if isinstance(req.body, Raw):
            kwargs.update(data=req.body.data, content_type=req.body.content_type)
        elif isinstance(req.body, Form):
            kwargs["data"] = req.body.multidict()
            if req.body.multipart or req.body.has_file({n for n, _ in req.body.fields}):
                kwargs["content_type"] = "multipart/form-data"
        with self.app.test_request_context(path, method=req.method):
            # What Flask routes this URL to (a fuzzed converter may land elsewhere).
            endpoint = flask_request.url_rule.endpoint if flask_request.url_rule else None
            view_args = dict(flask_request.view_args or {})
        self.posted = self.posted or req.method != "GET"
        # Built here so its input stream can be closed: the test client leaves a
        # multipart body over 500 KB in an open temporary file (no redirects followed).
        builder = EnvironBuilder(self.app, path, method=req.method, **kwargs)
        try:
            prepared = builder.get_request()  # a request, not an environ: used as it is
        finally:
            builder.close()
        try:
            response = self.client.open(prepared)
            response.get_data()  # a streamed body (CSV) runs its generator now
            response.close()
        finally:
            prepared.environ["wsgi.input"].close()
        return path, response, endpoint, view_args

    # -- records --------------------------------------------------------------------------

    def snapshot(self) -> dict:
        with self.app.app_context():
            key_of = dict(db.session.execute(db.select(Member.id, Member.login_key)).all())
            state = {"member": {}, "totp": {}, "contact": {}, "recovery": {}, "page": {}}
            self.locked = set()
            for m in db.session.scalars(db.select(Member)):
                if m.tfa_locked_until or m.recovery_locked_until or m.tfa_blocked_at:
                    self.locked.add(m.login_key)
                state["member"][m.login_key] = {
                    col: getattr(m, col)
                    for col in (
                        "login_id",
                        "name",
                        "email",
                        "phone",
                        "password_hash",
                        "is_operator",
                        "session_generation",
                        "preferred_method",
                        "last_second_step_at",
                    )
                }
            for c in db.session.scalars(db.select(TotpCredential)):
                state["totp"][key_of[c.member_id]] = (
                    c.secret_encrypted,
                    c.last_step,
                    c.last_used_at,
                )
            for c in db.session.scalars(db.select(ContactMethod)):
                state["contact"].setdefault(key_of[c.member_id], set()).add(c.kind)
            for r in db.session.scalars(db.select(RecoveryCode)):
                state["recovery"].setdefault(key_of[r.member_id], set()).add(
                    (r.code_hash, r.used_at)
                )
            for p in db.session.scalars(db.select(MemberPage)):
                state["page"][p.id] = {
                    "slug": p.slug,
                    "title": p.title,
                    "body": p.body,
                    "updated_by": p.updated_by,
                }
            self.last = state
            return state


def enabled(state: dict, who: str) -> set[str]:
    return ({"app"} if who in state["totp"] else set()) | state["contact"].get(who, set())


def valid_page(form: Form) -> dict | None:
    """The page a valid PageForm post saves (None when the form is invalid)."""
    if form.has_file({"title", "slug", "body"}):
        return None
    title = (form.first_text("title") or "").strip()
    slug = (form.first_text("slug") or "").strip()
    body = form.first_text("body") or ""
    if not (
        0 < len(title) <= pages.MAX_TITLE
        and not any(unicodedata.category(ch) == "Cc" for ch in title)
        and pages.valid_slug(slug)
        and len(body) <= pages.MAX_BODY
    ):
        return None
    return {"slug": slug, "title": title, "body": pages.sanitise(body), "updated_by": "boss"}


def expected_state(
    world: World, before: dict, after: dict, req: Req, endpoint: str | None, view_args: dict
) -> dict:
    """``before`` with exactly the changes this request may make. Everything else in
    ``after`` must equal ``before``. Lockout counters, audit rows, sent codes and
    pending app set-ups are not compared: wrong codes count, events are recorded, codes
    are sent and a set-up dialog makes a new secret, all by design."""
    expected = copy.deepcopy(before)
    me = world.me
    form = req.body if isinstance(req.body, Form) else None
    if req.method != "POST" or endpoint is None:
        return expected  # GETs change no compared record
    mine = expected["member"].get(me) if me else None

    moved_on = mine and after["member"][me]["session_generation"] == mine["session_generation"] + 1
    if endpoint == "auth.logout" and moved_on:
        # Sign-out ends every session of the member: the generation moves on by one.
        # (A pending sign-in only forgets itself: no change is allowed there.)
        mine["session_generation"] += 1
        event("valid change: signed out")

    elif endpoint == "settings.end_other_sessions" and moved_on:
        # "Sign out everywhere else" is protective and asks for nothing (the form is only
        # the CSRF token, off in tests): the generation moves on, this session is re-issued.
        mine["session_generation"] += 1
        event("valid change: other sessions ended")

    elif endpoint == "settings.recovery_regenerate" and mine:
        # The form is only the CSRF token (off in tests): every POST by a fresh member
        # is a valid regeneration. 10 new unused codes replace the old ones, and every
        # other session ends (the generation moves on; this session is re-issued).
        new = after["recovery"].get(me, set())
        old_hashes = {h for h, _ in before["recovery"].get(me, set())}
        if (
            new != before["recovery"].get(me)
            and len(new) == 10
            and all(used is None for _, used in new)
            and not old_hashes & {h for h, _ in new}
        ):
            expected["recovery"][me] = new
            mine["session_generation"] += 1
            event("valid change: recovery codes regenerated")

    elif endpoint == "settings.preferred" and mine and form and not form.has_file({"method"}):
        # Choosing which enabled method sign-in starts with needs no proof.
        choice = form.first_text("method")
        if choice in enabled(before, me) and choice != before["member"][me]["preferred_method"]:
            mine["preferred_method"] = choice
            event("valid change: preferred method")

    elif endpoint == "settings.profile" and mine and form:
        # The name needs no password; it is saved (stripped) when the whole form is
        # valid, email and phone unchanged. Email, phone and password never change:
        # the strategies never send the current password.
        raw = form.first_text("name") or ""
        if not form.has_file(set(FIELDS_BY_ENDPOINT["settings.profile"])) and len(raw) <= 200:
            with world.app.app_context():
                try:
                    name = members.check_name(raw)
                except members.MemberError:
                    name = None
            if name is not None and after["member"][me]["name"] == name != mine["name"]:
                mine["name"] = name
                event("valid change: name")

    elif endpoint in ("admin.page_new", "admin.page_edit") and me == "boss" and form:
        # A valid page (title, slug, body) is saved, its body sanitised.
        with world.app.app_context():
            page = valid_page(form)
        if page is not None and endpoint == "admin.page_new":
            new_ids = set(after["page"]) - set(before["page"])
            if len(new_ids) == 1 and after["page"][next(iter(new_ids))] == page:
                expected["page"][next(iter(new_ids))] = page
                event("valid change: page created")
        elif (
            page is not None
            and view_args.get("page_id") in before["page"]
            and after["page"].get(view_args["page_id"]) == page
        ):
            expected["page"][view_args["page_id"]] = page
            event("valid change: page edited")

    elif (
        endpoint == "admin.page_delete"
        and me == "boss"
        # The delete form is only the CSRF token (off in tests): every POST deletes.
        and expected["page"].pop(view_args.get("page_id"), None) is not None
    ):
        event("valid change: page deleted")

    return expected


def differences(expected: dict, after: dict) -> list[str]:
    found = []
    for table in expected:
        for key in sorted(set(expected[table]) | set(after[table]), key=str):
            want, got = expected[table].get(key), after[table].get(key)
            if want != got:
                if isinstance(want, dict) and isinstance(got, dict):
                    for col in want:
                        if want[col] != got[col]:
                            found.append(
                                f"{table}[{key}].{col}: {want[col]!r:.200} -> {got[col]!r:.200}"
                            )
                else:
                    found.append(f"{table}[{key}]: {want!r:.200} -> {got!r:.200}")
    return found


HEADER_BREAK = re.compile(r"[\r\n\x00]")


def check_headers(response) -> None:
    for name, value in response.headers.items():
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            pytest.fail(f"header {name} is not Latin-1, a WSGI server drops it: {value!r:.200}")
        assert not HEADER_BREAK.search(value), f"header {name} breaks the line: {value!r:.200}"


def fuzz_group(world: World, group: list[Route], data) -> None:
    """One example: every route of the group with each of its methods (and, at times,
    HEAD or OPTIONS, which Werkzeug answers but the blueprints' before_request hooks
    see), one generated request each. Hypothesis draws unevenly from a list of
    choices, so sweeping the group is what makes every route fuzzed in every run."""
    for route in group:
        extra = data.draw(st.sampled_from([None, None, "HEAD", "OPTIONS"]))
        for method in [*route.methods, *([extra] if extra else [])]:
            # Shrinks to 0, "not sent": a falsifying example keeps the requests it needs.
            if data.draw(st.integers(0, 4)):
                fuzz_request(world, route, method, data)


def fuzz_request(world: World, route: Route, method: str, data) -> None:
    before = world.prepare()
    req = data.draw(requests(route, method, world.current(before)))
    path, response, endpoint, view_args = world.send(route, req, before)
    world.sent += 1
    event(f"{req.method} {route.label()} -> {response.status_code}")
    if isinstance(req.body, Form) and body_size(req.body) > 100_000:
        event("body over 100 KB")
    note(f"{world.identity}: {req.method} {path[:300]} -> {response.status_code}")
    assert response.status_code < 500, response.text[:2000]
    check_headers(response)
    after = world.snapshot()
    wrong = differences(expected_state(world, before, after, req, endpoint, view_args), after)
    assert not wrong, (
        f"{world.identity} {req.method} {route.label()} changed records:\n" + "\n".join(wrong)
    )


@pytest.fixture
def world(request, app, client, member_with_totp, operator_totp) -> Iterator[World]:
    """The portal with alice (app + email as second steps, a phone for SMS set-up),
    the operator boss (app), one member page, and the client in the wanted identity."""
    identity = request.param
    alice_id, alice_totp, _codes = member_with_totp
    with app.app_context():
        db.session.add(ContactMethod(member_id=alice_id, kind="email"))
        page = pages.save(None, title=PAGE_TITLE, slug=SLUG, body=PAGE_BODY, by="boss")
        page_id = page.id
    w = World(identity, app, client, {"alice": alice_totp, "boss": operator_totp}, page_id)
    if identity == "pending":
        w.sign_in("alice", second_step=False)
    elif identity == "member":
        w.sign_in("alice")
    elif identity == "operator":
        w.sign_in("boss")
    yield w
    # Read with -s: how often the harness had to step in.
    print(
        f"\n{identity}: {w.sent} requests, re-sign-ins {w.re_signins}, "
        f"lockout resets {w.lockout_resets}, "
        f"page restores {w.page_restores}"
    )


FUZZ = settings(
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
    deadline=None,
)


@pytest.mark.parametrize("group", range(len(GROUPS)), ids=GROUP_IDS)
@pytest.mark.parametrize("world", ["visitor", "pending", "member", "operator"], indirect=True)
@settings(FUZZ, max_examples=12)
@given(data=st.data())
def test_v5_fuzz(world, group, data):
    fuzz_group(world, GROUPS[group], data)


LOCAL = st.tuples(SHORT, SHORT).map(lambda t: f"/{t[0]}?{t[1]}")
NEXT = st.one_of(
    SHORT,
    huge(2_000),
    SHORT.map(lambda t: "/" + t),
    LOCAL,
    LOCAL,
    LOCAL,
    st.sampled_from(
        [
            "//evil.example/",
            "/\\evil.example",
            "/\tevil.example",
            "/%2F%2Fevil.example",
            "/／evil.example",
            "/\u3000/evil.example",
            "https:evil.example",
            "/pages/ご案内?q=ä#x",
            "/settings/2fa\r\nSet-Cookie: x=1",
            "/\x85/evil.example",
            "/\u2028",
        ]
    ),
)


@pytest.fixture
def carol(app):
    """A member without 2FA: the password alone signs her in."""
    with app.app_context():
        return members.create("carol", email="carol@example.com", password=PASSWORD).id


@settings(FUZZ, max_examples=60)
@given(login_id=st.sampled_from(["carol", "alice"]), target=NEXT, htmx=st.booleans())
def test_v5_fuzz_next_through_a_real_sign_in(
    app, client, carol, member_with_totp, login_id, target, htmx
):
    """``next`` is only followed after a successful sign-in, which the fuzzing above
    never reaches: here the sign-in is real (password alone, or password and app code)
    and ``next`` arbitrary. Never a 5xx, never a header a server drops, never off-site."""
    _, totp_obj, _ = member_with_totp
    headers = {"HX-Request": "true"} if htmx else {}
    client.post("/logout")
    response = client.post(
        "/login?" + urlencode({"next": str(target)}),
        data={"login_id": login_id, "password": PASSWORD},
        headers=headers,
    )
    if login_id == "alice":
        assert response.status_code < 500
        with app.app_context():
            # Codes are accepted once per 30-second step: let this step's code in again.
            db.session.execute(update(TotpCredential).values(last_step=0))
            db.session.commit()
        response = client.post("/login/verify", data={"code": totp_obj.now()}, headers=headers)
    assert response.status_code < 500, response.text[:2000]
    check_headers(response)
    went = response.headers.get("HX-Redirect") if htmx else response.location
    assert went, (response.status_code, response.text[:500])
    assert went.startswith("/") and not went.startswith("//") and "\\" not in went, went
    event("followed next" if went != "/" else "next refused")
    assert client.get("/settings/2fa").status_code == 200  # signed in for real


def test_v5_fuzz_covers_every_post_route_form_and_template_field():
    """The fuzzer's map of the portal is complete: every POST route has its forms, every
    form class is posted somewhere, every field name in a template and every query
    parameter a view reads is fuzzed."""
    post_endpoints = {r.endpoint for r in ROUTES if "POST" in r.methods}
    assert post_endpoints == set(FORMS_BY_ENDPOINT)
    used = {form for forms_ in FORMS_BY_ENDPOINT.values() for form in forms_}
    assert all_form_classes() <= used | {PortalForm}
    template_names = set()
    for template in (ROOT / "portal" / "templates").rglob("*.html"):
        template_names |= set(re.findall(r'\bname="([^"{]+)"', template.read_text()))
    meta = {"csrf-token", "viewport", "htmx-config"}
    assert template_names - meta <= set(ALL_FIELD_NAMES) | set(QUERY_PARAMS)
    read = set()
    for source in (ROOT / "portal").rglob("*.py"):
        text = source.read_text()
        read |= set(re.findall(r'(?:args\.get|args\[|id_arg)\(?\s*"(\w+)"', text))
    assert read <= set(QUERY_PARAMS), read - set(QUERY_PARAMS)
