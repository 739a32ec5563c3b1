"""The committed OpenAPI document is the app's, and it is usable by a person."""

from __future__ import annotations

import json
from pathlib import Path

from pageholder.service.api import create_app
from pageholder.service.settings import Settings

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
            assert (await anonymous.get("/redoc")).status_code == 404
