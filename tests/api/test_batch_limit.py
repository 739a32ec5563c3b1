"""An oversized batch is refused by its entry count before it is parsed (issue 11,
finding 4): the count of a raw body, and the 413 a holder gets for it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.dependencies import utils as fastapi_utils

from pageholder.service.api import fastbatch
from pageholder.service.api.batchbody import BatchBody
from pageholder.service.api.batchlimit import count_entries, too_many
from pageholder.service.core.rules import MAX_BATCH_ENTRIES, MAX_RANGE_PAGES
from tests.api.conftest import NORMAL, Api, assert_problem


def pages(n: int) -> list[dict[str, int]]:
    return [{"pfn": NORMAL + i, "order": 0} for i in range(n)]


def ranges(*sizes: int) -> list[dict[str, int]]:
    return [{"start_pfn": NORMAL + (i << 20), "nr_pages": n} for i, n in enumerate(sizes)]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (json.dumps({"holder": "a", "pages": pages(3)}), 3),
        (json.dumps({"pages": pages(2), "ranges": ranges(5, 7)}), 14),
        (json.dumps({"ranges": ranges(MAX_RANGE_PAGES), "pages": pages(1)}, indent=2), 2**20 + 1),
        ('{ "pages" : [ ] , "ranges":[]}', 0),
        ('{"holder": "x"}', 0),
        # what the scan cannot be sure of goes on to the route's own check
        ('{"pages": [], "pages": [{"pfn": 1}]}', None),
        ('{"ranges": [{"start_pfn": 1, "nr_pages": 5.0}]}', None),
        ('{"ranges": [{"start_pfn": 1, "nr_pages": "5"}]}', None),
        ('{"ranges": [{"start_pfn": 1, "nr_pages": 0}]}', None),
        (json.dumps({"ranges": ranges(MAX_RANGE_PAGES + 1)}), None),
        ('{"pages": [{"pfn": 1}', None),
    ],
)
async def test_the_count_of_a_raw_body(body: str, expected: int | None) -> None:
    assert await count_entries(body.encode()) == expected


async def test_the_count_of_many_ranges_spans_scan_windows() -> None:
    body = json.dumps({"ranges": ranges(*[3] * 40_000)}).encode()  # ~1.8 MB
    assert await count_entries(body) == 120_000


def spy_on_validation(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the request models a body was validated into during the test, by
    FastAPI or by ``api.fastbatch`` (in slices)."""
    validated: list[str] = []
    original = fastapi_utils._validate_value_with_model_field
    original_read = fastbatch.read_batch

    def validate(*, field: Any, **kw: Any) -> Any:
        if kw.get("loc") == ("body",):
            validated.append(getattr(field.field_info.annotation, "__name__", "?"))
        return original(field=field, **kw)

    async def read(doc: Any, *, unset: bool) -> BatchBody | None:
        validated.append("BatchUnsetRequest" if unset else "BatchSetRequest")
        return await original_read(doc, unset=unset)

    monkeypatch.setattr(fastapi_utils, "_validate_value_with_model_field", validate)
    monkeypatch.setattr(fastbatch, "read_batch", read)
    return validated


@pytest.mark.parametrize(
    ("route", "model"), [("batch-set", "BatchSetRequest"), ("batch-unset", "BatchUnsetRequest")]
)
async def test_a_holders_oversized_batch_is_refused_before_validation(
    api: Api, monkeypatch: pytest.MonkeyPatch, route: str, model: str
) -> None:
    await api.add_holder("nic0")
    validated = spy_on_validation(monkeypatch)
    body = {"pages": pages(MAX_BATCH_ENTRIES - 9), "ranges": ranges(4, 6)}
    async with api.as_holder("nic0") as nic0:
        answer = await nic0.post(f"/v1/holds/{route}", json=body)
        problem = assert_problem(answer, 413, "payload_too_large")
        assert problem["detail"] == too_many(MAX_BATCH_ENTRIES + 1)
        assert validated == []
        # one entry fewer is a batch like any other (and was validated)
        body["ranges"] = ranges(4, 5)
        assert (await nic0.post(f"/v1/holds/{route}", json=body)).status_code == 200
        assert validated == [model]


async def test_an_oversized_batch_with_a_bad_entry_is_refused_by_its_count(api: Api) -> None:
    """Validation would have answered 422 for the last page; the count comes first."""
    bad = {"holder": "nic0", "pages": [*pages(MAX_BATCH_ENTRIES), {"pfn": -1, "order": 0}]}
    await api.add_holder("nic0")
    answer = await api.admin.post("/v1/holds/batch-set", json=bad)
    problem = assert_problem(answer, 413, "payload_too_large")
    assert problem["detail"] == too_many(MAX_BATCH_ENTRIES + 1)


async def test_an_oversized_batch_the_scan_cannot_read_gets_the_same_413(api: Api) -> None:
    """Keys spelt with escapes pass the scan; the route's own check answers the same."""
    await api.add_holder("nic0")
    body = json.dumps({"holder": "nic0", "pages": pages(MAX_BATCH_ENTRIES + 1)})
    escaped = body.replace('"pages"', '"p\\u0061ges"')
    plain = await api.admin.post(
        "/v1/holds/batch-set", content=body, headers={"content-type": "application/json"}
    )
    late = await api.admin.post(
        "/v1/holds/batch-set", content=escaped, headers={"content-type": "application/json"}
    )
    assert_problem(plain, 413, "payload_too_large")
    assert late.status_code == 413 and late.json() == plain.json()


async def test_other_requests_pass_untouched(api: Api) -> None:
    await api.add_holder("nic0")
    answer = await api.admin.post(
        "/v1/holds/batch-set", json={"holder": "nic0", "ranges": ranges(MAX_BATCH_ENTRIES)}
    )
    assert answer.status_code == 200 and len(answer.json()["results"]) == MAX_BATCH_ENTRIES
    assert (await api.admin.get(f"/v1/pages/{NORMAL}")).json()["holder"] == "nic0"
