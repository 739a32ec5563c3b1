"""Batch bodies validated in slices (batchbody.py, fastbatch.py; issue 11, finding 4).

``read_batch`` accepts a body only where pydantic's model would accept it, with the
same values (hypothesis draws bodies around the rules); everything else goes to the
FastAPI route. Two apps get the same batch requests, one with ``FastBatches``, one
without: status and body must match byte for byte, the 422 documents of malformed
bodies included, and the fast path must have answered the good ones. A 65,536-entry
body is validated, and its answer encoded, with the loop turning in between.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pageholder.service.api import create_app, fastbatch
from pageholder.service.api.batchbody import BatchBody, of_model, read_batch
from pageholder.service.api.fastbatch import FastBatches
from pageholder.service.api.routes.batches import _response
from pageholder.service.api.schemas import BatchSetRequest, BatchUnsetRequest
from pageholder.service.core import collector
from pageholder.service.core.batch import BatchItem
from pageholder.service.core.bulk import CreatedRun
from pageholder.service.core.radix import MAX_ORDER
from pageholder.service.core.rules import HOLDER_NAME, MAX_PFN, MAX_RANGE_PAGES
from pageholder.service.settings import Settings

from .conftest import ADMIN_TOKEN, NORMAL, ScriptedCaller

# -- read_batch against the pydantic models ----------------------------------------------

EDGE_INTS = [0, 1, 9, MAX_ORDER, MAX_ORDER + 1, -1, MAX_PFN, MAX_PFN + 1, MAX_RANGE_PAGES + 1]
odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1.0, 0.0, "1", "0", "true", "a", "", [], {}]),
)
edges = st.sampled_from(EDGE_INTS)
names = st.from_regex(HOLDER_NAME, fullmatch=True)
valid_bodies = st.fixed_dictionaries(
    {},
    optional={
        "holder": st.none() | names,
        "overwrite": st.booleans(),
        "atomic": st.booleans(),
        "pages": st.lists(
            st.fixed_dictionaries(
                {"pfn": st.integers(0, MAX_PFN)}, optional={"order": st.integers(0, MAX_ORDER)}
            ),
            max_size=4,
        ),
        "ranges": st.lists(
            st.fixed_dictionaries(
                {"start_pfn": st.integers(0, MAX_PFN), "nr_pages": st.integers(1, MAX_RANGE_PAGES)}
            ),
            max_size=3,
        ),
    },
)
#: where a mutation puts its value: a top-level key, or a key of the first page or range
PLACES = [
    "holder", "overwrite", "atomic", "pages", "ranges", "extra",
    "pages.pfn", "pages.order", "pages.x", "ranges.start_pfn", "ranges.nr_pages", "ranges.x",
    "pages.-pfn", "ranges.-nr_pages", "pages.item", "ranges.item",
]  # fmt: skip
odd_names = st.sampled_from(["A", "a b", "-a", "x" * 64, "x" * 65, "a\n", "é", "a\u0131", ""])


def mutated(doc: dict[str, Any], place: str, value: Any) -> Any:
    """``doc`` with ``value`` at ``place`` (a "-key" deletes the key)."""
    doc = json.loads(json.dumps(doc))
    top, _, key = place.partition(".")
    if not key:
        doc[top] = value
        return doc
    entries = doc.setdefault(top, [])
    if not entries:
        entries.append({"pfn": 0} if top == "pages" else {"start_pfn": 0, "nr_pages": 1})
    if key == "item":
        entries[0] = value
    elif key.startswith("-"):
        entries[0].pop(key[1:], None)
    else:
        entries[0][key] = value
    return doc


bodies = st.one_of(
    valid_bodies,
    st.builds(
        mutated,
        valid_bodies,
        st.sampled_from(PLACES),
        st.one_of(edges, odd_values, odd_names, st.integers()),
    ),
    odd_values,
)


@pytest.mark.parametrize(("unset", "model"), [(False, BatchSetRequest), (True, BatchUnsetRequest)])
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=bodies)
def test_read_batch_takes_only_what_pydantic_takes_and_reads_it_alike(
    unset: bool, model: type[BatchSetRequest | BatchUnsetRequest], doc: Any
) -> None:
    read = asyncio.run(read_batch(doc, unset=unset))
    try:
        validated: BatchBody | None = of_model(model.model_validate(doc))
    except ValidationError:
        validated = None
    if read is not None:
        assert read == validated
    if validated is None:
        assert read is None


async def test_a_canonical_body_is_read_alike() -> None:
    doc = {
        "holder": "nic0",
        "overwrite": True,
        "atomic": False,
        "pages": [{"pfn": NORMAL, "order": 9}, {"pfn": 5}],
        "ranges": [{"start_pfn": NORMAL, "nr_pages": MAX_RANGE_PAGES}],
    }
    read = await read_batch(doc, unset=False)
    assert read is not None
    assert read == of_model(BatchSetRequest.model_validate(doc))
    assert await read_batch({"pages": [{"pfn": 5, "order": 0}]}, unset=True) == BatchBody(
        None, False, False, [(5, 0)], []
    )


# -- the loop turns while a big batch is read and answered --------------------------------


async def turns_during(work: Awaitable[Any]) -> tuple[Any, int]:
    """Run ``work``; count how many times another task got the loop meanwhile."""
    turns = 0
    done = False

    async def probe() -> None:
        nonlocal turns
        while not done:
            await asyncio.sleep(0)
            turns += 1

    task = asyncio.create_task(probe())
    await asyncio.sleep(0)  # the probe is running
    before = turns
    try:
        result = await work
    finally:
        done = True
        await task
    return result, turns - before


async def test_a_65536_entry_body_is_read_with_the_loop_turning() -> None:
    doc = json.loads(json.dumps({"pages": [{"pfn": NORMAL + i} for i in range(65536)]}))
    read, turns = await turns_during(read_batch(doc, unset=False))
    assert read is not None and len(read.pages) == 65536
    assert turns >= 65536 // 4096 - 1  # a slice is at most SLICE entries


async def test_a_65536_result_answer_is_encoded_with_the_loop_turning() -> None:
    items = [BatchItem(NORMAL + i, 0, "unset") for i in range(65536)]
    answer, turns = await turns_during(_response(items))
    assert turns >= 65536 // 4096 - 1
    results = json.loads(answer.body)["results"]
    assert results[-1] == {"pfn": NORMAL + 65535, "order": 0, "status": "unset"}
    assert len(results) == 65536


DETAIL = 'pfn 2 is "odd"\n'


async def test_an_answer_reads_as_the_documented_model() -> None:
    items: list[BatchItem | CreatedRun] = [
        BatchItem(1, 0, "created"),
        CreatedRun(NORMAL, 3),
        BatchItem(2, 1, "error", "misaligned", DETAIL),
        BatchItem(4, 2, "overwritten"),
    ]
    body = json.loads((await _response(items)).body)
    assert body["results"] == [
        {"pfn": 1, "order": 0, "status": "created"},
        *({"pfn": NORMAL + i, "order": 0, "status": "created"} for i in range(3)),
        {"pfn": 2, "order": 1, "status": "error", "code": "misaligned", "detail": DETAIL},
        {"pfn": 4, "order": 2, "status": "overwritten"},
    ]


# -- the same answers with and without FastBatches ----------------------------------------


def fast_batches(app: object) -> FastBatches:
    layer = getattr(app, "middleware_stack", None)
    while layer is not None and not isinstance(layer, FastBatches):
        layer = getattr(layer, "app", None)
    assert isinstance(layer, FastBatches)
    return layer


async def side(fast: bool) -> AsyncIterator[tuple[object, httpx.AsyncClient, dict[str, str]]]:
    app = create_app(
        Settings(data_dir=":memory:", admin_token=ADMIN_TOKEN), release_caller=ScriptedCaller()
    )
    if not fast:
        app.user_middleware = [m for m in app.user_middleware if m.cls is not FastBatches]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            tokens = {"admin": ADMIN_TOKEN}
            for name in ("a", "b"):
                answer = await client.post(
                    "/v1/holders",
                    json={"name": name},
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                )
                tokens[name] = answer.json()["token"]
            yield app, client, tokens


JSON = {"Content-Type": "application/json"}
P = NORMAL
SET, UNSET = "/v1/holds/batch-set", "/v1/holds/batch-unset"
# (path, who, headers, body, answered by the fast path)
CASES: list[tuple[str, str | None, dict[str, str], bytes, bool]] = [
    (SET, "admin", JSON, b'{"holder": "a", "pages": [{"pfn": %d}]}' % P, True),
    (SET, "admin", JSON, b'{"holder": "a", "pages": [{"pfn": %d, "order": 9}]}' % P, True),
    (SET, "b", JSON, b'{"ranges": [{"start_pfn": %d, "nr_pages": 600}]}' % P, True),
    (SET, "b", JSON, b'{"pages": [{"pfn": %d}], "atomic": true}' % (P + 4096), True),
    (SET, "b", JSON, b'{"pages": [{"pfn": %d}], "atomic": true}' % P, True),  # 409
    (SET, "b", JSON, b'{"holder": "a", "pages": []}', True),  # 403
    (SET, "admin", JSON, b'{"pages": [{"pfn": 1}]}', True),  # the admin names no holder
    (SET, "admin", JSON, b'{"holder": "zz", "pages": [{"pfn": 1}]}', True),  # 404
    (SET, "admin", JSON, b'{"holder": "a", "overwrite": true, "pages": [{"pfn": %d}]}' % P, True),
    (SET, "admin", JSON, b'{"holder": "a", "pages": [{"pfn": 3, "order": 1}, {"pfn": 0}]}', True),
    # malformed: FastAPI's answers
    (SET, "admin", JSON, b'{"holder": "a", "pages": [{"pfn": -1}]}', False),
    (SET, "admin", JSON, b'{"holder": "a", "pages": [{"pfn": "5"}]}', False),
    (SET, "admin", JSON, b'{"holder": "a", "pages": [{"pfn": 5.0}]}', False),
    (SET, "admin", JSON, b'{"holder": "a", "pages": [{"pfn": 5, "order": 19}]}', False),
    (SET, "admin", JSON, b'{"holder": "a", "pages": [{"pfn": 5, "x": 1}]}', False),
    (SET, "admin", JSON, b'{"holder": "a", "pages": [{"order": 1}]}', False),
    (SET, "admin", JSON, b'{"holder": "a", "pages": [5]}', False),
    (SET, "admin", JSON, b'{"holder": "a", "pages": {"pfn": 5}}', False),
    (SET, "admin", JSON, b'{"holder": "A", "pages": []}', False),
    (SET, "admin", JSON, b'{"holder": "a", "atomic": "yes"}', False),
    (SET, "admin", JSON, b'{"holder": "a", "atomic": 1}', False),
    (SET, "admin", JSON, b'{"holder": "a", "ranges": [{"start_pfn": 1, "nr_pages": 0}]}', False),
    (SET, "admin", JSON, b'{"holder": "a", "ranges": [{"start_pfn": 1}]}', False),
    (SET, "admin", JSON, b'{"holder": "a", "unknown": 1}', False),
    (SET, "admin", JSON, b'{"holder": "a", "pages": [{"pfn": 5}]', False),  # not JSON
    (SET, "admin", JSON, b"[]", False),
    (SET, "admin", JSON, b"null", False),
    (SET, "admin", {"Content-Type": "text/plain"}, b'{"holder": "a"}', False),
    (SET, "admin", {}, b"", False),  # no body at all
    (SET, "admin", JSON, b"", False),
    (SET, None, JSON, b'{"holder": "a"}', False),  # 401
    (SET, "nobody", JSON, b'{"holder": "a"}', False),  # 401
    # unsets
    (UNSET, "admin", JSON, b'{"pages": [{"pfn": %d}, {"pfn": %d}]}' % (P, P + 1), True),
    (UNSET, "b", JSON, b'{"ranges": [{"start_pfn": %d, "nr_pages": 3}]}' % P, True),
    (UNSET, "b", JSON, b'{"holder": "a", "pages": []}', True),  # 403
    (UNSET, "admin", JSON, b'{"pages": [{"pfn": %d}], "atomic": true}' % (P + 7), True),
    (UNSET, "admin", JSON, b'{"overwrite": true, "pages": []}', False),  # not an unset's
    (UNSET, "admin", JSON, b'{"pages": [{"pfn": -3}]}', False),
]


async def test_both_paths_answer_alike_and_the_fast_one_takes_the_good_ones() -> None:
    async for fast_app, fast, fast_tokens in side(True):
        async for _, slow, slow_tokens in side(False):
            counter = fast_batches(fast_app)
            for path, who, headers, body, taken in CASES:
                before = counter.answered
                answers = []
                for client, tokens in ((fast, fast_tokens), (slow, slow_tokens)):
                    sent = dict(headers)
                    if who is not None:
                        sent["Authorization"] = f"Bearer {tokens.get(who, 'no-such-token')}"
                    async with asyncio.timeout(30):  # a body read and not replayed: a hang
                        answers.append(await client.post(path, content=body, headers=sent))
                one, other = answers
                case = (path, who, body)
                assert one.status_code == other.status_code, case
                assert one.headers["content-type"] == other.headers["content-type"], case
                assert one.content == other.content, case
                assert counter.answered - before == taken, case


async def test_full_collections_wait_for_a_whole_batch_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Parsing and answering too, not only the apply (core.collector says why)."""
    seen: list[int] = []
    original = fastbatch.read_batch

    async def read(doc: Any, *, unset: bool) -> BatchBody | None:
        seen.append(gc.get_threshold()[2])
        return await original(doc, unset=unset)

    monkeypatch.setattr(fastbatch, "read_batch", read)
    threshold = gc.get_threshold()
    async for _, client, tokens in side(True):
        body = b'{"holder": "a", "pages": [{"pfn": %d}]}' % P
        headers = {**JSON, "Authorization": f"Bearer {tokens['admin']}"}
        assert (await client.post(SET, content=body, headers=headers)).status_code == 200
    assert seen == [collector.NEVER]
    assert gc.get_threshold() == threshold
