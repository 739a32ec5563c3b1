"""Fuzz the committed OpenAPI document against the app it describes (schemathesis).

Every operation of ``openapi/openapi.json`` gets generated requests, valid and invalid
(wrong types, missing fields, no token, other methods), sent to the in-process app with
the admin token. The app runs its real lifespan (schemathesis starts it for each test and
stops it after), its release calls go to a fake that releases everything, and a little
state is seeded first so that lookups, releases and offlines find something: holder
``nic0`` (the spec's example name) holds the spec's example pfn.

Every answer must:

- not be a 5xx (``not_a_server_error``): malformed input is a 4xx, never a crash;
- match the schema the spec documents for its status (``response_schema_conformance``);
- if it is an error, be an RFC 9457 problem document (``problem_document``) whose
  ``code`` the operation documents for that status (``problem_code_documented``);
- have a documented status and media type (``status_code_conformance``,
  ``content_type_conformance``): every route lists its problem statuses.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.checks import (
    CheckContext,
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pageholder.service.api import create_app
from pageholder.service.core.model import Holder, PageRef, ReleaseAnswer
from pageholder.service.settings import Settings

SPEC = Path(__file__).parents[2] / "openapi" / "openapi.json"
TOKEN = "schemathesis-admin-token-0123456789"
EXAMPLE_PFN = 1048576  # the spec's example pfn: the first page of the Normal zone
PROBLEM_JSON = "application/problem+json"

Case = schemathesis.Case[Any]


async def releases_everything(
    holder: Holder,
    pages: Sequence[PageRef],
    *,
    reason: str,
    block: int | None,
    deadline: float,
) -> ReleaseAnswer:
    return ReleaseAnswer.all_released(pages)


async def seed(app: ASGIApp) -> None:
    """Holders, holds and an offline block for generated requests to find."""
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://seed", headers=headers
    ) as admin:
        for body in (
            {"name": "nic0", "release_url": "http://127.0.0.1:9100/release"},
            {"name": "balloon"},  # no release handler
        ):
            created = await admin.post("/v1/holders", json=body)
            assert created.status_code == 201, created.text
        for pfn, holder, order in (
            (EXAMPLE_PFN, "nic0", 0),
            (EXAMPLE_PFN + 512, "nic0", 9),
            (EXAMPLE_PFN + 7, "balloon", 0),
        ):
            held = await admin.put(f"/v1/pages/{pfn}/hold", json={"holder": holder, "order": order})
            assert held.status_code == 201, held.text
        offline = await admin.post("/v1/blocks/40/offline")
        assert offline.status_code == 200, offline.text


class Seeded:
    """The app, seeded once its lifespan has started and before it says so."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def started(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                await seed(self.app)
            await send(message)

        await self.app(scope, receive, started)


def _media_type(response: schemathesis.Response) -> str:
    return response.headers.get("content-type", [""])[0].split(";")[0].strip()


def problem_document(ctx: CheckContext, response: schemathesis.Response, case: Case) -> bool | None:
    """A 4xx/5xx is an RFC 9457 problem document whose ``status`` is the HTTP status."""
    if response.status_code < 400:
        return None
    assert _media_type(response) == PROBLEM_JSON, response.headers
    body = response.json()
    assert body["type"] == f"urn:pageholder:problem:{body['code']}", body
    assert body["status"] == response.status_code, body
    assert isinstance(body["title"], str) and isinstance(body["detail"], str), body
    return None


def problem_code_documented(
    ctx: CheckContext, response: schemathesis.Response, case: Case
) -> bool | None:
    """The problem's ``code`` is one the operation documents for that status (with its
    example): a route's documented codes are the ones it answers."""
    if response.status_code < 400 or response.status_code == 405:
        return None  # a 405 answers a method the route does not have: no operation's
    documented = case.operation.definition.raw["responses"].get(str(response.status_code), {})
    examples = documented.get("content", {}).get(PROBLEM_JSON, {}).get("examples", {})
    code = response.json()["code"]
    assert code in examples, f"{case.method} {case.path} answered {code}, not documented"
    return None


def _needs_token(operation: dict[str, Any]) -> bool:
    return bool(operation.get("security"))


CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20261126,
        "auth": {"openapi": {"HTTPBearer": {"bearer": TOKEN}}},
        "generation": {"max-examples": 25, "deterministic": True, "database": "none"},
        # An event stream never ends: judge what it sent within a short time (the stream
        # starts from now unless `since` is given) or its first event.
        "operations": [
            {"include-path": "/v1/events", "max-stream-events": 1, "request-timeout": 0.2}
        ],
    }
)

app = create_app(
    Settings(data_dir=":memory:", admin_token=TOKEN), release_caller=releases_everything
)
schema = schemathesis.openapi.from_path(SPEC, config=CONFIG)
schema.app = Seeded(app)


@schema.parametrize()
def test_the_api_answers_as_its_spec_says(case: Case) -> None:
    case.call_and_validate(
        checks=[
            not_a_server_error,
            response_schema_conformance,
            problem_document,
            problem_code_documented,
            status_code_conformance,
            content_type_conformance,
        ]
    )


def test_every_error_is_documented_as_a_problem() -> None:
    """Each operation lists its problem statuses as application/problem+json, and every
    operation that needs a token lists 401."""
    paths = json.loads(SPEC.read_text())["paths"]
    for path, methods in paths.items():
        for method, operation in methods.items():
            responses = operation["responses"]
            if _needs_token(operation):
                assert "401" in responses, f"{method} {path}"
            for status, response in responses.items():
                if int(status) >= 400:
                    assert list(response["content"]) == [PROBLEM_JSON], f"{method} {path} {status}"


# Cursors are "p<pfn>" / "b<block>"; strings that str.isdigit() accepts but int() does
# not (or only slowly) once made a ValueError escape as a 500.
CURSORS_NEVER_GIVEN = {
    "pages-superscript-digit": ("/v1/pages", "p\u00b2"),  # "²".isdigit() is True
    "blocks-superscript-digit": ("/v1/blocks", "b\u00b2"),
    "pages-over-4300-digits": ("/v1/pages", "p" + "9" * 5000),  # int() digit limit
    "blocks-over-4300-digits": ("/v1/blocks", "b" + "9" * 5000),
    "pages-full-width-digit": ("/v1/pages", "p\uff11"),
    "blocks-arabic-indic-digit": ("/v1/blocks", "b\u0663"),
}


@pytest.mark.parametrize(
    ("path", "cursor"), CURSORS_NEVER_GIVEN.values(), ids=CURSORS_NEVER_GIVEN.keys()
)
def test_a_cursor_the_server_never_gave_is_a_422(path: str, cursor: str) -> None:
    case = schema[path]["GET"].Case(
        query={"cursor": cursor}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    response = case.call()
    case.validate_response(response, checks=[not_a_server_error])
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_request"
