"""Prometheus metrics, in a registry of their own per app (tests run several apps at once).

The ``_created`` series are turned off: one timestamp per labelled child doubles the series
scraped, and Prometheus does not use them.
"""

from __future__ import annotations

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               disable_created_metrics, generate_latest)

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
        self.slot_request_seconds = Histogram("adserve_slot_request_duration_seconds",
                                              "Time to answer a slot request, from its first byte read",
                                              buckets=LATENCY_BUCKETS, registry=r)
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

        self._children: dict[tuple, object] = {}

    def count(self, metric: Counter, *labels: str) -> None:
        """``metric.labels(*labels).inc()``, with the labelled child kept (labels() takes a lock)."""
        child = self._children.get((metric, labels))
        if child is None:
            child = self._children[(metric, labels)] = metric.labels(*labels)
        child.inc()

    def exposition(self) -> tuple[bytes, str]:
        """The scrape body and the content type it is in."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
