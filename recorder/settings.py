"""Settings of the recorder, built from the lab config's `recorder:` section."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

DAY_S = 86_400.0


@dataclass(frozen=True)
class InfluxSink:
    """An optional copy of every numeric sample to a time-series server, as Influx line protocol
    (VictoriaMetrics, InfluxDB). Empty `url`: off. Batches wait in `spool_dir` (default:
    <data_dir>/recorder/spool) until the server has taken them, so a server away for a night
    loses nothing; `max_spool_bytes` bounds the disk they may take (beyond: the oldest batch is
    dropped and counted, never silently)."""

    url: str = ""  # e.g. http://127.0.0.1:8428/write (VictoriaMetrics) or .../api/v2/write?...
    spool_dir: str = ""
    flush_interval: Annotated[float, "s"] = 1.0
    max_batch_lines: int = 5_000
    max_spool_bytes: int = 1_000_000_000
    timeout: Annotated[float, "s"] = 5.0
    retry_initial: Annotated[float, "s"] = 1.0
    retry_max: Annotated[float, "s"] = 30.0

    def __post_init__(self) -> None:
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url {self.url!r}: an http:// or https:// write endpoint")
        for name in ("flush_interval", "timeout", "retry_initial", "retry_max"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.max_batch_lines < 1 or self.max_spool_bytes < 1:
            raise ValueError("max_batch_lines and max_spool_bytes must be positive")


@dataclass(frozen=True)
class RecorderSettings:
    """How long each tier is kept and how the recorder writes: raw samples for `raw_retention`,
    1-minute aggregates (mean, min, max, count) for `minute_retention`, hourly ones for
    `hour_retention`. Writes are batched: one transaction every `flush_interval` or
    `batch_rows` rows, whichever comes first."""

    raw_retention: Annotated[float, "s"] = 30 * DAY_S
    minute_retention: Annotated[float, "s"] = 365 * DAY_S
    hour_retention: Annotated[float, "s"] = 10 * 365 * DAY_S
    flush_interval: Annotated[float, "s"] = 0.25
    batch_rows: int = 5_000
    max_points: int = 10_000  # points per history reply (a client pages beyond)
    sink: InfluxSink = field(default_factory=InfluxSink)

    def __post_init__(self) -> None:
        if not 0 < self.raw_retention <= self.minute_retention <= self.hour_retention:
            raise ValueError(
                "retentions must be positive and ordered: raw_retention <= minute_retention "
                "<= hour_retention"
            )
        if not self.flush_interval > 0:
            raise ValueError("flush_interval must be positive")
        if self.batch_rows < 1 or self.max_points < 10:
            raise ValueError("batch_rows must be >= 1 and max_points >= 10")


@dataclass(frozen=True)
class MetricsSettings:
    """Prometheus metrics: which processes serve /metrics, on which port of `host` (a process
    not listed serves none). E.g. `ports: {daemon: 15620, drivers: 15621, recorder: 15622}`."""

    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, port in self.ports.items():
            if not 0 < port <= 65535:
                raise ValueError(f"ports.{name}: a port number 1-65535, got {port}")
        if len(set(self.ports.values())) != len(self.ports):
            raise ValueError("two processes share a metrics port")
