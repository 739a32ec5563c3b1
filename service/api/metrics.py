"""Prometheus metrics of one service: requests, holds per zone, webhook calls, leases."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from pageholder.service.core.registry import Registry


class _HoldsCollector(Collector):
    """Reads holds per zone from the trees' aggregate counts at scrape time."""

    def __init__(self, registry: Callable[[], Registry | None]) -> None:
        self._registry = registry

    def collect(self) -> Iterator[GaugeMetricFamily]:
        holds = GaugeMetricFamily("pageholder_holds", "holds per zone", labels=["zone"])
        pages = GaugeMetricFamily("pageholder_held_pages", "held pages per zone", labels=["zone"])
        registry = self._registry()
        if registry is not None:
            for zh in registry.zones:
                holds.add_metric([zh.zone.id], len(zh.tree))
                pages.add_metric([zh.zone.id], zh.tree.pages)
        yield holds
        yield pages


class _LeasesCollector(Collector):
    """Holders by lease state and what leases did, read from the core at scrape time."""

    def __init__(self, registry: Callable[[], Registry | None]) -> None:
        self._registry = registry

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        by_state = GaugeMetricFamily(
            "pageholder_holders_by_lease", "holders by lease state", labels=["state"]
        )
        counters = {
            "expirations": "holder leases that expired",
            "revivals": "expired holders revived by a keepalive",
            "reclaimed_holds": "holds of expired holders erased without a call",
            "reclaimed_pages": "pages of those holds",
        }
        registry = self._registry()
        families = {
            name: CounterMetricFamily(f"pageholder_lease_{name}", text)
            for name, text in counters.items()
        }
        if registry is not None:
            leases = registry.leases
            expired = len(leases.expired_holders())
            by_state.add_metric(["none"], len(registry.holders) - len(leases.leased))
            by_state.add_metric(["live"], len(leases.leased) - expired)
            by_state.add_metric(["expired"], expired)
            for name, family in families.items():
                family.add_metric([], getattr(leases.stats, name))
        yield by_state
        yield from families.values()


class _EventsCollector(Collector):
    """The event streams, read from the core's event log at scrape time."""

    def __init__(self, registry: Callable[[], Registry | None]) -> None:
        self._registry = registry

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        subscribers = GaugeMetricFamily("pageholder_event_subscribers", "open event streams")
        overflows = CounterMetricFamily(
            "pageholder_event_overflows", "event streams closed for falling too far behind"
        )
        rings = CounterMetricFamily(
            "pageholder_event_flushes", "times the streams were sent what piled up"
        )
        fanout = CounterMetricFamily(
            "pageholder_event_fanout_cpu_seconds",
            "CPU time the streams' writes took (kernel time included; framing not)",
        )
        framing = CounterMetricFamily(
            "pageholder_event_framing_cpu_seconds", "CPU time spent framing events for streams"
        )
        waited = CounterMetricFamily(
            "pageholder_event_waited_writes",
            "writes to a stream that had to wait for its reader (a slow subscriber)",
        )
        registry = self._registry()
        if registry is not None:
            log = registry.events
            waited.add_metric([], log.waited)
            fanout.add_metric([], log.fanout_cpu)
            framing.add_metric([], log.framing_cpu)
            subscribers.add_metric([], log.watchers)
            overflows.add_metric([], log.overflows)
            rings.add_metric([], log.rings)
        yield from (subscribers, overflows, rings, fanout, framing, waited)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pageholder_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.webhook_calls = Counter(
            "pageholder_webhook_calls",
            "release webhook calls by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.webhook_latency = Histogram(
            "pageholder_webhook_latency_seconds",
            "release webhook call latency",
            ["outcome"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.offlines = Counter(
            "pageholder_offlines",
            "memory-block offlines by outcome (offline, or cancelled back to online)",
            ["outcome"],
            registry=self.registry,
        )
        self.offline_seconds = Histogram(
            "pageholder_offline_seconds",
            "how long an offline took, isolate to commit or cancel",
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.offline_failures = Counter(
            "pageholder_offline_failures",
            "holds an offline could not release, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.released_pages = Counter(
            "pageholder_offline_released_pages",
            "pages released by offlines",
            registry=self.registry,
        )
        self._pageholder: Registry | None = None
        self.registry.register(_HoldsCollector(lambda: self._pageholder))
        self.registry.register(_LeasesCollector(lambda: self._pageholder))
        self.registry.register(_EventsCollector(lambda: self._pageholder))

    def watch(self, registry: Registry) -> None:
        self._pageholder = registry

    def observe_offline(self, report: dict[str, Any]) -> None:
        """Count one offline from its report (``OfflineReport.as_dict()``)."""
        self.offlines.labels("offline" if report["state"] == "offline" else "cancelled").inc()
        self.offline_seconds.observe(report["duration_ms"] / 1000)
        self.released_pages.inc(report["released_pages"])
        reasons = collections.Counter(failure["reason"] for failure in report["failures"])
        for reason, count in reasons.items():  # a few labels, however many failures
            self.offline_failures.labels(reason).inc(count)

    def observe_webhook(self, outcome: str, seconds: float) -> None:
        self.webhook_calls.labels(outcome).inc()
        self.webhook_latency.labels(outcome).observe(seconds)
