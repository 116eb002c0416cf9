"""Prometheus metrics, in a registry of their own per app (tests run several apps at once).

The ``_created`` series are turned off: one timestamp per labelled child doubles the series
scraped, and Prometheus does not use them.

What every request counts is kept as plain numbers on the event loop's thread and handed to
``prometheus_client`` when scraped: its ``inc()`` and ``observe()`` take a lock each (~1.2 µs,
five of them a page answer), which the one thread that counts does not need.
"""

from __future__ import annotations

import bisect
import itertools

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge,
                               disable_created_metrics, generate_latest)
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString

disable_created_metrics()

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("adserve_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=r)
        self.slots = Counter("adserve_slots", "Slots answered, by slot type and fill",
                             ["type", "filled"], registry=r)
        self.slot_request_seconds = Latency("adserve_slot_request_duration_seconds",
                                            "Time to answer a slot request, from its first byte read",
                                            LATENCY_BUCKETS, r)
        self.events = Counter("adserve_events_written", "Events appended to the log", ["type"],
                              registry=r)
        self.tracking = Counter("adserve_tracking", "Tracking hits by kind and outcome",
                                ["kind", "outcome"], registry=r)
        self.reload_errors = Counter("adserve_config_reload_errors", "Config reloads refused",
                                     registry=r)
        self.shed = Counter("adserve_shed", "Slot requests refused with 503 under overload, by why "
                            "(pending: too many in progress; waited: too long for the CPU; "
                            "connections: too many open)", ["reason"], registry=r)
        self.discovery = Counter("adserve_discovery", "Unknown pages suggested by slot requests, by outcome "
                                 "(queued, dropped: queue full; then discovered, refused or failed)",
                                 ["outcome"], registry=r)
        self.log_failures = Counter("adserve_log_failures", "Requests refused with 503: the event log "
                                    "or catalog journal could not be written", registry=r)
        self.state_up = Gauge("adserve_state_up", "1 while the state store answers; 0 while it is "
                              "down (limited campaigns not served, hits settled later)", registry=r)
        self.state_rebuilding = Gauge("adserve_state_rebuilding", "1 while an empty state store is being "
                                      "rebuilt from the event log (the store is down till then)", registry=r)

        self._series: dict[tuple[Counter, tuple[str, ...]], _Series] = {}  # each counted once
        self._counted: list[_Series] = []  # those counted since the last scrape, in that order
        # the series every request counts, looked up without building a key: by route and
        # status code, and by slot type and fill
        self._requests: dict[str, dict[int, _Series]] = {}
        self._slot_series = {kind: {filled: self.series(self.slots, kind, "true" if filled else "false")
                                    for filled in (True, False)} for kind in ("display", "recs")}
        self._decisions = self.series(self.events, "decision")

    def series(self, metric: Counter, *labels: str) -> _Series:
        """The one ``_Series`` of ``metric`` with ``labels``."""
        key = (metric, labels)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(metric, labels)
        return series

    def add(self, series: _Series) -> None:
        """One more of ``series`` at the next scrape (call it on the event loop's thread)."""
        if not series.count:
            self._counted.append(series)
        series.count += 1

    def count(self, metric: Counter, *labels: str) -> None:
        """``metric.labels(*labels).inc()`` at the next scrape."""
        self.add(self.series(metric, *labels))

    def requested(self, route: str, status: int) -> None:
        """``count(requests, route, str(status))``, without making its labels each time."""
        by_status = self._requests.get(route)
        series = by_status.get(status) if by_status is not None else None
        if series is None:
            series = self._requests.setdefault(route, {})[status] = self.series(self.requests, route, str(status))
        self.add(series)

    def answered(self, slots: dict, seconds: float) -> None:
        """A slot request's answer: its decision event, each slot by type and fill, its latency
        (the counts ``count`` would make, without a call each)."""
        add, slot_series = self.add, self._slot_series
        add(self._decisions)
        for fill in slots.values():
            kind = fill["type"]
            filled = bool(fill.get("fill", True) if kind == "display" else fill["items"])
            by_fill = slot_series.get(kind)
            add(by_fill[filled] if by_fill is not None else self.series(self.slots, kind, "true" if filled else "false"))
        self.slot_request_seconds.observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        """The scrape body and the content type it is in."""
        counted, self._counted = self._counted, []
        for series in counted:
            series.metric.labels(*series.labels).inc(series.count)
            series.count = 0
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _Series:
    """A labelled series of a counter, and how many it counted since the last scrape."""

    __slots__ = ("metric", "labels", "count")

    def __init__(self, metric: Counter, labels: tuple[str, ...]) -> None:
        self.metric, self.labels, self.count = metric, labels, 0


class Latency:
    """A Prometheus histogram of seconds, observed without a lock (on the event loop's thread)."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...],
                 registry: CollectorRegistry) -> None:
        self.name, self.documentation, self.bounds = name, documentation, buckets
        self.counts = [0] * (len(buckets) + 1)  # per bucket, the last one past every bound (+Inf)
        self.sum = 0.0
        registry.register(self)

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1  # a bucket counts values <= its bound
        self.sum += seconds

    def collect(self):
        cumulative = list(itertools.accumulate(self.counts))
        yield HistogramMetricFamily(
            self.name, self.documentation, sum_value=self.sum,
            buckets=[(floatToGoString(bound), count) for bound, count in zip(self.bounds, cumulative)]
            + [("+Inf", cumulative[-1])])
