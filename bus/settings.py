"""Settings of the bus, built from the lab config's `bus:` and `processes:` sections."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Annotated, Literal

_Z85_KEY = re.compile(r"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}")


def _check_key(key: str, where: str) -> None:
    if not _Z85_KEY.fullmatch(key):
        raise ValueError(f"{where} must be a 40-character Z85 CURVE public key")


@dataclass(frozen=True)
class CurveClient:
    """A client allowed on the secured bus: its CURVE public key and what it may do."""

    public_key: str  # Z85, as in its NAME.key file (`ionpilot bus keys show NAME.key`)
    role: Literal["observer", "operator", "admin"] = "observer"  # observer: reads only

    def __post_init__(self) -> None:
        _check_key(self.public_key, "public_key")


@dataclass(frozen=True)
class BusSecurity:
    """CURVE encryption and authentication of commands and the hub.

    `curve` unset (None, a lab file without `bus.security`): on, with the lab's own keys under
    `<data_dir>/keys` (`ionpilot.bus.labkeys`), filled in when the lab file is loaded; a
    `BusSettings` built by hand (tests, benchmarks) stays plain until then. `curve: false`:
    off (loopback only). `curve: true`: on, with the keys given here (the servers' and the
    people's); each process still gets an identity of its own under `<data_dir>/keys`.
    """

    curve: bool | None = None
    server_public_key: str = ""  # Z85 public key shared by the lab's servers and hub
    server_key_file: str = ""  # the servers' secret certificate (processes that serve)
    client_key_file: str = ""  # this installation's client identity (processes that call)
    clients: dict[str, CurveClient] = field(default_factory=dict)  # name -> key and role
    # Client name -> the topic prefixes it alone may publish (`tlm.rf_drive.`, `hb.drivers`);
    # empty: any publisher on the allow-list may publish any topic. Derived from the lab file.
    owners: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.curve:
            return
        unknown = sorted(set(self.owners) - set(self.clients))
        if unknown:
            raise ValueError(f"topic owners {unknown} are not clients")
        if not self.server_public_key:
            raise ValueError("curve is on: server_public_key is needed")
        _check_key(self.server_public_key, "server_public_key")
        if not self.clients:
            raise ValueError("curve is on: list at least one client (name: {public_key, role})")
        seen: dict[str, str] = {}
        for name, client in self.clients.items():
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.\-]{0,127}", name):
                raise ValueError(f"client name {name!r}: letters, digits, _ . - only")
            if client.public_key in seen:
                raise ValueError(f"clients {seen[client.public_key]} and {name} share a key")
            seen[client.public_key] = name


@dataclass(frozen=True)
class BusSettings:
    """Where the hub listens and how the bus bounds its queues, messages and waits."""

    host: str = "127.0.0.1"
    publish_port: int = 15600  # publishers connect here (hub XSUB)
    subscribe_port: int = 15601  # subscribers connect here (hub XPUB)
    max_message_bytes: int = 1_048_576
    high_water_mark: int = 10_000  # messages queued per socket before ZeroMQ drops (pub/sub)
    # Bytes a pub/sub socket may hold queued for one peer (a slow subscriber): the queues are
    # bounded in messages, so the high-water mark used is at most this over the largest message
    # a publisher may send (`max_publish_bytes`): 256 MiB / 64 KiB = 4096 messages by default.
    max_queued_bytes: int = 256 * 1_048_576
    max_publish_bytes: int = 65_536  # one pub/sub message (commands: `max_message_bytes`)
    heartbeat_period: Annotated[float, "s"] = 1.0
    stale_after: Annotated[float, "s"] = 3.0
    request_timeout: Annotated[float, "s"] = 2.0
    request_retries: int = 1  # extra attempts, for idempotent reads only
    max_in_flight: int = 64  # deferred requests a server runs at once; beyond: `busy`
    handler_threads: int = 4  # worker threads for blocking (sync) command handlers
    # A deferred (non-inline) request still running after this is answered `timeout` and its
    # slot freed, so a handler stuck in a driver call cannot use up `max_in_flight` for good.
    deferred_timeout: Annotated[float, "s"] = 60.0
    # Per publisher: topics it numbers; per subscriber: (source, topic) streams it tracks.
    # Beyond this the least recently seen is forgotten (weeks-long runs, generated topics).
    max_topics: int = 10_000
    # A heartbeat source not heard from for this long is forgotten (unless `expect`ed).
    forget_after: Annotated[float, "s"] = 3600.0
    security: BusSecurity = field(default_factory=BusSecurity)

    @property
    def pubsub_bytes(self) -> int:
        """The largest pub/sub message (never above `max_message_bytes`)."""
        return min(self.max_publish_bytes, self.max_message_bytes)

    @property
    def pubsub_hwm(self) -> int:
        """The high-water mark of every pub/sub socket: messages, bounded by the byte budget."""
        return max(1, min(self.high_water_mark, self.max_queued_bytes // self.pubsub_bytes))

    def __post_init__(self) -> None:
        if self.max_publish_bytes <= 0:
            raise ValueError("max_publish_bytes must be positive")
        if self.max_queued_bytes < self.max_publish_bytes:
            raise ValueError("max_queued_bytes must hold at least one message")
        if not self.deferred_timeout > 0:
            raise ValueError("deferred_timeout must be positive")
        if self.max_topics < 1:
            raise ValueError("max_topics must be at least 1")
        if not self.forget_after > 0:
            raise ValueError("forget_after must be positive")
        if self.security.curve is False and not is_loopback(self.host):
            raise ValueError(
                f"host {self.host} is off loopback: turn on security (curve: true) first, "
                "CURVE keys are required off loopback"
            )


def check_served_securely(settings: BusSettings) -> None:
    """Refuse to serve off loopback with security unset (a `BusSettings` built by hand, not
    from a lab file, which would fill in the lab's keys)."""
    if settings.security.curve is None and not is_loopback(settings.host):
        from ionpilot.bus.security import SecurityError

        raise SecurityError(
            f"host {settings.host} is off loopback and bus security is not set up: load the "
            "lab file (its keys) or give bus.security"
        )


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: nobody else on the network can reach it."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ProcessSettings:
    """One ionpilot process: the port its command server (ROUTER) binds, on `host` (the
    address of the machine it runs on; empty: the bus host, one machine for the whole lab)."""

    command_port: int
    host: str = ""
