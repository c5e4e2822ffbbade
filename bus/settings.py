"""Settings of the bus, built from the lab config's `bus:` and `processes:` sections."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated


@dataclass(frozen=True)
class BusSettings:
    """Where the hub listens and how the bus bounds its queues, messages and waits."""

    host: str = "127.0.0.1"
    publish_port: int = 15600  # publishers connect here (hub XSUB)
    subscribe_port: int = 15601  # subscribers connect here (hub XPUB)
    max_message_bytes: int = 1_048_576
    high_water_mark: int = 10_000  # messages queued per socket before ZeroMQ drops (pub/sub)
    heartbeat_period: Annotated[float, "s"] = 1.0
    stale_after: Annotated[float, "s"] = 3.0
    request_timeout: Annotated[float, "s"] = 2.0
    request_retries: int = 1  # extra attempts, for idempotent reads only
    max_in_flight: int = 64  # deferred requests a server runs at once; beyond: `busy`
    handler_threads: int = 4  # worker threads for blocking (sync) command handlers


@dataclass(frozen=True)
class ProcessSettings:
    """One ionpilot process: the port its command server (ROUTER) binds on the bus host."""

    command_port: int
