"""RFC 9457 problem documents: one table from ``code`` to HTTP status, and the handlers.

Core errors (``errors.py``) carry their ``code``; HTTP-only conditions (no token, an
unknown route, a body too large, a crash) have codes of their own here. Every
problem body is ``{"type": "urn:pageholder:problem:<code>", "title", "status",
"detail", "code", ...extensions}``; a 500 never carries a stack trace.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pageholder.service.api.problem_examples import EXAMPLES
from pageholder.service.core import errors

log = logging.getLogger("pageholder.api")

PROBLEM_JSON = "application/problem+json"

STATUS: dict[str, int] = {
    # core errors
    "internal_error": 500,
    "invalid_request": 422,
    "misaligned": 422,
    "crosses_zone": 422,
    "not_found": 404,
    "pfn_not_found": 404,
    "holder_not_found": 404,
    "page_not_held": 404,
    "block_not_found": 404,
    "conflict": 409,
    "holder_exists": 409,
    "holder_has_holds": 409,
    "page_held": 409,
    "page_releasing": 409,
    "not_head": 409,
    "block_not_online": 409,
    "block_not_offline": 409,
    "multizone_block": 409,
    "no_release_handler": 409,
    "offline_failed": 409,
    "lease_expired": 409,
    "lease_not_expired": 409,
    "no_lease": 409,
    "forbidden": 403,
    "events_compacted": 410,
    "release_failed": 502,
    "release_timeout": 504,
    "storage_unavailable": 503,
    # HTTP-only
    "unauthorized": 401,
    "method_not_allowed": 405,
    "payload_too_large": 413,
    "not_ready": 503,
    "not_leader": 503,
}


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem document; `code` is stable, `detail` is for people.",
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "examples": ["urn:pageholder:problem:page_held"]},
        "title": {"type": "string", "examples": ["Conflict"]},
        "status": {"type": "integer", "examples": [409]},
        "detail": {"type": "string", "examples": ["pfn 1048576 (order 0) is held by 'nic0'"]},
        "code": {"type": "string", "enum": sorted(STATUS)},
    },
    "additionalProperties": True,
}


#: What setting a hold can answer: one PUT, or a batch-set (whose first failure, when it
#: is ``atomic``, is one of these too).
SET_HOLD_CODES: tuple[str, ...] = (
    "unauthorized",
    "forbidden",
    "pfn_not_found",
    "holder_not_found",
    "page_held",
    "page_releasing",
    "block_not_online",
    "lease_expired",
    "payload_too_large",
    "invalid_request",
    "misaligned",
    "crosses_zone",
    "storage_unavailable",
)


def documented(*answers: int | str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the problems a route can answer.

    Each answer is a ``code`` (``"page_held"``) or a status (``409``: every code of that
    status). Each status lists its codes and has one named example per code.
    """
    by_status: dict[int, list[str]] = {}
    for answer in answers:
        codes = (
            sorted(c for c, s in STATUS.items() if s == answer)
            if isinstance(answer, int)
            else [answer]
        )
        for code in codes:
            listed = by_status.setdefault(STATUS[code], [])
            if code not in listed:
                listed.append(code)
    return {
        status: {
            "description": "problem: " + ", ".join(codes),
            "content": {
                PROBLEM_JSON: {
                    "schema": {"$ref": "#/components/schemas/Problem"},
                    "examples": {code: problem_example(code) for code in codes},
                }
            },
        }
        for status, codes in sorted(by_status.items())
    }


def problem_example(code: str) -> dict[str, Any]:
    """The named OpenAPI example of ``code``'s problem document."""
    summary, detail, extra = EXAMPLES[code]
    status = STATUS[code]
    value = {
        "type": f"urn:pageholder:problem:{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return {"summary": summary, "value": value}


def add_problem_schema(spec: dict[str, Any]) -> dict[str, Any]:
    """Put ``Problem`` into the spec's components; drop FastAPI's validation schemas,
    which no response uses (every 422 is a problem document)."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    text = repr(spec["paths"])
    for unused in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{unused}" not in text:
            schemas.pop(unused, None)
    return spec


class HTTPProblem(Exception):
    """An HTTP-only problem raised by the API layer itself (auth, limits)."""

    def __init__(
        self, code: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.headers = headers
        self.extra = extra


def document(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    """The problem document for ``code``."""
    status = STATUS[code]
    body: dict[str, Any] = {
        "type": f"urn:pageholder:problem:{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update(extra)
    return body


def problem(
    code: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = document(code, detail, **extra)
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_JSON, headers=headers)


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def _core_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.PageHolderError)
    return problem(exc.code, exc.detail, **exc.extra)


async def _http_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPProblem)
    return problem(exc.code, exc.detail, headers=exc.headers, **exc.extra)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = [
        _malformed_json(await request.body())
        if e.get("type") == "json_invalid"
        else {"field": _field_name(tuple(e.get("loc", ()))), "message": str(e.get("msg", ""))}
        for e in exc.errors()
    ]
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
    return problem("invalid_request", f"invalid request: {summary}", errors=fields)


def _malformed_json(body: bytes) -> dict[str, str]:
    """A body that is not JSON: ``field: "body"``, and where it breaks as line and column
    (FastAPI reports a character offset as if it were a field name)."""
    try:
        json.loads(body)
    except json.JSONDecodeError as error:
        return {
            "field": "body",
            "message": f"malformed JSON at line {error.lineno}, column {error.colno}: {error.msg}",
        }
    except ValueError as error:  # not UTF-8 at all
        return {"field": "body", "message": f"malformed JSON: {error}"}
    return {"field": "body", "message": "malformed JSON"}


async def _starlette_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
    code = codes.get(
        exc.status_code, "invalid_request" if exc.status_code < 500 else "internal_error"
    )
    detail = (
        f"no route {request.method} {request.url.path}"
        if exc.status_code == 404
        else str(exc.detail)
    )
    return problem(code, detail, headers=dict(exc.headers) if exc.headers else None)


async def _crash(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error in %s %s", request.method, request.url.path)
    return problem("internal_error", "the server failed to handle this request; see its log")


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.PageHolderError, _core_error)
    app.add_exception_handler(HTTPProblem, _http_problem)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _starlette_error)
    app.add_exception_handler(Exception, _crash)
