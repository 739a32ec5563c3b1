"""``slicedjson.loads`` reads what ``json.loads`` reads, or says it cannot (None), and a
2.6 MB batch body is read with the loop turning in between (issue 11, finding 4)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pageholder.service.api import slicedjson
from pageholder.service.core import slices

from .test_fast_batch import turns_during

FAILED = object()


def reference(text: bytes) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return FAILED


def same(got: Any, expected: Any) -> bool:
    """Equal, key order included (NaN equal to itself)."""
    return json.dumps(got) == json.dumps(expected)


def check(text: bytes) -> Any:
    got = asyncio.run(slicedjson.loads(text))
    expected = reference(text)
    if expected is FAILED:
        assert got is None, text
    elif got is not None:
        assert same(got, expected), text
    return got


TRICKY = '},{ }] \\" [ { ] , \\n \u00e9 \\ud800'
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**60), 2**60),
    st.floats(allow_nan=False),
    st.text(alphabet=st.sampled_from(list(TRICKY) + ["a", "}", "]", ",", '"']), max_size=8),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["pfn", "order", "a", "}", '"', "pages"]), inner, max_size=3
        )
    ),
    max_leaves=12,
)
items = st.one_of(
    st.fixed_dictionaries({"pfn": st.integers(0, 2**52)}, optional={"order": st.integers(0, 18)}),
    st.dictionaries(st.sampled_from(["pfn", "x", "},{"]), values, max_size=2),
)
documents = st.dictionaries(
    st.sampled_from(["holder", "pages", "ranges", "atomic", "x", "pages"]),
    st.one_of(st.lists(items, max_size=12), values),
    max_size=4,
)


@st.composite
def texts(draw: st.DrawFn) -> bytes:
    """A document as some client might write it, sometimes damaged."""
    doc = draw(st.one_of(documents, documents, values))
    indent = draw(st.sampled_from([None, 0, 1, "\t", " \r\n"]))
    separators = draw(st.sampled_from([None, (",", ":"), (" ,  ", " : ")]))
    text = json.dumps(doc, indent=indent, separators=separators, ensure_ascii=draw(st.booleans()))
    damage = draw(st.sampled_from(["", "", "", "cut", "insert", "duplicate"]))
    if damage and text:
        at = draw(st.integers(0, len(text)))
        if damage == "cut":
            text = text[:at] + text[at + 1 :]
        elif damage == "insert":
            text = (
                text[:at]
                + draw(st.sampled_from(["},{", "}]", ",", '"', "]", "{", " "]))
                + text[at:]
            )
        else:
            text = text[:at] + text[at // 2 : at] + text[at:]
    return text.encode("utf-8", "surrogatepass")


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts(), window=st.sampled_from([1, 8, 40, 1 << 16]))
def test_it_reads_what_json_loads_reads_or_nothing(text: bytes, window: int) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(slicedjson, "WINDOW", window)
        check(text)


@pytest.mark.parametrize(
    "text",
    [
        b'{"pages": [{"pfn": 1}, {"pfn": 2, "x": "},{"}, {"pfn": 3}]}',
        b'{"pages": [{"pfn": 1, "x": "}]"}, {"pfn": 2}], "holder": "a"}',
        b'{"pages": [{"pfn": 1, "x": "\\"},{"}, {"pfn": 2}]}',
        b'{"pages": [{"pfn": {"a": [{"b": 1}, {"c": 2}]}}, {"pfn": 2}]}',
        b'{"pages": [{"pfn": 1}], "pages": [{"pfn": 2}]}',  # the last one wins
        b'{"pages": [{"pfn": 1},], "holder": "a"}',  # a trailing comma: not JSON
        b'{"pages": [{"pfn": 1}, 5, {"pfn": 2}]}',
        b'{"pages": [{"pfn": 1}] "holder": "a"}',
        b'{"pages": [{"pfn": 1}]} x',
        b'{"pages": [{"pfn": NaN}, {"pfn": -Infinity}]}',
        b' \n{ "pages" : [ { "pfn" : 1 } ,\t{ "pfn" : 2 } ] , "ranges" : [ ] } \r\n',
        b"\xef\xbb\xbf{}",  # a BOM
        '{"holder": "é"}'.encode("utf-16"),
        b"",
        b"[]",
        b"{}",
        b'{"a": {"b": "}]"}}',
        b'{"pages": [{"pfn": 1}',
    ],
)
@pytest.mark.parametrize("window", [1, 5, 1 << 16])
def test_tricky_texts(text: bytes, window: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slicedjson, "WINDOW", window)
    check(text)


async def test_a_batch_body_is_read_in_windows_with_the_loop_turning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pages = [{"pfn": (1 << 20) + i, "order": 0} for i in range(65536)]
    body = json.dumps({"holder": "bulk", "pages": pages, "ranges": pages[:3]}).encode()
    clock = iter(range(10**9))  # a slow machine: every slice is over at once
    monkeypatch.setattr(slices, "perf_counter", lambda: float(next(clock)))
    doc, turns = await turns_during(slicedjson.loads(body))
    assert doc == json.loads(body)  # read, not given up on
    assert turns >= len(body) // slicedjson.WINDOW - 1  # a turn after each window
    windows = 0
    real = json.loads

    def counted(text: str | bytes) -> Any:
        nonlocal windows
        windows += 1
        return real(text)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(slicedjson.json, "loads", counted)
        assert await slicedjson.loads(body) == doc
    assert windows >= len(body) // slicedjson.WINDOW  # no window much over WINDOW
