"""Prometheus metrics of the long-running processes (daemon, driver hosts, recorder).

Each process hands a `snapshot()` function returning plain numbers; a collector turns it into
metric families at scrape time, so nothing is counted twice and the control loops pay nothing
between scrapes. Built on `prometheus-client` (the reference exposition code): its HTTP server
answers in its own thread, on loopback unless told otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PREFIX = "ionpilot_"


@dataclass
class Sample:
    """One metric of a snapshot: its kind, help text, label names and values per label set."""

    kind: str  # gauge, counter
    help: str
    labels: tuple[str, ...] = ()
    values: dict[tuple[str, ...], float] = field(default_factory=dict)


Snapshot = Mapping[str, Sample]


def gauge(help_text: str, value: float) -> Sample:
    return Sample("gauge", help_text, (), {(): float(value)})


def counter(help_text: str, value: float) -> Sample:
    return Sample("counter", help_text, (), {(): float(value)})


def labelled(kind: str, help_text: str, label: str, values: Mapping[str, float]) -> Sample:
    return Sample(kind, help_text, (label,), {(k,): float(v) for k, v in values.items()})


class SnapshotCollector(Collector):
    """Metric families from `snapshot()`, every metric labelled with the process name."""

    def __init__(self, process: str, snapshot: Callable[[], Snapshot]) -> None:
        self.process = process
        self._snapshot = snapshot
        self._started = time.monotonic()

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            f"{PREFIX}process_uptime_seconds",
            "Seconds since this process started",
            labels=["process"],
        )
        up.add_metric([self.process], time.monotonic() - self._started)
        yield up
        for name, sample in self._snapshot().items():
            labels = ["process", *sample.labels]
            family: GaugeMetricFamily | CounterMetricFamily
            if sample.kind == "counter":
                family = CounterMetricFamily(f"{PREFIX}{name}", sample.help, labels=labels)
            else:
                family = GaugeMetricFamily(f"{PREFIX}{name}", sample.help, labels=labels)
            for key, value in sample.values.items():
                family.add_metric([self.process, *key], value)
            yield family


def serve_metrics(
    process: str, snapshot: Callable[[], Snapshot], port: int, host: str = "127.0.0.1"
) -> Any:
    """Serve `snapshot` as /metrics on host:port; returns the server (call `shutdown()`)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(process, snapshot))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server


LOCK_STATES = ("acquiring", "locked", "holdover", "unlocked")


def daemon_snapshot(status: Mapping[str, Any]) -> dict[str, Sample]:
    """The servo daemon's `Daemon.metrics()` as metrics."""
    state = str(status.get("lock_state", ""))
    out = {
        "clock_lock_state": labelled(
            "gauge",
            "1 for the clock lock's current state, 0 for the others",
            "state",
            {s: 1.0 if s == state else 0.0 for s in LOCK_STATES},
        ),
        "clock_locked": gauge("1 while the clock lock is locked", state == "locked"),
        "clock_lock_updates_total": counter("Servo updates of the clock lock", status["updates"]),
    }
    health = status.get("health")
    if isinstance(health, Mapping):
        out["health_severity"] = labelled(
            "gauge",
            "Severity per watched signal: 0 OK, 1 MINOR, 2 MAJOR, 3 INVALID",
            "signal",
            health,
        )
    for key, kind, text in (
        ("uptime_fraction", "gauge", "Fraction of the time the clock was locked"),
        ("faults_total", "counter", "Faults tripped by the health monitor"),
        ("escalations_total", "counter", "Recoveries escalated to the safe state"),
    ):
        if key in status:
            out[key] = Sample(kind, text, (), {(): float(status[key])})
    for key, name, text in (
        ("faults_by_kind", "faults_by_kind_total", "Faults tripped, per kind"),
        ("recoveries_by_kind", "recoveries_total", "Faults recovered (locked again), per kind"),
    ):
        per_kind = status.get(key)
        if isinstance(per_kind, Mapping):
            out[name] = labelled("counter", text, "kind", per_kind)
    return out


def host_snapshot(status: Mapping[str, Mapping[str, Any]]) -> dict[str, Sample]:
    """A driver host's `DriverHost.metrics()` (per instrument) as metrics."""
    out: dict[str, Sample] = {
        "instrument_connected": Sample(
            "gauge", "1 while the instrument is connected", ("instrument",)
        ),
    }
    for name, st in status.items():
        out["instrument_connected"].values[(name,)] = 1.0 if st.get("state") == "connected" else 0.0
        for key in ("polls", "poll_errors", "reconnects", "commands"):
            metric = f"instrument_{key}_total"
            sample = out.setdefault(
                metric, Sample("counter", f"Instrument {key.replace('_', ' ')}", ("instrument",))
            )
            sample.values[(name,)] = float(st.get(key, 0))
    return out


def recorder_snapshot(status: Mapping[str, Any]) -> dict[str, Sample]:
    """The recorder's status as metrics: messages, rows, gaps, the sink's spool."""
    out = {
        "recorder_messages_total": counter("Bus messages stored", status["messages"]),
        "recorder_rows_total": counter("Rows written to the record", status["rows_written"]),
        "recorder_gaps_total": counter("Gaps recorded", status["gaps"]),
        "recorder_missed_total": counter("Sequence numbers missed", status["missed"]),
        "recorder_duplicates_total": counter(
            "Messages seen twice (stored once)", status["duplicates"]
        ),
        "recorder_series": gauge("Series in the record", status["series"]),
    }
    sink = status.get("sink")
    if isinstance(sink, Mapping):
        out["sink_spooled_batches"] = gauge(
            "Batches waiting for the server", sink["spooled_batches"]
        )
        out["sink_sent_lines_total"] = counter("Lines the server took", sink["sent_lines"])
        out["sink_dropped_lines_total"] = counter(
            "Lines dropped: spool full", sink["dropped_lines"]
        )
    return out
