"""Big answers are encoded in slices: the same JSON, with the loop turning in between."""

from __future__ import annotations

import asyncio
import json

from pageholder.service.core.bigjson import encode
from pageholder.service.core.slices import SLICE


async def test_encoded_in_slices_it_reads_back_as_the_document() -> None:
    failures = [{"holder": "nic0", "pfn": i, "reason": "release_failed"} for i in range(3 * SLICE)]
    document = {"code": "offline_failed", "report": {"block": 7, "failures": failures, "x": 1}}
    turns = 0
    encoding = asyncio.create_task(encode(document, ["report", "failures"]))
    while not encoding.done():
        turns += 1
        await asyncio.sleep(0)
    assert json.loads(await encoding) == document
    assert turns >= 3  # other tasks ran between its slices


async def test_empty_and_lone_lists() -> None:
    assert json.loads(await encode({"results": []}, ["results"])) == {"results": []}
    one = {"a": {"b": [1, "é"]}}
    assert json.loads(await encode(one, ["a", "b"])) == one
