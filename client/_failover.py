"""Several registry URLs: which one a call goes to, and when it goes to another.

A leader and its standbys (registries sharing one PostgreSQL store) are given to a
client as several URLs (``PageHolderClient([a, b])`` or ``"a,b"``). ``Endpoints`` is
the list and the **current** URL, shared by every call of a client: sticky, so that
once a call found the leader the next ones go straight there. ``Route`` is one call's
way through them, sans I/O: the twins send to ``route.url`` and ask it what an error
or an answer means::

    what happened                     send the call again?          where to
    503 not_leader                    yes, any call: not applied    the ``leader`` it names
                                                                    if that is a configured
                                                                    URL, else the next one
    connect error, connect or pool    yes, any call: never sent     the next configured URL
      timeout
    no answer after sending (read     idempotent calls only; any    the next configured URL
      timeout, reset, ...)            other raises OutcomeUnknown

A leader URL outside the configured list is never followed: the call carries the
bearer token, and a server's answer must not be able to send it elsewhere. Once every
URL has been tried since the last wait, the next try first waits (the answer's
``Retry-After`` or the retry backoff, whichever is longer); a call gives up after
``failover_timeout_s`` (a takeover takes up to about ten seconds) and raises the last
error: ``NotLeader`` or the transport error.

With one URL nothing of this applies: ``Retry`` alone decides, as it always did.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import httpx

from ._config import Retry, parse_retry_after
from ._exceptions import OutcomeUnknown, transport_error

if TYPE_CHECKING:
    from ._base import Call

__all__ = [
    "FAILOVER_TIMEOUT_S",
    "NOT_LEADER",
    "Endpoints",
    "Route",
    "next_url",
    "not_leader",
    "split_urls",
]

#: Seconds a call keeps looking for the leader before it raises the last error.
FAILOVER_TIMEOUT_S: Final = 15.0
#: The problem code of a standby's answer to every ``/v1`` call.
NOT_LEADER: Final = "not_leader"
#: Errors raised before any byte of the request was sent: safe to send anywhere again.
NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def split_urls(url: str | Sequence[str]) -> tuple[str, ...]:
    """The configured URLs: a sequence, or one string with commas between URLs.

    >>> split_urls("http://a:8000/, http://b:8000")
    ('http://a:8000', 'http://b:8000')
    """
    items = url.split(",") if isinstance(url, str) else list(url)
    urls = tuple(dict.fromkeys(u.strip().rstrip("/") for u in items if u.strip()))
    if not urls:
        raise ValueError("no registry URL given")
    return urls


def not_leader(status: int, problem: dict[str, Any] | None) -> tuple[bool, str | None]:
    """Whether an answer is a standby's ``not_leader``, and the leader URL it names."""
    if status != 503 or not isinstance(problem, dict) or problem.get("code") != NOT_LEADER:
        return False, None
    leader = problem.get("leader")
    return True, leader if isinstance(leader, str) and leader else None


class Endpoints:
    """The configured URLs and the current one (the last that answered as the leader)."""

    def __init__(self, urls: tuple[str, ...]) -> None:
        self.urls = urls
        self.current = urls[0]

    @property
    def several(self) -> bool:
        return len(self.urls) > 1

    def configured(self, url: str | None) -> str | None:
        """``url`` as configured, or None when it is not one of the configured URLs."""
        if url is None:
            return None
        wanted = _normal(url)
        return next((u for u in self.urls if _normal(u) == wanted), None)

    def after(self, url: str) -> str:
        """The configured URL after ``url`` (the first after the last)."""
        index = self.urls.index(url) if url in self.urls else -1
        return self.urls[(index + 1) % len(self.urls)]


class Route:
    """One call's way through the ``Endpoints``: where each attempt goes, and whether
    and when there is another one."""

    def __init__(
        self,
        endpoints: Endpoints,
        call: Call[Any],
        retry: Retry,
        failover_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoints = endpoints
        self.call = call
        self.retry = retry
        self.url = endpoints.current
        self.attempt = 1
        self._clock = clock
        self._deadline = clock() + failover_timeout_s
        self._tried: set[str] = set()
        self._waits = 0

    def failed(self, exc: httpx.RequestError) -> float:
        """No answer to the attempt: seconds to wait before the next one (``self.url``
        says where), or the client's error is raised."""
        call = self.call
        if not self.endpoints.several:
            if not call.retryable or self.attempt >= self.retry.attempts:
                raise transport_error(exc) from exc
            self.attempt += 1
            return self.retry.backoff(self.attempt - 1)
        if not isinstance(exc, NOT_SENT) and not call.replayable:
            raise OutcomeUnknown(call.method, self.url, call.path, exc) from exc
        delay = self._move(None, None)
        if delay is None:
            raise transport_error(exc) from exc
        return delay

    def answered(self, response: httpx.Response, problem: dict[str, Any] | None) -> float | None:
        """An answer (``problem``: its problem document, if any): seconds to wait before
        the next attempt, or None when it is the call's final answer."""
        if self.endpoints.several:
            refused, leader = not_leader(response.status_code, problem)
            if refused:
                return self._move(leader, response.headers.get("Retry-After"))
            self.endpoints.current = self.url
        call = self.call
        if (
            not call.retryable
            or self.attempt >= self.retry.attempts
            or response.status_code not in self.retry.statuses
        ):
            return None
        delay = self.retry.delay(self.attempt, response.headers.get("Retry-After"))
        if delay is not None:
            self.attempt += 1
        return delay

    def _move(self, leader: str | None, retry_after: str | None) -> float | None:
        """Go to the next URL; the wait before it, or None once out of time."""
        self._tried.add(self.url)
        remaining = self._deadline - self._clock()
        if remaining <= 0:
            return None
        target = self.endpoints.configured(leader) or self.endpoints.after(self.url)
        delay = 0.0
        if target in self._tried:  # every candidate had its chance: wait, then again
            self._waits += 1
            asked = parse_retry_after(retry_after) or 0.0
            delay = min(remaining, max(asked, self.retry.backoff(self._waits)))
            self._tried.clear()
        self.url = self.endpoints.current = target
        self.attempt += 1
        return delay


def next_url(endpoints: Endpoints, url: str, leader: str | None) -> str:
    """Where a watch reconnects after ``url`` failed or said it is not the leader."""
    target = endpoints.configured(leader) or endpoints.after(url)
    endpoints.current = target
    return target


def _normal(url: str) -> str:
    """A URL compared loosely: scheme and host in lower case, no trailing slash."""
    try:
        return str(httpx.URL(url.strip())).rstrip("/")  # httpx lowers scheme and host
    except httpx.InvalidURL:
        return url
