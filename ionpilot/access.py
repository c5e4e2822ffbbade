"""Who is who on a lab's bus, and which topics each may publish: derived from the lab file.

Every process of the lab file is a principal with its own CURVE identity (`operator` role: the
daemon and the sequencer call the driver hosts), and so is `operator` (people, scripts, the
console). A principal owns its own heartbeat and events (`hb.NAME`, `evt.NAME.`); a driver host
also owns its instruments' telemetry, events and heartbeats (`tlm.rf_drive.`, ...); the daemon
owns `servo.` and `health.`. The hub drops anything else (`ionpilot.bus.hub`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

from ionpilot.bus.labkeys import (
    IDENTITY_ENV,
    OPERATOR,
    SERVER,
    ensure_lab_keys,
    key_dir,
    lab_security,
)
from ionpilot.bus.security import PUBLISHER_ROLES, SecurityError, read_public_key
from ionpilot.bus.settings import BusSettings, CurveClient

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
    (`curve` unset before they are read; after, the servers' key is the lab's own)."""
    security = config.bus.security
    if security.curve is None:
        return True
    if not security.curve or not security.owners:
        return False
    server = key_dir(config.lab.data_dir) / f"{SERVER}.key"
    return server.exists() and read_public_key(server) == security.server_public_key


def keys_of_its_own(config: LabConfig) -> bool:
    """A lab file with `curve: true` and keys of its own (`ionpilot bus keys create`): the
    servers' key and the people's identities are the file's; each process still gets an
    identity of its own under `<data_dir>/keys`, so topic ownership is per process."""
    return bool(config.bus.security.curve) and not uses_lab_keys(config)


def process_names(config: LabConfig) -> dict[str, str]:
    """The principals that are processes of the lab file (every one but `operator`)."""
    return {name: role for name, role in principals(config).items() if name != OPERATOR}


def create_lab_keys(config: LabConfig) -> list[str]:
    """Create the lab's missing keys (`ionpilot up`, first run); names created. With keys of
    its own, only the processes' identities (the file's server key stays)."""
    if keys_of_its_own(config):
        return ensure_lab_keys(config.lab.data_dir, process_names(config), server=False)
    if not uses_lab_keys(config):
        return []
    return ensure_lab_keys(config.lab.data_dir, principals(config))


def with_lab_keys(config: LabConfig, identity: str | None = None) -> LabConfig:
    """The config with its bus secured by the lab's keys, when the lab file leaves security
    to them and they exist; unchanged otherwise (no keys yet: servers refuse to run off
    loopback, and the secured hub of a running lab takes nothing from a process without them).
    With keys of its own: each process speaks as itself (`with_process_keys`)."""
    if keys_of_its_own(config):
        return with_process_keys(config, identity)
    if not uses_lab_keys(config) or not (key_dir(config.lab.data_dir) / "server.key").exists():
        return config
    security = lab_security(config.lab.data_dir, principals(config), topic_owners(config), identity)
    return dataclasses.replace(config, bus=dataclasses.replace(config.bus, security=security))


def with_process_keys(config: LabConfig, identity: str | None = None) -> LabConfig:
    """A lab file with keys of its own, once `ionpilot up` has made each process's identity:
    those are on the allow-list too (role operator) and own their topics as in a lab secured
    by default; the file's own publishing clients own what `operator` owns. This process
    speaks as `identity` (default `$IONPILOT_IDENTITY`) if that is a process, else with the
    file's `client_key_file`. Unchanged before the identities exist (one shared identity)."""
    security = config.bus.security
    folder = key_dir(config.lab.data_dir)
    processes = process_names(config)
    made = {name: folder / f"{name}.key" for name in processes if (folder / f"{name}.key").exists()}
    if not made:
        return config
    public = {name: read_public_key(path) for name, path in made.items()}
    for name, client in security.clients.items():
        if name in processes and public.get(name) != client.public_key:
            raise SecurityError(
                f"bus.security.clients.{name}: {name} is a process of this lab, which gets an "
                f"identity of its own under {folder}; name the client otherwise"
            )
    own_clients = {n: c for n, c in security.clients.items() if n not in processes}
    owners_of = topic_owners(config)
    owners = {name: owners_of[name] for name in made}
    for name, client in own_clients.items():
        if client.role in PUBLISHER_ROLES:
            owners[name] = (f"hb.{name}", f"evt.{name}.", *OPERATOR_TOPICS)
    who = identity or os.environ.get(IDENTITY_ENV) or OPERATOR
    key_file = security.client_key_file
    if who in made:
        key_file = str(folder / f"{who}.key_secret")
    elif who != OPERATOR and who not in own_clients:
        raise SecurityError(
            f"{IDENTITY_ENV}={who} has no identity in this lab "
            f"(processes with keys under {folder}: {', '.join(sorted(made))})"
        )
    clients = {
        **own_clients,
        **{name: CurveClient(public[name], "operator") for name in made},
    }
    secured = dataclasses.replace(
        security, clients=clients, owners=owners, client_key_file=key_file
    )
    return dataclasses.replace(config, bus=dataclasses.replace(config.bus, security=secured))


def as_principal(config: LabConfig, name: str) -> BusSettings:
    """The config's bus as principal `name` (a test or tool acting for a process): its key
    under `<data_dir>/keys`; the bus unchanged while nobody owns topics (no identities yet)."""
    security = config.bus.security
    if not security.owners:
        return config.bus
    if name not in security.clients:
        raise SecurityError(f"{name} is not a principal of this lab")
    own = key_dir(config.lab.data_dir) / f"{name}.key_secret"
    return dataclasses.replace(
        config.bus, security=dataclasses.replace(security, client_key_file=str(own))
    )
