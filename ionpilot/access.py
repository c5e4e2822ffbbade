"""Who is who on a lab's bus, and which topics each may publish: derived from the lab file.

Every process of the lab file is a principal with its own CURVE identity (`operator` role: the
daemon and the sequencer call the driver hosts), and so is `operator` (people, scripts, the
console). A principal owns its own heartbeat and events (`hb.NAME`, `evt.NAME.`); a driver host
also owns its instruments' telemetry, events and heartbeats (`tlm.rf_drive.`, ...); the daemon
owns `servo.` and `health.`. The hub drops anything else (`ionpilot.bus.hub`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ionpilot.bus.labkeys import OPERATOR, ensure_lab_keys, key_dir, lab_security
from ionpilot.bus.security import SecurityError
from ionpilot.bus.settings import BusSettings

if TYPE_CHECKING:
    from ionpilot.config import LabConfig

DAEMON_TOPICS = ("servo.", "health.")
OPERATOR_TOPICS = ("script.", "tlm.script.", "evt.script.")


def principals(config: LabConfig) -> dict[str, str]:
    """Principal name -> role: every process of the lab file and every driver host its
    instruments name, plus `operator`."""
    names = dict.fromkeys(config.processes, "operator")
    for instrument in config.instruments.values():
        names.setdefault(instrument.host, "operator")
    names[OPERATOR] = "operator"
    return names


def topic_owners(config: LabConfig) -> dict[str, tuple[str, ...]]:
    """Principal -> the topic prefixes (ending in `.`) and topics it alone may publish."""
    owners = {name: [f"hb.{name}", f"evt.{name}."] for name in principals(config)}
    for name, instrument in config.instruments.items():
        owners[instrument.host] += [f"tlm.{name}.", f"evt.{name}.", f"hb.{name}"]
    if "daemon" in owners:
        owners["daemon"] += DAEMON_TOPICS
    owners[OPERATOR] += OPERATOR_TOPICS
    return {name: tuple(prefixes) for name, prefixes in owners.items()}


def uses_lab_keys(config: LabConfig) -> bool:
    """A lab file that says nothing about `bus.security`: secured with the lab's own keys
    (`curve` unset before they are read, topic owners after)."""
    security = config.bus.security
    return security.curve is None or bool(security.owners)


def create_lab_keys(config: LabConfig) -> list[str]:
    """Create the lab's missing keys (`ionpilot up`, first run); names created."""
    if not uses_lab_keys(config):
        return []
    return ensure_lab_keys(config.lab.data_dir, principals(config))


def with_lab_keys(config: LabConfig, identity: str | None = None) -> LabConfig:
    """The config with its bus secured by the lab's keys, when the lab file leaves security
    to them and they exist; unchanged otherwise (no keys yet: servers refuse to run off
    loopback, and the secured hub of a running lab takes nothing from a process without them)."""
    if not uses_lab_keys(config) or not (key_dir(config.lab.data_dir) / "server.key").exists():
        return config
    security = lab_security(config.lab.data_dir, principals(config), topic_owners(config), identity)
    return dataclasses.replace(config, bus=dataclasses.replace(config.bus, security=security))


def as_principal(config: LabConfig, name: str) -> BusSettings:
    """The config's bus as principal `name` of the lab's own keys (a test or tool acting for
    a process); the bus unchanged when the lab file gives keys of its own."""
    security = config.bus.security
    if not security.owners:
        return config.bus
    if name not in security.clients:
        raise SecurityError(f"{name} is not a principal of this lab")
    own = key_dir(config.lab.data_dir) / f"{name}.key_secret"
    return dataclasses.replace(
        config.bus, security=dataclasses.replace(security, client_key_file=str(own))
    )
