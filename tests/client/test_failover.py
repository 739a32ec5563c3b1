"""A client with several URLs (a leader and its standbys), against scripted registries.

``Cluster`` is an ``httpx.MockTransport`` handler that plays several registries by host:
each is the leader, a standby (503 ``not_leader`` naming whoever it is told), down
(connection refused), or silent (the request is sent, no answer comes). Every request
is recorded, so each test says where every attempt went; the rules are those of
``client/_failover.py``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pageholder.client import (
    AsyncPageHolderClient,
    ConnectError,
    NotLeader,
    OutcomeUnknown,
    PageHolderClient,
    Retry,
    TimeoutException,
)
from pageholder.client._failover import Endpoints, split_urls

A, B, C = "http://a.test:8000", "http://b.test:8000", "http://c.test:8000"
ELSEWHERE = "http://evil.test:8000"
LEASE = {"state": "live", "expires_at": "2026-11-26T15:00:10Z", "ttl_s": 3.0}
FAST = Retry(backoff_s=0.01, max_backoff_s=0.05)
HOLDER = {
    "name": "nic0",
    "release_url": None,
    "has_release_handler": False,
    "timeout_s": 10.0,
    "description": "",
    "created": "2026-11-26T15:00:00Z",
    "held_pages": 0,
    "holds": 0,
    "last_error": None,
    "lease": None,
    "token": "nic0-token",
    "webhook_secret": "whsec_x",
}
Roles = dict[str, str]  # URL -> "leader" | "standby" | "down" | "silent"


class Cluster:
    """Registries by URL; ``leader_hint`` is what standbys name as the leader."""

    def __init__(self, roles: Roles, leader_hint: str | None = None) -> None:
        self.roles = roles
        self.leader_hint = leader_hint
        self.retry_after = "0"
        self.seen: list[tuple[str, str, str]] = []  # (url, method, path)
        self.lock = threading.Lock()
        self.events: dict[str, list[str]] = {}  # URL -> SSE text it streams

    def __call__(self, request: httpx.Request) -> httpx.Response:
        url = f"{request.url.scheme}://{request.url.host}:{request.url.port}"
        with self.lock:
            self.seen.append((url, request.method, request.url.path))
        role = self.roles.get(url, "down")
        if role == "down":
            raise httpx.ConnectError("connection refused", request=request)
        if role == "silent":
            raise httpx.ReadTimeout("timed out", request=request)
        if role == "standby":
            problem = {
                "type": "urn:pageholder:problem:not_leader",
                "title": "Not the leader",
                "status": 503,
                "detail": "this registry is a standby",
                "code": "not_leader",
                "leader": self.leader_hint,
            }
            return httpx.Response(
                503,
                json=problem,
                headers={
                    "Retry-After": self.retry_after,
                    "content-type": "application/problem+json",
                },
            )
        return self.lead(url, request)

    def lead(self, url: str, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/events":
            body = self.events[url].pop(0) if self.events.get(url) else ""
            return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})
        if path.endswith("/keepalive"):
            return httpx.Response(200, json=LEASE)
        if path == "/v1/holders" and request.method == "GET":
            return httpx.Response(200, json={"items": []})
        if path.startswith("/v1/holders"):
            return httpx.Response(201 if request.method == "POST" else 200, json=HOLDER)
        if path.startswith("/v1/holds/"):
            return httpx.Response(200, json={"results": []})
        return httpx.Response(200, json={"items": []})

    def urls(self) -> list[str]:
        return [url for url, _, _ in self.seen]


def client(cluster: Cluster, urls: Any, **kwargs: Any) -> PageHolderClient:
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("failover_timeout_s", 2.0)
    return PageHolderClient(urls, "t", transport=httpx.MockTransport(cluster), **kwargs)


# -- the URL list ---------------------------------------------------------------------


def test_urls_come_as_a_sequence_or_one_string_with_commas() -> None:
    assert split_urls([A + "/", B]) == (A, B)
    assert split_urls(f" {A}, {B}/ ,") == (A, B)
    assert split_urls(A) == (A,)
    assert split_urls([A, A]) == (A,)  # the same URL twice is one
    with pytest.raises(ValueError, match="no registry URL"):
        split_urls(" , ")
    assert repr(PageHolderClient(A)) == f"PageHolderClient({A!r})"
    assert repr(PageHolderClient(f"{A},{B}")) == f"PageHolderClient({[A, B]!r})"


def test_a_leader_url_is_recognised_loosely_but_only_among_the_configured_ones() -> None:
    endpoints = Endpoints((A, B))
    assert endpoints.configured("HTTP://B.TEST:8000/") == B
    assert endpoints.configured(ELSEWHERE) is None
    assert endpoints.configured(None) is None
    assert endpoints.after(A) == B and endpoints.after(B) == A


# -- not_leader -----------------------------------------------------------------------


def test_not_leader_goes_to_the_leader_it_names_and_stays_there() -> None:
    cluster = Cluster({A: "standby", B: "standby", C: "leader"}, leader_hint=C)
    with client(cluster, [A, B, C]) as registry:
        assert registry.list_holders() == []
        assert cluster.urls() == [A, C]  # straight to C, not through B
        assert registry.url == C
        registry.get_holder("nic0")
        assert cluster.urls() == [A, C, C]  # sticky


def test_a_leader_outside_the_configured_urls_is_never_called() -> None:
    # The call carries the bearer token: a server must not be able to send it elsewhere.
    cluster = Cluster({A: "standby", ELSEWHERE: "leader", B: "leader"}, leader_hint=ELSEWHERE)
    with client(cluster, [A, B]) as registry:
        registry.list_zones()
    assert cluster.urls() == [A, B]


def test_not_leader_without_a_leader_tries_the_next_url() -> None:
    cluster = Cluster({A: "standby", B: "leader"}, leader_hint=None)
    with client(cluster, f"{A},{B}") as registry:
        registry.list_zones()
    assert cluster.urls() == [A, B]


def test_a_call_that_is_not_idempotent_follows_not_leader_too() -> None:
    # not_leader means "not applied": creating a holder on the leader is its first time.
    cluster = Cluster({A: "standby", B: "leader"}, leader_hint=B)
    with client(cluster, [A, B]) as registry:
        assert registry.create_holder("nic0").name == "nic0"
    assert cluster.seen == [(A, "POST", "/v1/holders"), (B, "POST", "/v1/holders")]


def test_while_nobody_leads_the_client_waits_then_gives_up_with_not_leader() -> None:
    cluster = Cluster({A: "standby", B: "standby"}, leader_hint=None)
    cluster.retry_after = "0.05"
    with client(cluster, [A, B], failover_timeout_s=0.5) as registry:
        started = time.monotonic()
        with pytest.raises(NotLeader) as raised:
            registry.list_zones()
        took = time.monotonic() - started
    assert raised.value.status == 503 and raised.value.leader is None
    # Each round (A, then B) ends with a wait of at least Retry-After: bounded, no spin.
    assert 0.5 <= took < 5.0
    assert 4 <= len(cluster.seen) <= 2 * (0.5 / 0.05 + 1)
    assert set(cluster.urls()) == {A, B}


def test_a_takeover_in_the_middle_of_the_wait_is_found() -> None:
    cluster = Cluster({A: "leader", B: "standby"}, leader_hint=A)
    with client(cluster, [A, B]) as registry:
        registry.list_zones()
        cluster.roles = {A: "down", B: "standby"}  # A died; B has not taken over yet
        cluster.leader_hint = None
        timer = threading.Timer(0.2, lambda: cluster.roles.update({B: "leader"}))
        timer.start()
        try:
            registry.list_zones()
        finally:
            timer.join()
        assert registry.url == B
    assert cluster.urls()[-1] == B


# -- no answer ------------------------------------------------------------------------


def test_a_refused_connection_moves_any_call_to_the_next_url() -> None:
    # Never sent: even a call that is not idempotent may go elsewhere.
    cluster = Cluster({A: "down", B: "leader"})
    with client(cluster, [A, B]) as registry:
        registry.create_holder("nic0")
        assert registry.url == B
        registry.create_holder("nic0")
    assert cluster.seen == [(A, "POST", "/v1/holders"), *[(B, "POST", "/v1/holders")] * 2]


def test_a_lost_answer_of_a_call_that_is_not_idempotent_is_reported_not_replayed() -> None:
    cluster = Cluster({A: "silent", B: "leader"})
    with client(cluster, [A, B]) as registry:
        with pytest.raises(OutcomeUnknown) as raised:
            registry.release(1048576)
        with pytest.raises(OutcomeUnknown):
            registry.offline(40)
        with pytest.raises(OutcomeUnknown):
            registry.batch_unset(pages=[1048576], atomic=True)
    error = raised.value
    assert (error.method, error.url, error.path) == ("POST", A, "/v1/pages/1048576/release")
    assert "may have been applied" in str(error)
    assert isinstance(error.__cause__, httpx.ReadTimeout)
    assert cluster.urls() == [A, A, A]  # each sent once, to A only


@pytest.mark.parametrize(
    ("name", "call", "path"),
    [
        ("get", lambda c: c.list_zones(), "/v1/zones"),
        ("put", lambda c: c.hold(1048576), "/v1/pages/1048576/hold"),
        ("delete", lambda c: c.unset(1048576), "/v1/pages/1048576/hold"),
        ("patch", lambda c: c.update_holder("nic0", description="x"), "/v1/holders/nic0"),
        ("keepalive", lambda c: c.keepalive("nic0"), "/v1/holders/nic0/keepalive"),
        ("batch-set", lambda c: c.batch_set(pages=[1], overwrite=True), "/v1/holds/batch-set"),
        ("batch-unset", lambda c: c.batch_unset(pages=[1]), "/v1/holds/batch-unset"),
    ],
)
def test_a_lost_answer_of_an_idempotent_call_is_sent_to_the_next_url(
    name: str, call: Callable[[PageHolderClient], object], path: str
) -> None:
    cluster = Cluster({A: "silent", B: "leader"})
    with client(cluster, [A, B]) as registry:
        try:
            call(registry)
        except Exception as exc:  # the scripted answer may not parse; where it went counts
            assert not isinstance(exc, OutcomeUnknown | TimeoutException), exc
    assert [(u, p) for u, _, p in cluster.seen] == [(A, path), (B, path)]


def test_nobody_reachable_raises_the_transport_error_after_the_failover_timeout() -> None:
    cluster = Cluster({A: "down", B: "down"})
    with client(cluster, [A, B], failover_timeout_s=0.3) as registry:
        with pytest.raises(ConnectError):
            registry.list_zones()
    assert len(cluster.seen) >= 4  # A, B, wait, A, B, ...


# -- one URL: as before ---------------------------------------------------------------


def test_with_one_url_nothing_changes() -> None:
    cluster = Cluster({A: "silent"})
    with client(cluster, A, retry=Retry(attempts=2, backoff_s=0)) as registry:
        with pytest.raises(TimeoutException) as raised:  # not OutcomeUnknown
            registry.release(1048576)
        assert not isinstance(raised.value, OutcomeUnknown)
        with pytest.raises(TimeoutException):
            registry.list_zones()  # retried by Retry: 2 attempts
    assert cluster.urls() == [A, A, A]
    standby = Cluster({A: "standby"}, leader_hint=B)
    with client(standby, A, retry=Retry(attempts=2, backoff_s=0)) as registry:
        with pytest.raises(NotLeader) as refused:
            registry.list_zones()
        assert refused.value.leader == B  # said, not followed: B is not configured
    assert standby.urls() == [A, A]


# -- keepalives and watches -----------------------------------------------------------


def test_keepalives_follow_the_leader() -> None:
    cluster = Cluster({A: "standby", B: "leader"}, leader_hint=B)
    with client(cluster, [A, B], holder="nic0") as registry:
        keepalive = registry._keepalives[0]
        deadline = time.monotonic() + 5
        while keepalive.schedule.sent < 2:
            assert time.monotonic() < deadline, "no keepalive got through"
            time.sleep(0.01)
        assert keepalive.schedule.failures == 0
    assert cluster.urls()[:3] == [A, B, B]


def sse(*revisions: int) -> str:
    frames = []
    for rev in revisions:
        data = {"rev": rev, "type": "hold.created", "time": "2026-11-26T15:00:00Z"}
        data |= {"holder": "nic0", "holds": [{"pfn": rev, "order": 0}]}
        frames.append(f"id: {rev}\nevent: hold.created\ndata: {json.dumps(data)}\n\n")
    return "".join(frames)


def test_a_watch_resumes_on_the_new_leader_without_gaps_or_duplicates() -> None:
    cluster = Cluster({A: "leader", B: "standby"}, leader_hint=A)
    cluster.events = {A: [sse(1, 2)], B: [sse(2, 3, 4)]}  # B resends 2: the client skips it

    def failover() -> None:  # once A's stream ended: A is gone, B leads
        cluster.roles = {A: "down", B: "leader"}

    with client(cluster, [A, B]) as registry:
        revisions = []
        for event in registry.watch(since=0):
            revisions.append(event.rev)
            if event.rev == 2:
                failover()
            if event.rev == 4:
                break
    assert revisions == [1, 2, 3, 4]
    requests = [(u, p) for u, _, p in cluster.seen]
    assert requests[0] == (A, "/v1/events") and requests[-1] == (B, "/v1/events")
    assert registry.url == B


def test_a_watch_opened_on_a_standby_goes_to_the_leader() -> None:
    cluster = Cluster({A: "standby", B: "leader"}, leader_hint=B)
    cluster.events = {B: [sse(7)]}
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return cluster(request)

    with PageHolderClient([A, B], "t", transport=httpx.MockTransport(handler)) as registry:
        event = next(iter(registry.watch(since=5)))
    assert event.rev == 7
    assert [str(r.url.host) for r in seen] == ["a.test", "b.test"]
    assert seen[1].url.params["since"] == "5"


# -- the async twin -------------------------------------------------------------------


async def test_the_async_client_fails_over_as_the_sync_one() -> None:
    cluster = Cluster({A: "down", B: "standby", C: "leader"}, leader_hint=C)
    cluster.events = {C: [sse(1)]}
    async with AsyncPageHolderClient(
        f"{A},{B},{C}",
        "t",
        transport=httpx.MockTransport(cluster),
        retry=FAST,
        failover_timeout_s=2.0,
    ) as registry:
        await registry.create_holder("nic0")
        assert registry.url == C
        async for event in registry.watch(since=0):
            assert event.rev == 1
            break
        cluster.roles[C] = "silent"
        with pytest.raises(OutcomeUnknown):
            await registry.reclaim("nic0")
    assert cluster.urls() == [A, B, C, C, C]
