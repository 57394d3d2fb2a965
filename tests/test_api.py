"""The admin API (issue 14): token authentication, the read endpoints, JSON errors, no
cookies, no CORS, rate limits per token, and an audit row per call."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from conftest import OPERATOR_PASSWORD, PASSWORD, enrol_app, get_member
from werkzeug.exceptions import BadRequest, Conflict, UnprocessableEntity

from portal import api_tokens, members, sessions
from portal.extensions import db
from portal.models import ApiToken, AuditEvent, ContactMethod, Passkey
from portal.twofactor import devices, recovery
from portal.web.audit_text import detail_text

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def make_token(app, name="HR system", scope="read", **kw) -> str:
    with app.app_context():
        return api_tokens.create(name, scope, by="boss", now=sessions.now(), **kw)[0]


@pytest.fixture
def token(app) -> str:
    return make_token(app)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def events(app, event: str | None = None) -> list[AuditEvent]:
    with app.app_context():
        stmt = db.select(AuditEvent).order_by(AuditEvent.id)
        if event is not None:
            stmt = stmt.where(AuditEvent.event == event)
        found = list(db.session.scalars(stmt))
        db.session.expunge_all()
        return found


def detail(event: AuditEvent) -> dict:
    return json.loads(event.detail)


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.mimetype == "application/json"
    assert response.json["error"]["code"] == code
    assert response.json["error"]["message"]
    assert "<html" not in response.text


def add_member(app, login_id: str, *kinds: str, **fields) -> int:
    """A member with second-step methods set up at NOW (rows written directly)."""
    with app.app_context():
        m = members.create(login_id, email=f"{login_id}@example.com", password=PASSWORD, **fields)
        for kind in kinds:
            if kind == "passkey":
                db.session.add(
                    Passkey(
                        member_id=m.id,
                        credential_id=login_id.encode(),
                        public_key=b"-",
                        name="key",
                        created_at=NOW,
                    )
                )
            elif kind != "app":
                db.session.add(ContactMethod(member_id=m.id, kind=kind, created_at=NOW))
        db.session.commit()
        if "app" in kinds:
            enrol_app(m)
        if kinds and not recovery.remaining(m):
            recovery.issue(m, NOW)
        return m.id


# --- authentication -----------------------------------------------------------------------


def test_a_call_without_a_token_is_refused_and_audited(app, client, member):
    answer = client.get("/api/v1/members")
    assert_error(answer, 401, "token_missing")
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert "alice" not in answer.text
    [refused] = events(app, "api.refused")
    assert detail(refused) == {"call": "GET /api/v1/members", "reason": "token_missing"}


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "Basic YWxpY2U6cGFzc3dvcmQ=",
        "pt_" + "A" * 43,  # no scheme
        "Bearer pt_short",
        "Bearer " + "x" * 46,  # no prefix
        "Bearer pt_" + "A" * 42 + "!",
        "Bearer pt_" + "A" * 44,
    ],
)
def test_a_malformed_header_is_refused(app, client, header):
    answer = client.get("/api/v1/members", headers={"Authorization": header})
    assert_error(answer, 401, "token_malformed")
    assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"]


def test_an_unknown_token_is_refused(app, client, token):
    unknown = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    answer = client.get("/api/v1/members", headers=bearer(unknown))
    assert_error(answer, 401, "token_invalid")
    [refused] = events(app, "api.refused")
    assert detail(refused)["reason"] == "token_invalid" and unknown not in refused.detail


def test_a_revoked_token_is_refused_from_the_next_call_on(app, client, token):
    assert client.get("/api/v1/members", headers=bearer(token)).status_code == 200
    with app.app_context():
        api_tokens.revoke(api_tokens.lookup(token), sessions.now())
    answer = client.get("/api/v1/members", headers=bearer(token))
    assert_error(answer, 401, "token_revoked")
    [refused] = events(app, "api.refused")
    assert detail(refused)["token"] == "HR system" and token not in refused.detail


def test_an_expired_token_is_refused(app, client):
    expired = make_token(app, expires_at=datetime.now(UTC) + timedelta(seconds=1))
    with app.app_context():
        row = api_tokens.lookup(expired)
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        db.session.commit()
    assert_error(client.get("/api/v1/members", headers=bearer(expired)), 401, "token_expired")


def test_the_scheme_is_case_insensitive(client, token):
    assert (
        client.get("/api/v1/members", headers={"Authorization": f"bearer {token}"}).status_code
        == 200
    )


def test_a_signed_in_operators_cookie_is_not_a_credential(app, admin_client):
    """The API reads no session cookie: a page elsewhere cannot make an operator's
    browser call it, and the operator's session is neither read nor changed."""
    answer = admin_client.get("/api/v1/members")
    assert_error(answer, 401, "token_missing")
    assert "Set-Cookie" not in answer.headers
    assert admin_client.post("/api/v1/members").status_code == 405
    assert admin_client.get("/admin/").status_code == 200  # still signed in


def test_a_token_does_not_open_the_admin_area_or_a_member_page(client, token, member):
    for url in ("/admin/members", "/admin/api-tokens", "/", "/settings/2fa"):
        answer = client.get(url, headers=bearer(token))
        assert answer.status_code == 302 and answer.location.startswith("/login"), url


# --- no cookies, no CORS, JSON errors ----------------------------------------------------


def test_no_cookie_is_read_or_set_on_any_api_answer(app, client, token, member):
    client.set_cookie("session", "planted")
    client.set_cookie("remember_token", "1|planted")
    calls = [
        ("GET", "/api/v1/members", bearer(token)),
        ("GET", "/api/v1/members/alice", bearer(token)),
        ("GET", "/api/v1/members/nobody", bearer(token)),
        ("GET", "/api/v1/audit", bearer(token)),
        ("GET", "/api/v1/openapi.json", {}),
        ("GET", "/api/v1/members", {}),
        ("GET", "/api/v1/members?tfa=maybe", bearer(token)),
        ("POST", "/api/v1/members", bearer(token)),
        ("GET", "/api/v1/no-such-thing", {}),
        ("OPTIONS", "/api/v1/members", {}),
        ("HEAD", "/api/v1/members", bearer(token)),
    ]
    for method, url, headers in calls:
        answer = client.open(url, method=method, headers=headers)
        assert answer.status_code < 500, (method, url)
        assert "Set-Cookie" not in answer.headers, (method, url)
        assert "Cookie" not in answer.headers.get("Vary", ""), (method, url)


def test_cors_stays_closed(client, token):
    origin = {"Origin": "https://elsewhere.example"}
    preflight = client.options(
        "/api/v1/members",
        headers=origin
        | {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    answer = client.get("/api/v1/members", headers=origin | bearer(token))
    assert answer.status_code == 200
    for response in (preflight, answer):
        assert not [
            h for h, _ in response.headers.items() if h.lower().startswith("access-control-")
        ]


def test_errors_on_api_paths_are_json(client, token):
    assert_error(client.get("/api/v1/nothing-here", headers=bearer(token)), 404, "not_found")
    assert_error(client.get("/api/v2/members"), 404, "not_found")
    answer = client.delete("/api/v1/members", headers=bearer(token))
    assert_error(answer, 405, "method_not_allowed")
    assert "GET" in answer.headers["Allow"]
    # Elsewhere the portal still answers with its pages.
    page = client.get("/no-such-page")
    assert page.status_code == 404 and "<html" in page.text


@pytest.mark.parametrize(
    ("raised", "status", "code"),
    [
        (BadRequest, 400, "bad_request"),
        (Conflict, 409, "conflict"),
        (UnprocessableEntity, 422, "invalid_parameter"),
    ],
)
def test_every_http_error_has_a_json_body(app, client, token, monkeypatch, raised, status, code):
    def fail(*args, **kwargs):
        raise raised()

    monkeypatch.setattr("portal.api.views.member_page", fail)
    assert_error(client.get("/api/v1/members", headers=bearer(token)), status, code)
    [call] = events(app, "api.request")
    assert detail(call)["status"] == status


@pytest.mark.settings(PROPAGATE_EXCEPTIONS=False)
def test_a_server_error_is_json_and_audited(app, client, token, monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr("portal.api.views.member_page", crash)
    answer = client.get("/api/v1/members", headers=bearer(token))
    assert_error(answer, 500, "internal_error")
    assert "on fire" not in answer.text
    [call] = events(app, "api.request")
    assert detail(call)["status"] == 500


# --- members -----------------------------------------------------------------------------


def login_ids(answer) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [m["login_id"] for m in answer.json["members"]]


def test_members_with_the_admin_lists_filters(app, client, token):
    add_member(app, "apponly", "app")
    add_member(app, "mailonly", "email")
    add_member(app, "keyonly", "passkey")
    add_member(app, "none1", name="Nobody Special")
    add_member(app, "none2")
    get = lambda query: login_ids(client.get(f"/api/v1/members{query}", headers=bearer(token)))  # noqa: E731
    assert get("") == ["apponly", "mailonly", "keyonly", "none1", "none2"]
    assert get("?tfa=on") == ["apponly", "mailonly", "keyonly"]
    assert get("?tfa=off") == ["none1", "none2"]
    assert get("?method=email") == ["mailonly"]
    assert get("?method=passkey") == ["keyonly"]
    assert get("?q=special") == ["none1"]
    assert get("?q=ONLY&tfa=on&method=app") == ["apponly"]
    assert get("?q=%25") == []  # LIKE wildcards are literal
    first = client.get("/api/v1/members?tfa=on", headers=bearer(token)).json["members"][0]
    assert first == {
        "login_id": "apponly",
        "name": "",
        "email": "apponly@example.com",
        "two_factor": {
            "enabled": True,
            "methods": ["app"],
            "set_up_at": "2020-01-01T00:00:00+00:00",
            "recovery_codes_left": 10,
            "passkeys": 0,
            "last_second_step_at": "2020-01-01T00:00:00+00:00",  # the enrolment's code
        },
    }


def test_members_come_in_keyset_pages(app, client, token):
    for n in range(7):
        add_member(app, f"member{n}")
    seen, after, pages = [], "", 0
    while True:
        answer = client.get(f"/api/v1/members?limit=3{after}", headers=bearer(token))
        seen += login_ids(answer)
        pages += 1
        cursor = answer.json["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str)
        after = f"&cursor={cursor}"
    assert seen == [f"member{n}" for n in range(7)] and pages == 3
    whole = client.get("/api/v1/members?limit=200", headers=bearer(token))
    assert login_ids(whole) == seen and whole.json["next_cursor"] is None


@pytest.mark.parametrize(
    "query",
    [
        "tfa=yes",
        "tfa=ON",
        "method=totp",
        "q=" + "x" * 101,
        "q=a%00b",
        "q=a%0Ab",
        "limit=0",
        "limit=201",
        "limit=-1",
        "limit=ten",
        "limit=%EF%BC%91",  # a full-width 1
        "cursor=abc",
        "cursor=-5",
        "cursor=" + "9" * 19,
        "cursor=",
        "limit=",
        "after=3",  # the admin page's keyset parameter, not the API's
        "Tfa=on",
    ],
)
def test_a_wrong_parameter_is_named_in_a_422(client, token, query):
    answer = client.get(f"/api/v1/members?{query}", headers=bearer(token))
    assert_error(answer, 422, "invalid_parameter")
    assert answer.json["error"]["message"].startswith(query.split("=")[0] + ":")


def test_one_members_second_step_in_full(app, client, token):
    member_id = add_member(app, "carol", "app", "email", "sms", name="Carol")
    with app.app_context():
        m = get_member(member_id)
        m.last_second_step_at = NOW
        m.tfa_locked_until = datetime.now(UTC) + timedelta(minutes=15)
        m.preferred_method = "email"
        devices.remember(
            m, datetime.now(UTC), timedelta(days=30), label="Chrome / Windows", ip="::1"
        )
        db.session.commit()
    answer = client.get("/api/v1/members/CAROL", headers=bearer(token))
    assert answer.status_code == 200
    body = answer.json
    assert (body["login_id"], body["name"], body["is_operator"]) == ("carol", "Carol", False)
    tfa = body["two_factor"]
    assert tfa["enabled"] is True
    assert tfa["methods"] == [
        {"method": "app", "since": "2020-01-01T00:00:00+00:00"},
        {"method": "email", "since": NOW.isoformat()},
        {"method": "sms", "since": NOW.isoformat()},
    ]
    assert tfa["preferred_method"] == "email"
    assert tfa["recovery_codes_left"] == 10 and tfa["passkeys"] == 0
    assert tfa["remembered_devices"] == 1
    assert tfa["last_second_step_at"] == NOW.isoformat()
    lock = tfa["lock"]
    assert lock["blocked"] is False and lock["blocked_since"] is None
    assert lock["codes_locked_until"] is not None and lock["recovery_codes_locked_until"] is None


def test_a_blocked_member_reads_as_blocked(app, client, token):
    member_id = add_member(app, "dave", "email")
    with app.app_context():
        get_member(member_id).tfa_blocked_at = NOW
        db.session.commit()
    lock = client.get("/api/v1/members/dave", headers=bearer(token)).json["two_factor"]["lock"]
    assert lock["blocked"] is True and lock["blocked_since"] == NOW.isoformat()


def test_a_member_without_a_second_step(client, token, member):
    tfa = client.get("/api/v1/members/alice", headers=bearer(token)).json["two_factor"]
    assert tfa["enabled"] is False and tfa["methods"] == [] and tfa["preferred_method"] is None


def test_an_unknown_member_is_a_json_404(client, token):
    for login_id in ("nobody", "a", "x" * 65, "bad%20id", "%E3%81%82"):
        assert_error(
            client.get(f"/api/v1/members/{login_id}", headers=bearer(token)), 404, "not_found"
        )


# --- the audit log -----------------------------------------------------------------------


def test_the_audit_log_with_its_filters_and_pages(app, client, token, member, operator_totp):
    browser = app.test_client()
    browser.post("/login", data={"login_id": "boss", "password": OPERATOR_PASSWORD})
    browser.post("/login/verify", data={"code": operator_totp.now()})
    client.get("/api/v1/members/alice", headers=bearer(token))
    answer = client.get("/api/v1/audit?event=signin.success", headers=bearer(token))
    assert answer.status_code == 200
    [event] = answer.json["events"]
    assert event["event"] == "signin.success" and event["subject"] == "boss"
    assert event["at"].endswith("+00:00") and isinstance(event["detail"], dict)
    calls = client.get("/api/v1/audit?event=api.request", headers=bearer(token)).json["events"]
    assert [c["detail"]["call"] for c in calls] == [
        "GET /api/v1/audit",  # the call before this one: newest first
        "GET /api/v1/members/alice",
    ]
    assert calls[1]["actor"] == "api:HR system"
    assert calls[1]["detail"] == {
        "call": "GET /api/v1/members/alice",
        "status": 200,
        "token": "HR system",
        "token_id": 1,  # a name can be used again: the id tells the tokens apart
    }
    mine = client.get("/api/v1/audit?member=BOSS", headers=bearer(token)).json["events"]
    assert mine and all(e["subject"] == "boss" or e["actor"] == "boss" for e in mine)
    today = datetime.now(UTC).date()
    window = f"from={today - timedelta(days=1)}&to={today + timedelta(days=1)}"
    assert client.get(f"/api/v1/audit?{window}", headers=bearer(token)).json["events"]
    past = "from=2020-01-01&to=2020-01-02"
    assert client.get(f"/api/v1/audit?{past}", headers=bearer(token)).json["events"] == []
    # Newest first, a page at a time.
    ids, after = [], ""
    while after is not None:
        page = client.get(f"/api/v1/audit?limit=2{after}", headers=bearer(token)).json
        ids += [e["id"] for e in page["events"]]
        after = f"&cursor={page['next_cursor']}" if page["next_cursor"] else None
    assert ids == sorted(ids, reverse=True) and len(ids) == len(set(ids)) >= 5


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("event=made.up", "event"),
        ("from=2026-13-01", "from"),
        ("from=2026-02-30", "from"),
        ("from=20261125", "from"),
        ("to=yesterday", "to"),
        ("limit=1000", "limit"),
        ("limit=", "limit"),
        ("cursor=x", "cursor"),
        ("cursor=", "cursor"),
        ("tfa=on", "tfa"),  # a parameter of the member list, not of the log
        ("evnet=signin.success", "evnet"),
    ],
)
def test_a_wrong_audit_filter_is_a_422(client, token, query, field):
    answer = client.get(f"/api/v1/audit?{query}", headers=bearer(token))
    assert_error(answer, 422, "invalid_parameter")
    assert answer.json["error"]["message"].startswith(f"{field}:")


def test_an_unknown_member_in_the_audit_filter_is_a_404(client, token):
    for login_id in ("nobody", "%00", "x" * 200):
        answer = client.get(f"/api/v1/audit?member={login_id}", headers=bearer(token))
        assert_error(answer, 404, "unknown_member")


def test_audit_days_out_of_the_logs_range_mean_the_same_as_its_ends(client, token, member):
    client.get("/api/v1/members", headers=bearer(token))
    every = [e["id"] for e in client.get("/api/v1/audit", headers=bearer(token)).json["events"]]
    for query in ("from=0001-01-01", "to=9999-12-31", "from=0001-01-01&to=9999-12-31"):
        answer = client.get(f"/api/v1/audit?{query}", headers=bearer(token))
        assert answer.status_code == 200, query
        found = [e["id"] for e in answer.json["events"]]
        assert [i for i in found if i <= every[0]] == every, query  # and the calls since
    for query in ("to=0001-01-01", "from=9999-12-31", "from=2026-11-25&to=2026-11-24"):
        answer = client.get(f"/api/v1/audit?{query}", headers=bearer(token))
        assert answer.status_code == 200 and answer.json["events"] == [], query


# --- audit and last use -------------------------------------------------------------------


def test_every_call_is_audited_once_with_the_tokens_name(app, client, token, member):
    client.get("/api/v1/members", headers=bearer(token))
    client.get("/api/v1/members/nobody", headers=bearer(token))
    client.get("/api/v1/members?tfa=maybe", headers=bearer(token))
    client.get("/api/v1/openapi.json")  # the description is not a use
    calls = events(app, "api.request")
    assert [(detail(c)["call"], detail(c)["status"]) for c in calls] == [
        ("GET /api/v1/members", 200),
        ("GET /api/v1/members/nobody", 404),
        ("GET /api/v1/members", 422),
    ]
    for call in calls:
        assert call.actor_label == "api:HR system" and call.actor_id is None
        assert call.ip == "127.0.0.1" and token not in call.detail
    with app.test_request_context():
        said = detail_text("api.request", calls[1].detail)
    assert said == "トークン「HR system #1」：GET /api/v1/members/nobody（404）"


def test_the_last_use_is_written_once_a_minute(app, client, token):
    with app.app_context():
        assert api_tokens.lookup(token).last_used_at is None
    client.get("/api/v1/members", headers=bearer(token))
    with app.app_context():
        first = api_tokens.lookup(token).last_used_at
    assert first is not None
    client.get("/api/v1/members", headers=bearer(token))
    with app.app_context():
        assert api_tokens.lookup(token).last_used_at == first
        row = api_tokens.lookup(token)
        row.last_used_at = first - timedelta(minutes=2)
        db.session.commit()
    client.get("/api/v1/members", headers=bearer(token))
    with app.app_context():
        assert api_tokens.lookup(token).last_used_at > first - timedelta(minutes=2)


# --- rate limits ---------------------------------------------------------------------------


@pytest.mark.settings(RATELIMIT_ENABLED=True, PORTAL_LIMIT_API="3 per minute")
def test_calls_are_limited_per_token(app, client, token):
    other = make_token(app, "Help desk")
    for _ in range(3):
        assert client.get("/api/v1/members", headers=bearer(token)).status_code == 200
    for _ in range(2):
        answer = client.get("/api/v1/members", headers=bearer(token))
        assert_error(answer, 429, "rate_limited")
        assert 1 <= int(answer.headers["Retry-After"]) <= 60
    # Another token (from the same address) has its own count.
    assert client.get("/api/v1/members", headers=bearer(other)).status_code == 200
    [throttled] = events(app, "request.throttled")
    assert detail(throttled)["bucket"] == "api" and detail(throttled)["token"] == "HR system"
    assert len(events(app, "api.request")) == 4  # the refused calls are one row, not two


@pytest.mark.settings(RATELIMIT_ENABLED=True, PORTAL_LIMIT_API_REFUSED="2 per minute")
def test_refused_calls_are_limited_per_address(app, client, token):
    for _ in range(2):
        assert_error(client.get("/api/v1/members"), 401, "token_missing")
    answer = client.get("/api/v1/members", headers=bearer("pt_" + "A" * 43))
    assert_error(answer, 429, "rate_limited")
    assert len(events(app, "api.refused")) == 2
    # A valid token is not held by strangers' refusals.
    assert client.get("/api/v1/members", headers=bearer(token)).status_code == 200


def test_tokens_are_stored_as_hashes_only(app, token):
    with app.app_context():
        for row in db.session.scalars(db.select(ApiToken)):
            assert token not in str([getattr(row, c.key) for c in ApiToken.__table__.columns])
