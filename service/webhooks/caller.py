"""Signed release calls to holders: the real ``ReleaseCaller``.

One release request becomes one POST per chunk of at most ``chunk_size`` pages, made
one after the other to the holder's ``release_url``. Each chunk is one *delivery*: its
body is serialized once, its ``webhook-id`` stays the same across retries, and every
attempt is signed afresh (new ``webhook-timestamp``) per the Standard Webhooks spec
with the holder's own ``whsec_`` secret::

    {"type": "page.release", "holder": "nic0", "reason": "offline", "block": 17,
     "deadline": "2026-11-26T15:00:00.000Z", "pages": [{"pfn": 557056, "order": 0}]}

How an attempt's answer is read (``observe`` outcome in brackets)::

    2xx, empty body                      every page released          [released]
    2xx, {"released": [..], "failed": [{"pfn": p, "error": ".."}]}
                                         per page; a page in neither  [released,
                                         list failed                   partial, failed]
    2xx, anything else                   release_failed "malformed"   [failed]
    2xx, longer than ``answer_limit``     release_failed "answer too   [failed]
                                         large"; read no further
    3xx                                  release_failed (not followed)[failed]
    409 423 429 503                      temporary: retry after       [temporary]
                                         Retry-After or backoff
    any other status                     release_failed "HTTP <s>: .."[failed]
                                         (of a non-2xx body only its first
                                         ``answer_limit`` bytes are read)
    no answer within the timeout         release_timeout              [timeout]
    connection / transport error         holder_unreachable           [unreachable]
    an address the policy forbids        holder_unreachable "address  [refused]
    (see ``transport``)                  not allowed: ..."; nothing sent or read

Every attempt is bounded by ``min(holder.timeout_s, deadline - now)``; temporary
answers are retried until the deadline, after which the chunk's pages fail with
``deadline_exceeded``. Between two attempts the caller waits the holder's
``Retry-After`` or its own backoff, whichever is longer: the backoff starts at
``backoff_base_s`` (the minimum retry interval, jittered up to half again) and doubles
up to ``backoff_max_s``, so ``Retry-After: 0`` cannot make it hammer a holder. A delivery
makes at most ``max_calls`` attempts; then its pages fail with ``release_failed``. A
wait that would end past the deadline is not slept: the chunk fails at once. The caller
never raises for what a holder does.

An answer is hostile input: its size is bounded by what it can legitimately say
(``answer_limit``: a few KiB plus ``ANSWER_BYTES_PER_PAGE`` per page sent, so at most
about 1 MiB for a chunk of 4096), checked against ``content-length`` before reading and
while streaming; a holder cannot make the registry buffer or parse more.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import random
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

import httpx
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from pageholder.service.core.model import FailureReason, Holder, PageFailure, PageRef, ReleaseAnswer
from pageholder.service.core.slices import Slices
from pageholder.service.webhooks.transport import AddressRefused

__all__ = [
    "DEFAULT_MAX_CALLS",
    "DEFAULT_RETRY_MAX_S",
    "DEFAULT_RETRY_MIN_S",
    "ANSWER_BASE_BYTES",
    "ANSWER_BYTES_PER_PAGE",
    "MAX_ANSWER_BYTES",
    "TEMPORARY_STATUSES",
    "WebhookCaller",
    "answer_limit",
    "new_webhook_secret",
]

#: Statuses that mean "not now": the delivery is retried until the deadline.
TEMPORARY_STATUSES: Final = frozenset({409, 423, 429, 503})
#: How much of a holder's answer goes into a failure's detail.
EXCERPT_CHARS: Final = 200
#: What one page sent may add to an answer: its failure, ``{"pfn": p, "error": "..."}``
#: with an error as long as the part of it that is kept (``EXCERPT_CHARS``), and spaces.
ANSWER_BYTES_PER_PAGE: Final = 256
#: What an answer may take besides its pages: the object, its keys, a refusal's text.
ANSWER_BASE_BYTES: Final = 16 << 10
#: No answer is read past this size, however many pages it answers for.
MAX_ANSWER_BYTES: Final = 4 << 20
#: Attempts one delivery may make (temporary answers included) unless told otherwise.
DEFAULT_MAX_CALLS: Final = 20
#: The minimum wait between two attempts of a delivery, and the most it grows to.
DEFAULT_RETRY_MIN_S: Final = 0.05
DEFAULT_RETRY_MAX_S: Final = 2.0

_NOT_REPORTED: Final = "refused by the holder"


def answer_limit(pages: int) -> int:
    """The most bytes a holder's answer to a call for ``pages`` pages may have: a 2xx
    answer that is longer fails every page of the call; of any other answer only this
    much is read. A release answer lists at most the pages it was sent, so anything
    longer is padding; reading it whole would let a holder make the registry buffer and
    parse megabytes per call (and hold the event loop while it does)."""
    return min(MAX_ANSWER_BYTES, ANSWER_BASE_BYTES + ANSWER_BYTES_PER_PAGE * pages)


def new_webhook_secret() -> str:
    """A fresh Standard Webhooks secret: ``whsec_`` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


@dataclass(frozen=True, slots=True)
class _Temporary:
    """A 'not now' answer: what it said and how long it asked us to wait, if it did."""

    detail: str
    retry_after: float | None


class _TooLarge(Exception):
    def __init__(self, limit: int, pages: int) -> None:
        super().__init__(
            f"answer too large: more than {limit} bytes for {pages} page(s)"
            f" (at most {ANSWER_BASE_BYTES} + {ANSWER_BYTES_PER_PAGE} per page)"
        )


class _Malformed(Exception):
    pass


class _Encoded(Exception):
    def __init__(self, encoding: str) -> None:
        super().__init__(
            f"malformed answer: content-encoding {encoding[:40]!r} (asked for identity)"
        )


class WebhookCaller:
    """Calls holders' release webhooks; implements ``holds.ReleaseCaller``.

    ``client`` is owned by the caller (one per process, closed at shutdown). ``clock``
    is wall-clock epoch seconds, the clock ``deadline`` is measured on; it also stamps
    ``webhook-timestamp``. ``observe(outcome, seconds)`` is told about every HTTP
    attempt (outcomes in the module docstring). ``backoff_base_s`` is the minimum wait
    between two attempts of a delivery, ``max_calls`` the most attempts it makes.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
        chunk_size: int = 4096,
        backoff_base_s: float = DEFAULT_RETRY_MIN_S,
        backoff_max_s: float = DEFAULT_RETRY_MAX_S,
        max_calls: int = DEFAULT_MAX_CALLS,
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        if max_calls < 1:
            raise ValueError("max_calls must be at least 1")
        if not 0 < backoff_base_s <= backoff_max_s:
            raise ValueError("need 0 < backoff_base_s <= backoff_max_s")
        self._client = client
        self._clock = clock
        self._chunk_size = chunk_size
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._max_calls = max_calls
        self._observe = observe

    async def __call__(
        self,
        holder: Holder,
        pages: Sequence[PageRef],
        *,
        reason: str,
        block: int | None,
        deadline: float,
    ) -> ReleaseAnswer:
        if holder.release_url is None:
            return ReleaseAnswer.all_failed(
                pages, FailureReason.NO_RELEASE_HANDLER, "holder has no release handler", 0
            )
        try:
            webhook = Webhook(holder.webhook_secret)
        except (EmptyWebhookSecretError, ValueError):
            # Never send an unsigned release: the holder could not tell it from a forgery.
            return ReleaseAnswer.all_failed(
                pages, FailureReason.RELEASE_FAILED, "holder has no usable webhook secret", 0
            )
        total = ReleaseAnswer()
        for start in range(0, len(pages), self._chunk_size):
            chunk = pages[start : start + self._chunk_size]
            answer = await self._deliver(
                webhook, holder, holder.release_url, chunk, reason, block, deadline
            )
            total.released |= answer.released
            total.failed.update(answer.failed)
            total.calls += answer.calls
        return total

    async def _deliver(
        self,
        webhook: Webhook,
        holder: Holder,
        url: str,
        chunk: Sequence[PageRef],
        reason: str,
        block: int | None,
        deadline: float,
    ) -> ReleaseAnswer:
        """One delivery (one chunk): attempts until a final answer or the deadline."""
        body = _encode(holder.name, reason, block, deadline, chunk)
        msg_id = "msg_" + uuid.uuid4().hex
        calls = 0
        last: _Temporary | None = None
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                return ReleaseAnswer.all_failed(
                    chunk, FailureReason.DEADLINE_EXCEEDED, _deadline_detail(calls, last), calls
                )
            result = await self._attempt(
                webhook, url, msg_id, body, chunk, min(holder.timeout_s, remaining)
            )
            calls += 1
            if isinstance(result, ReleaseAnswer):
                if remaining < holder.timeout_s and _timed_out(result):
                    # cut short by the deadline, not by the holder's own timeout
                    return ReleaseAnswer.all_failed(
                        chunk, FailureReason.DEADLINE_EXCEEDED, _deadline_detail(calls, last), calls
                    )
                result.calls = calls
                return result
            last = result
            if calls >= self._max_calls:
                detail = f"gave up after {calls} attempts; last answer {last.detail}"
                return ReleaseAnswer.all_failed(chunk, FailureReason.RELEASE_FAILED, detail, calls)
            # The holder's Retry-After may lengthen the wait, never shorten it below our
            # own backoff: "Retry-After: 0" from a busy holder must not become a storm.
            wait = max(result.retry_after or 0.0, self._backoff(calls - 1))
            if self._clock() + wait >= deadline:
                # No attempt could start before the deadline: do not sleep just to fail.
                return ReleaseAnswer.all_failed(
                    chunk, FailureReason.DEADLINE_EXCEEDED, _deadline_detail(calls, last), calls
                )
            await asyncio.sleep(wait)

    def _backoff(self, retry: int) -> float:
        """Exponential backoff from ``backoff_base_s`` up to ``backoff_max_s``, jittered
        upwards by up to half (never below the minimum, and retries spread apart)."""
        delay = min(self._backoff_max_s, self._backoff_base_s * 2.0 ** min(retry, 32))
        return delay + random.uniform(0, delay / 2)

    async def _attempt(
        self,
        webhook: Webhook,
        url: str,
        msg_id: str,
        body: bytes,
        chunk: Sequence[PageRef],
        timeout: float,
    ) -> ReleaseAnswer | _Temporary:
        now = self._clock()
        headers = {
            "content-type": "application/json",
            # Answers are read as sent (``aiter_raw``): a compressed one could inflate past
            # any size checked on the wire.
            "accept-encoding": "identity",
            "webhook-id": msg_id,
            "webhook-timestamp": str(math.floor(now)),
            "webhook-signature": webhook.sign(
                msg_id, datetime.fromtimestamp(now, UTC), body.decode("utf-8")
            ),
        }
        started = time.perf_counter()
        outcome, result = await self._send(url, headers, body, chunk, timeout)
        if self._observe is not None:
            self._observe(outcome, time.perf_counter() - started)
        return result

    async def _send(
        self,
        url: str,
        headers: dict[str, str],
        body: bytes,
        chunk: Sequence[PageRef],
        timeout: float,
    ) -> tuple[str, ReleaseAnswer | _Temporary]:
        """Make the request and read the answer; returns ``(outcome, result)``."""
        failed = FailureReason.RELEASE_FAILED
        try:
            request = self._client.build_request(
                "POST", url, content=body, headers=headers, timeout=httpx.Timeout(timeout)
            )
            # httpx's timeout bounds each phase; asyncio.timeout bounds the whole attempt.
            async with asyncio.timeout(timeout):
                response = await self._client.send(request, stream=True, follow_redirects=False)
                try:
                    limit = answer_limit(len(chunk))
                    if 200 <= response.status_code < 300:
                        content = await _read_capped(response, limit, len(chunk))
                    else:  # only an excerpt of it is ever used
                        content = await _read_head(response, limit)
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            detail = f"no answer within {timeout:.3g} s"
            return "timeout", ReleaseAnswer.all_failed(chunk, FailureReason.RELEASE_TIMEOUT, detail)
        except httpx.TransportError as exc:
            unreachable = FailureReason.HOLDER_UNREACHABLE
            refused = _address_refused(exc)
            if refused is not None:
                # Nothing was sent to that address, and nothing from it can be quoted.
                return "refused", ReleaseAnswer.all_failed(chunk, unreachable, str(refused))
            detail = f"cannot reach the holder: {_exc_text(exc)}"
            return "unreachable", ReleaseAnswer.all_failed(chunk, unreachable, detail)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return "failed", ReleaseAnswer.all_failed(chunk, failed, _exc_text(exc))
        except (_TooLarge, _Encoded) as exc:
            return "failed", ReleaseAnswer.all_failed(chunk, failed, str(exc))
        return await _classify(response, content, chunk, self._clock())


def _address_refused(exc: BaseException) -> AddressRefused | None:
    """The ``AddressRefused`` behind an httpx error (httpx raises its own ``from`` it)."""
    seen: BaseException | None = exc
    for _ in range(8):  # a short chain; bounded in case of a cycle
        if seen is None:
            return None
        if isinstance(seen, AddressRefused):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _timed_out(answer: ReleaseAnswer) -> bool:
    return any(f.reason is FailureReason.RELEASE_TIMEOUT for f in answer.failed.values())


async def _classify(
    response: httpx.Response, content: bytes, chunk: Sequence[PageRef], now: float
) -> tuple[str, ReleaseAnswer | _Temporary]:
    status = response.status_code
    failed = FailureReason.RELEASE_FAILED
    if 200 <= status < 300:
        if not content.strip():
            return "released", ReleaseAnswer.all_released(chunk)
        try:
            covered = sum(1 << page.order for page in chunk)
            answer = (await _parse_answer(content, covered)).normalized(chunk)
        except _Malformed as exc:
            return "failed", ReleaseAnswer.all_failed(chunk, failed, f"malformed answer: {exc}")
        answer.calls = 1
        if not answer.failed:
            return "released", answer
        return ("partial" if answer.released else "failed"), answer
    if 300 <= status < 400:
        location = response.headers.get("location")
        detail = f"HTTP {status}: redirect not followed"
        if location:
            detail += f" (location: {location[:EXCERPT_CHARS]})"
        return "failed", ReleaseAnswer.all_failed(chunk, failed, detail)
    text = _error_text(content) or response.reason_phrase
    detail = f"HTTP {status}: {text}" if text else f"HTTP {status}"
    if status in TEMPORARY_STATUSES:
        retry_after = _retry_after(response.headers.get("retry-after"), now)
        return "temporary", _Temporary(detail, retry_after)
    return "failed", ReleaseAnswer.all_failed(chunk, failed, detail)


async def _parse_answer(content: bytes, covered: int) -> ReleaseAnswer:
    """``{"released": [pfn...], "failed": [{"pfn": p, "error": "text"}]}``, both optional
    but not both absent, neither longer than the ``covered`` pages it answers for (a
    holder may list every page of a multi-page hold, no more). Raises ``_Malformed``
    saying what is wrong. The failures are checked in time-bounded slices (``Slices``):
    4096 of them, each with its own error text, are ~10 ms of work; an error text said
    many times becomes one ``PageFailure``."""
    try:
        doc = json.loads(content)
    except ValueError:
        raise _Malformed(f"not JSON: {_excerpt(content)!r}") from None
    if not isinstance(doc, dict):
        raise _Malformed(f"expected an object, got {type(doc).__name__}")
    if "released" not in doc and "failed" not in doc:
        raise _Malformed("an object with neither 'released' nor 'failed'")
    released = doc.get("released", [])
    failures = doc.get("failed", [])
    for key, listed in (("released", released), ("failed", failures)):
        if isinstance(listed, list) and len(listed) > covered:
            raise _Malformed(f"{len(listed)} entries in {key!r} for {covered} page(s) sent")
    if not isinstance(released, list) or not all(_is_pfn(p) for p in released):
        raise _Malformed("'released' must be a list of pfns")
    if not isinstance(failures, list):
        raise _Malformed("'failed' must be a list of {pfn, error} objects")
    failed: dict[int, PageFailure] = {}
    said: dict[str, PageFailure] = {}  # error text -> its failure (holders repeat one)
    slices = Slices()
    for item in failures:
        if not isinstance(item, dict) or not _is_pfn(item.get("pfn")):
            raise _Malformed("'failed' must be a list of {pfn, error} objects")
        error = item.get("error", _NOT_REPORTED)
        if not isinstance(error, str):
            raise _Malformed("a failure's 'error' must be a string")
        failure = said.get(error)
        if failure is None:
            text = _one_line(error[: EXCERPT_CHARS * 4])[:EXCERPT_CHARS] or _NOT_REPORTED
            failure = said[error] = PageFailure(FailureReason.RELEASE_FAILED, text)
        failed[item["pfn"]] = failure
        if slices.due():
            await slices.pause()
    return ReleaseAnswer(released=set(released), failed=failed)


def _is_pfn(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait per ``Retry-After`` (delta-seconds, or an HTTP-date measured
    from ``now``); None if absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


async def _read_capped(response: httpx.Response, limit: int, pages: int) -> bytes:
    """The whole body, or ``_TooLarge`` as soon as it is known to pass ``limit`` bytes
    (from ``content-length`` before reading anything, else while streaming)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _TooLarge(limit, pages)
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise _Encoded(encoding)
    parts: list[bytes] = []
    size = 0
    async for part in response.aiter_raw():
        size += len(part)
        if size > limit:
            raise _TooLarge(limit, pages)
        parts.append(part)
    return b"".join(parts)


async def _read_head(response: httpx.Response, limit: int) -> bytes:
    """At most the first ``limit`` bytes of the body; the rest is never read."""
    parts: list[bytes] = []
    size = 0
    async for part in response.aiter_raw():
        parts.append(part[: limit - size])
        size += len(part)
        if size >= limit:
            break
    return b"".join(parts)


def _encode(
    holder: str, reason: str, block: int | None, deadline: float, pages: Sequence[PageRef]
) -> bytes:
    """The delivery's body, compact JSON; these exact bytes are signed and sent."""
    doc = {
        "type": "page.release",
        "holder": holder,
        "reason": reason,
        "block": block,
        "deadline": _iso_utc(deadline),
        "pages": [{"pfn": p.pfn, "order": p.order} for p in pages],
    }
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


def _iso_utc(ts: float) -> str:
    """``2026-11-26T15:00:00.000Z``: ISO 8601, UTC, milliseconds."""
    stamp = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    return stamp.removesuffix("+00:00") + "Z"


def _deadline_detail(calls: int, last: _Temporary | None) -> str:
    if last is None:
        if calls:
            return "deadline passed while waiting for the holder's answer"
        return "deadline passed before the release call was made"
    attempts = "1 attempt" if calls == 1 else f"{calls} attempts"
    return f"deadline exceeded after {attempts}; last answer {last.detail}"


def _error_text(content: bytes) -> str:
    """A holder's error, for a detail: its JSON ``error``/``detail``, else the body."""
    try:
        doc = json.loads(content)
    except ValueError:
        return _excerpt(content)
    if isinstance(doc, dict):
        for key in ("error", "detail"):
            if isinstance(doc.get(key), str) and doc[key].strip():
                return _one_line(doc[key])[:EXCERPT_CHARS]
    return _excerpt(content)


def _excerpt(content: bytes) -> str:
    return _one_line(content[: EXCERPT_CHARS * 4].decode("utf-8", "replace"))[:EXCERPT_CHARS]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _exc_text(exc: Exception) -> str:
    text = _one_line(str(exc))
    return text or type(exc).__name__
