"""Issue 19: a lab file with `curve: true` and keys of its own gives each process an identity of
its own too (made by `ionpilot up` under `<data_dir>/keys`), so topic ownership is per process
there as in a lab secured by default: one process cannot publish another's topics, and the
file's own operator identity publishes only what `operator` may."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from labprocs import lab_on_free_ports

from ionpilot.access import as_principal, create_lab_keys, process_names
from ionpilot.bus import Hub, Publisher, Subscriber
from ionpilot.bus.codec import Telemetry
from ionpilot.bus.labkeys import IDENTITY_ENV, key_dir
from ionpilot.bus.security import create_keypair, read_public_key
from ionpilot.config import ConfigError, LabConfig, load_config


def lab_with_own_keys(tmp: Path, extra_client: str = "") -> Path:
    """A free-port lab whose file says `curve: true` with its own server key, `lab` (operator:
    people and scripts) and `viewer` (observer)."""
    keys = tmp / "own-keys"
    for name in ("server", "lab", "viewer", *([extra_client] if extra_client else [])):
        create_keypair(keys, name)
    clients = [
        f'lab: {{public_key: "{read_public_key(keys / "lab.key")}", role: operator}}',
        f'viewer: {{public_key: "{read_public_key(keys / "viewer.key")}", role: observer}}',
    ]
    if extra_client:
        key = read_public_key(keys / f"{extra_client}.key")
        clients.append(f'{extra_client}: {{public_key: "{key}", role: operator}}')
    security = (
        "security: {curve: true, "
        f'server_public_key: "{read_public_key(keys / "server.key")}", '
        f"server_key_file: '{keys / 'server.key_secret'}', "
        f"client_key_file: '{keys / 'lab.key_secret'}', "
        f"clients: {{{', '.join(clients)}}}}}"
    )
    lab = lab_on_free_ports(tmp, "own-keys")
    shutil.rmtree(tmp / "var" / "keys")  # made for the default security it was written with
    text = lab.read_text()
    head, sep, rest = text.partition("bus: {")
    assert sep, "the lab builder writes the bus section in flow style"
    lab.write_text(f"{head}bus: {{{security}, {rest}")
    return lab


def joined(pub: Publisher, sub: Subscriber, topic: str) -> None:
    """Publish probes on an owned topic until the subscriber has one (slow joiner)."""
    for _ in range(500):
        pub.publish(topic, 0.0)
        if sub.recv(timeout=0.02) is not None:
            sub.drain()
            return
    raise AssertionError("never joined")


def test_each_process_gets_its_own_identity(tmp_path: Path, monkeypatch) -> None:
    lab = lab_with_own_keys(tmp_path)
    before = load_config(lab)  # as `up` reads it before the first run: one shared identity
    assert not before.bus.security.owners
    created = create_lab_keys(before)
    assert sorted(created) == sorted(process_names(before))
    assert "operator" not in created and "server" not in created  # the file's server key stays
    folder = key_dir(before.lab.data_dir)
    assert not (folder / "server.key").exists()

    config = load_config(lab)  # `up` itself: the file's own client identity
    security = config.bus.security
    assert security.client_key_file.endswith("own-keys/lab.key_secret")
    assert {"lab", "viewer", "drivers", "daemon"} <= set(security.clients)
    assert security.clients["daemon"].role == "operator"
    assert "tlm.rf_drive." in security.owners["drivers"]
    assert "servo." in security.owners["daemon"]
    assert "script." in security.owners["lab"] and "viewer" not in security.owners

    monkeypatch.setenv(IDENTITY_ENV, "daemon")  # a child of `up`
    child = load_config(lab).bus.security
    assert child.client_key_file == str(folder / "daemon.key_secret")
    assert child.clients == security.clients and child.owners == security.owners
    monkeypatch.setenv(IDENTITY_ENV, "intruder")
    with pytest.raises(ConfigError, match="intruder has no identity"):
        load_config(lab)


def test_ownership_is_per_process_with_keys_of_its_own(tmp_path: Path) -> None:
    lab = lab_with_own_keys(tmp_path)
    create_lab_keys(load_config(lab))
    config: LabConfig = load_config(lab)
    with Hub(dataclasses.replace(config.bus, publish_port=0, subscribe_port=0)) as hub:
        bus = dataclasses.replace(
            config.bus,
            publish_port=int(hub.publish_endpoint.rsplit(":", 1)[1]),
            subscribe_port=int(hub.subscribe_endpoint.rsplit(":", 1)[1]),
        )
        config = dataclasses.replace(config, bus=bus)
        with (
            Subscriber(bus, ["tlm.", "servo.", "hub."]) as sub,  # as `lab`, the file's own
            Publisher(as_principal(config, "drivers"), "drivers") as drivers,
            Publisher(as_principal(config, "daemon"), "daemon") as daemon,
            Publisher(bus, "lab") as people,
        ):
            joined(drivers, sub, "tlm.rf_drive.power")
            joined(daemon, sub, "servo.clock.correction")
            for _ in range(50):
                daemon.publish("tlm.rf_drive.power", 25.0)  # once all shared one identity
                drivers.publish("servo.clock.state", "FORGED_UNLOCKED")
                people.publish("servo.clock.state", "FORGED_UNLOCKED")
            drivers.publish("tlm.rf_drive.power", -3.0)
            seen: list[tuple[str, object]] = []
            report = None
            for _ in range(300):
                msg = sub.recv(timeout=0.05)
                if isinstance(msg, Telemetry) and msg.topic == "hub.dropped":
                    report = msg.value
                    if report == {"daemon": 50, "drivers": 50, "lab": 50}:
                        break
                elif isinstance(msg, Telemetry):
                    seen.append((msg.topic, msg.value))
            assert ("tlm.rf_drive.power", -3.0) in seen
            assert not [s for s in seen if s[1] in (25.0, "FORGED_UNLOCKED")], seen
            assert report == {"daemon": 50, "drivers": 50, "lab": 50}


def test_a_client_named_as_a_process_is_refused(tmp_path: Path) -> None:
    lab = lab_with_own_keys(tmp_path, extra_client="daemon")
    create_lab_keys(load_config(lab))  # before the processes have keys: loads
    with pytest.raises(ConfigError, match="daemon is a process of this lab"):
        load_config(lab)
