"""The OpenAPI 3.1 document of the admin API, served at /api/v1/openapi.json (without a
token: it says what the API does, nothing about anyone). tests/test_api_schema.py runs
schemathesis' generated calls against the app and checks each answer against it."""

from __future__ import annotations

from typing import Any

from flask import current_app

from .. import audit, members
from ..queries import METHODS

LIMIT_MAX = 200


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null (OpenAPI 3.1 is JSON Schema: a list of types)."""
    found = {**schema, "type": [schema["type"], "null"]}
    if "enum" in schema:
        found["enum"] = [*schema["enum"], None]
    return found


TIME = {"type": "string", "format": "date-time"}
COUNT = {"type": "integer", "minimum": 0}
METHOD = {"type": "string", "enum": list(METHODS)}


def _or_empty(schema: dict[str, Any]) -> dict[str, Any]:
    """A filter's values, or "" (no filter, as an empty form field sends it)."""
    return {**schema, "enum": [*schema["enum"], ""]}


DAY = {"anyOf": [{"type": "string", "format": "date"}, {"type": "string", "maxLength": 0}]}


def _object(properties: dict[str, Any], description: str = "") -> dict[str, Any]:
    found = {
        "type": "object",
        "required": list(properties),
        "properties": properties,
    }
    return {**found, "description": description} if description else found


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before calling again.",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}
ERRORS = {
    "BadRequest": _json(_ref("Error"), "The request could not be understood."),
    "Unauthorized": _json(
        _ref("Error"),
        "No valid token: token_missing, token_malformed, token_invalid, token_expired or "
        "token_revoked.",
        headers={
            "WWW-Authenticate": {
                "description": "Bearer, with error=invalid_token.",
                "schema": {"type": "string"},
            }
        },
    ),
    "Forbidden": _json(
        _ref("Error"),
        "insufficient_scope: the call needs a write token; operator_account: an operator's "
        "account is changed on the admin page only.",
    ),
    "NotFound": _json(
        _ref("Error"),
        "not_found: no such member (or address); unknown_member: no member has the login "
        "ID of the member filter.",
    ),
    "NotAllowed": _json(_ref("Error"), "method_not_allowed."),
    "Invalid": _json(_ref("Error"), "invalid_parameter: the message names the parameter."),
    "TooMany": _json(_ref("Error"), "rate_limited: too many calls.", headers=RETRY_AFTER),
    "ServerError": _json(_ref("Error"), "internal_error."),
}


def _errors(*statuses: str) -> dict[str, Any]:
    names = {
        "400": "BadRequest",
        "401": "Unauthorized",
        "403": "Forbidden",
        "404": "NotFound",
        "405": "NotAllowed",
        "422": "Invalid",
        "429": "TooMany",
        "500": "ServerError",
    }
    return {status: {"$ref": f"#/components/responses/{names[status]}"} for status in statuses}


COMMON = ("400", "401", "405", "429", "500")

CURSOR = {
    "name": "cursor",
    "in": "query",
    "description": "The next_cursor of the previous page; absent for the first page.",
    "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
}
LIMIT = {
    "name": "limit",
    "in": "query",
    "description": f"Items per page (default 50, at most {LIMIT_MAX}).",
    "schema": {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX},
}
LOGIN_ID = {
    "name": "login_id",
    "in": "path",
    "required": True,
    "description": "The member's login ID (case does not matter).",
    "schema": {"type": "string", "pattern": "^" + members.LOGIN_ID_RE.pattern + "$"},
}


def _change(
    operation: str, summary: str, description: str, answer: str, refusals: dict[str, str]
) -> dict[str, Any]:
    """A POST that changes a member: a write token's, answered with ``answer``."""
    return {
        "parameters": [LOGIN_ID],
        "post": {
            "operationId": operation,
            "summary": summary,
            "description": description + " Needs a write token.",
            "responses": {
                "200": _json(_ref(answer), "Done."),
                **{status: _json(_ref("Error"), text) for status, text in refusals.items()},
                **_errors(*COMMON, "403", "404"),
            },
        },
    }


def _schemas() -> dict[str, Any]:
    two_factor_summary = _object(
        {
            "enabled": {"type": "boolean"},
            "methods": {"type": "array", "items": METHOD},
            "set_up_at": _nullable(TIME),
            "recovery_codes_left": COUNT,
            "passkeys": COUNT,
            "last_second_step_at": _nullable(TIME),
        }
    )
    lock = _object(
        {
            "blocked": {
                "type": "boolean",
                "description": "Locked until an operator unlocks the second step.",
            },
            "blocked_since": _nullable(TIME),
            "codes_locked_until": _nullable(TIME),
            "recovery_codes_locked_until": _nullable(TIME),
        }
    )
    person = {
        "login_id": {"type": "string"},
        "name": {"type": "string"},
        "email": {"type": "string"},
    }
    return {
        "Error": _object(
            {
                "error": _object(
                    {
                        "code": {"type": "string", "description": "Stable, for programs."},
                        "message": {"type": "string", "description": "For people."},
                    }
                )
            }
        ),
        "MemberSummary": _object({**person, "two_factor": two_factor_summary}),
        "MemberList": _object(
            {
                "members": {"type": "array", "items": _ref("MemberSummary")},
                "next_cursor": _nullable({"type": "string"}),
            }
        ),
        "Member": _object(
            {
                **person,
                "is_operator": {"type": "boolean"},
                "two_factor": _object(
                    {
                        "enabled": {"type": "boolean"},
                        "methods": {
                            "type": "array",
                            "items": _object({"method": METHOD, "since": TIME}),
                        },
                        "preferred_method": _nullable(METHOD),
                        "recovery_codes_left": COUNT,
                        "passkeys": COUNT,
                        "remembered_devices": COUNT,
                        "last_second_step_at": _nullable(TIME),
                        "lock": lock,
                    }
                ),
            }
        ),
        "AuditEvent": _object(
            {
                "id": {"type": "integer"},
                "at": TIME,
                "event": {"type": "string", "enum": sorted(audit.EVENTS)},
                "actor": {"type": "string"},
                "subject": {"type": "string"},
                "method": _nullable({"type": "string"}),
                "ip": {"type": "string"},
                "user_agent": {"type": "string"},
                "detail": {"type": "object"},
            }
        ),
        "AuditList": _object(
            {
                "events": {"type": "array", "items": _ref("AuditEvent")},
                "next_cursor": _nullable({"type": "string"}),
            }
        ),
        "Reset": _object(
            {
                "login_id": {"type": "string"},
                "methods": {
                    "type": "array",
                    "items": METHOD,
                    "description": "The methods removed.",
                },
            }
        ),
        "Link": _object(
            {
                "login_id": {"type": "string"},
                "kind": {
                    "type": "string",
                    "enum": ["invitation", "reset"],
                    "description": "invitation: the member has no password yet.",
                },
                "expires_in_minutes": {"type": "integer", "minimum": 1},
            }
        ),
    }


def document() -> dict[str, Any]:
    base = current_app.config.get("PORTAL_BASE_URL") or ""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Member portal admin API",
            "version": "1.0.0",
            "description": (
                "Two-step verification status, the audit log, resets and password links "
                "for other systems. Tokens are made on the admin page (/admin/api-tokens); "
                "send one as 'Authorization: Bearer <token>'. Every call is audited with "
                "the token's name."
            ),
        },
        "servers": [{"url": f"{base}/api/v1"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token (pt_…): read, or write for changes.",
                }
            },
            "schemas": _schemas(),
            "responses": ERRORS,
        },
        "paths": {
            "/members": {
                "get": {
                    "operationId": "listMembers",
                    "summary": "Members, with the admin list's filters",
                    "parameters": [
                        {
                            "name": "tfa",
                            "in": "query",
                            "description": "on: with a second step; off: without one.",
                            "schema": _or_empty({"type": "string", "enum": ["on", "off"]}),
                        },
                        {
                            "name": "method",
                            "in": "query",
                            "description": "Only members with this method.",
                            "schema": _or_empty(METHOD),
                        },
                        {
                            "name": "q",
                            "in": "query",
                            "description": "Login ID, name or email address contains it.",
                            "schema": {
                                "type": "string",
                                "maxLength": 100,
                                "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]*$",
                            },
                        },
                        CURSOR,
                        LIMIT,
                    ],
                    "responses": {
                        "200": _json(_ref("MemberList"), "One page of members."),
                        **_errors(*COMMON, "422"),
                    },
                }
            },
            "/members/{login_id}": {
                "parameters": [LOGIN_ID],
                "get": {
                    "operationId": "getMember",
                    "summary": "One member's two-step verification status",
                    "responses": {
                        "200": _json(_ref("Member"), "The member."),
                        **_errors(*COMMON, "404"),
                    },
                },
            },
            "/members/{login_id}/reset-2fa": _change(
                "resetTwoFactor",
                "無効化: remove every method, recovery code and remembered device",
                "The admin page's reset: the member's sessions end and the member is mailed. "
                "403 operator_account for an operator (reset on the admin page only); 409 "
                "nothing_to_reset when the member has no second step.",
                "Reset",
                {"409": "nothing_to_reset."},
            ),
            "/members/{login_id}/password-link": _change(
                "sendPasswordLink",
                "Mail an invitation or a password-reset link",
                "A member without a password gets an invitation to set one, any other a "
                "password-reset link saying an operator sent it. Earlier links stop "
                "working. 403 operator_account for an operator (the admin page only); "
                "409 no_email when the member has no address; 429 when the member was "
                "sent too many links lately (the limit of パスワードをお忘れの方); 503 "
                "mail_failed when the mail server refused it.",
                "Link",
                {"409": "no_email.", "503": "mail_failed."},
            ),
            "/audit": {
                "get": {
                    "operationId": "listAuditEvents",
                    "summary": "The audit log, newest first, with the admin log's filters",
                    "parameters": [
                        {
                            "name": "member",
                            "in": "query",
                            "description": (
                                "Events where this login ID acted or was acted on "
                                "(404 unknown_member when no member has it)."
                            ),
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "event",
                            "in": "query",
                            "schema": _or_empty({"type": "string", "enum": sorted(audit.EVENTS)}),
                        },
                        {
                            "name": "from",
                            "in": "query",
                            "description": "First day (YYYY-MM-DD, the portal's time zone).",
                            "schema": DAY,
                        },
                        {
                            "name": "to",
                            "in": "query",
                            "description": "Last day, included (before from: no events).",
                            "schema": DAY,
                        },
                        CURSOR,
                        LIMIT,
                    ],
                    "responses": {
                        "200": _json(_ref("AuditList"), "One page of events."),
                        **_errors(*COMMON, "404", "422"),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "The OpenAPI document.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        **_errors("405", "429", "500"),
                    },
                }
            },
        },
    }
