"""The committed OpenAPI document is the app's, and it is usable by a person."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pageholder.service.api import create_app
from pageholder.service.api.problem_examples import EXAMPLES
from pageholder.service.api.problems import PROBLEM_JSON, STATUS
from pageholder.service.settings import Settings

from .conftest import Api, assert_problem

COMMITTED = Path(__file__).parents[2] / "openapi" / "openapi.json"


def test_committed_spec_matches_the_app() -> None:
    spec = create_app(Settings(data_dir=":memory:")).openapi()
    committed = json.loads(COMMITTED.read_text())
    assert committed == spec, "openapi/openapi.json is stale: run `make openapi`"


def test_operations_have_stable_ids_and_descriptions() -> None:
    spec = create_app(Settings(data_dir=":memory:")).openapi()
    ids = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            ids.append(operation["operationId"])
            assert operation.get("summary"), f"{method} {path} has no summary"
    assert len(ids) == len(set(ids))
    assert "get_page" in ids and "set_hold" in ids and "release_page" in ids
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


async def test_docs_need_no_internet() -> None:
    """Swagger UI comes from this server, so /docs works in an offline browser."""
    from .conftest import start

    async for api in start():
        async with api.client(None) as anonymous:
            page = await anonymous.get("/docs")
            assert page.status_code == 200
            assert "/docs/assets/swagger-ui-bundle.js" in page.text
            assert "cdn." not in page.text and "https://" not in page.text
            bundle = await anonymous.get("/docs/assets/swagger-ui-bundle.js")
            assert bundle.status_code == 200 and "SwaggerUIBundle" in bundle.text
            assert (await anonymous.get("/docs/assets/swagger-ui.css")).status_code == 200
            redoc = await anonymous.get("/redoc")
            assert redoc.status_code == 200
            assert "/redoc/assets/redoc.standalone.js" in redoc.text
            assert "cdn." not in redoc.text and "https://" not in redoc.text
            assert "fonts.googleapis" not in redoc.text
            script = await anonymous.get("/redoc/assets/redoc.standalone.js")
            assert script.status_code == 200 and "Redoc" in script.text


SPEC = create_app(Settings(data_dir=":memory:")).openapi()
OPERATIONS = [
    (method.upper(), path, operation)
    for path, operations in SPEC["paths"].items()
    for method, operation in operations.items()
]


def test_every_problem_code_has_an_example() -> None:
    assert set(EXAMPLES) == set(STATUS), set(EXAMPLES) ^ set(STATUS)


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=lambda v: str(v)[:40])
def test_each_status_lists_its_codes_with_one_matching_example_each(
    method: str, path: str, operation: dict[str, object]
) -> None:
    responses = operation["responses"]
    assert isinstance(responses, dict)
    for status, response in responses.items():
        content = response.get("content", {}).get(PROBLEM_JSON)
        if content is None:
            continue
        assert "example" not in content, f"{method} {path} {status}: one shared example"
        examples = content["examples"]
        listed = response["description"].removeprefix("problem: ").split(", ")
        assert sorted(examples) == sorted(listed)
        for code, example in examples.items():
            value = example["value"]
            assert STATUS[code] == int(status) == value["status"], (method, path, code)
            assert value["code"] == code and value["type"].endswith(f":{code}")


def test_routes_document_only_the_codes_they_can_answer() -> None:
    """A few routes the issue named: PUT hold lists no holder/offline conflicts, and a
    401 is an unauthorized example, not another code's."""
    codes = {
        (method, path): {
            code
            for response in operation["responses"].values()
            for code in response.get("content", {}).get(PROBLEM_JSON, {}).get("examples", {})
        }
        for method, path, operation in OPERATIONS
    }
    hold = codes[("PUT", "/v1/pages/{pfn}/hold")]
    assert {"page_held", "page_releasing", "block_not_online", "misaligned"} <= hold
    assert not {"holder_has_holds", "offline_failed", "block_not_offline"} & hold
    assert codes[("GET", "/v1/zones")] == {"unauthorized"}
    assert codes[("GET", "/healthz")] == set()
    assert codes[("GET", "/readyz")] == {"not_ready", "not_leader"}
    offline = codes[("POST", "/v1/blocks/{block_id}/offline")]
    assert {"offline_failed", "block_not_online", "multizone_block"} <= offline
    assert "page_held" not in offline


def test_the_document_says_who_and_where() -> None:
    tags = {tag["name"]: tag["description"] for tag in SPEC["tags"]}
    used = {tag for _, _, operation in OPERATIONS for tag in operation.get("tags", [])}
    assert used <= set(tags) and all(tags.values())
    assert SPEC["servers"] and SPEC["info"]["contact"] and SPEC["info"]["license"]["name"]
    for method, path, operation in OPERATIONS:
        assert operation.get("description"), f"{method} {path} has no description"
    open_routes = {path for _, path, op in OPERATIONS if op.get("security") == []}
    assert open_routes == {"/healthz", "/readyz"}


async def test_malformed_json_names_the_body_with_line_and_column(api: Api) -> None:
    body = b'{\n  "holder": "nic0",\n  "order": 9,,\n}'
    response = await api.admin.put(
        "/v1/pages/1048576/hold", content=body, headers={"content-type": "application/json"}
    )
    problem = assert_problem(response, 422, "invalid_request")
    assert problem["errors"] == [
        {
            "field": "body",
            "message": "malformed JSON at line 3, column 14: Expecting property name enclosed "
            "in double quotes",
        }
    ]
