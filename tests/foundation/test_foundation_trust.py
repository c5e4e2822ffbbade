"""Issue 19: the bus of a lab file without `bus.security` is secured by the lab's own keys.
Nobody without them can publish or read; a keyed process may publish only the topics the lab
file gives it (finding 3: forged `servo.clock.state`, telemetry, `seq` and heartbeats), and
whatever else it sends is dropped and counted per sender, and announced on `hub.dropped`."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from labprocs import lab_on_free_ports

from ionpilot.access import as_principal, topic_owners
from ionpilot.bus import Hub, Publisher, Subscriber
from ionpilot.bus.codec import Heartbeat, Telemetry
from ionpilot.bus.security import ClientKeys, create_keypair
from ionpilot.bus.settings import BusSecurity
from ionpilot.config import LabConfig, load_config


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[LabConfig, Hub]]:
    config = load_config(lab_on_free_ports(tmp_path, "trust"))
    with Hub(dataclasses.replace(config.bus, publish_port=0, subscribe_port=0)) as hub:
        bus = dataclasses.replace(
            config.bus,
            publish_port=int(hub.publish_endpoint.rsplit(":", 1)[1]),
            subscribe_port=int(hub.subscribe_endpoint.rsplit(":", 1)[1]),
        )
        yield dataclasses.replace(config, bus=bus), hub


def joined(pub: Publisher, sub: Subscriber, topic: str) -> None:
    """Publish probes on an owned topic until the subscriber has one (slow joiner)."""
    for _ in range(500):
        pub.publish(topic, 0.0)
        if sub.recv(timeout=0.02) is not None:
            sub.drain()
            return
    raise AssertionError("never joined")


def test_the_lab_file_is_secured_and_owners_come_from_it(lab) -> None:
    config, _hub = lab
    assert config.bus.security.curve is True
    owners = topic_owners(config)
    assert "tlm.rf_drive." in owners["drivers"] and "hb.drivers" in owners["drivers"]
    assert owners["daemon"][-2:] == ("servo.", "health.")
    assert not any(p.startswith(("tlm.rf", "servo.", "hb.drivers")) for p in owners["operator"])


def test_only_owners_publish_the_rest_is_dropped_and_counted(lab) -> None:
    config, hub = lab
    watcher = as_principal(config, "operator")
    with (
        Subscriber(watcher, ["tlm.", "servo.", "hb.", "hub."]) as sub,
        Publisher(as_principal(config, "drivers"), "drivers") as drivers,
        Publisher(as_principal(config, "daemon"), "daemon") as daemon,
        Publisher(watcher, "operator") as operator,
    ):
        joined(drivers, sub, "tlm.rf_drive.power")
        joined(daemon, sub, "servo.clock.correction")
        # forgeries by keyed processes: none arrives
        for _ in range(100):
            drivers.publish("servo.clock.state", "FORGED_UNLOCKED")
            operator.publish("tlm.rf_drive.power", 25.0)
            operator.publish_heartbeat(1.0)  # hb.operator: its own, fine
            daemon.publish("tlm.rf_drive.power", 25.0)
        # the real ones still do
        drivers.publish("tlm.rf_drive.power", -3.0)
        daemon.publish("servo.clock.state", "locked")
        seen: list[tuple[str, object, str]] = []
        report = None
        for _ in range(300):
            msg = sub.recv(timeout=0.05)
            if isinstance(msg, Telemetry) and msg.topic == "hub.dropped":
                report = msg.value
                if report == {"drivers": 100, "operator": 100, "daemon": 100}:
                    break
            elif msg is not None:
                seen.append((msg.topic, getattr(msg, "value", None), msg.src))
        assert ("tlm.rf_drive.power", -3.0, "drivers") in seen
        assert ("servo.clock.state", "locked", "daemon") in seen
        assert not [s for s in seen if s[1] in ("FORGED_UNLOCKED", 25.0)], seen
        assert all(s[0] != "hb.drivers" for s in seen)
        assert report == {"drivers": 100, "operator": 100, "daemon": 100}
        assert hub.dropped == report
        assert sub.gaps == {}  # nothing forged, no false gaps


def test_without_the_lab_keys_nothing_is_published_or_read(lab, tmp_path: Path) -> None:
    config, hub = lab
    plain = dataclasses.replace(config.bus, security=BusSecurity(curve=False))
    _public, stranger_file = create_keypair(tmp_path / "elsewhere", "stranger")
    stranger = ClientKeys(config.bus.security.server_public_key.encode(), *_pair(stranger_file))
    with (
        Publisher(as_principal(config, "drivers"), "drivers") as drivers,
        Subscriber(as_principal(config, "operator"), ["tlm."]) as keyed,
        Subscriber(plain, ["tlm."]) as anonymous,
        Subscriber(config.bus, ["tlm."], keys=stranger) as foreign,
        Publisher(plain, "drivers") as forger,
    ):
        joined(drivers, keyed, "tlm.rf_drive.power")
        for _ in range(50):
            forger.publish("tlm.rf_drive.power", 25.0)
            drivers.publish("tlm.rf_drive.power", -3.0)
        values = []
        while (msg := keyed.recv(timeout=0.3)) is not None:
            values.append(getattr(msg, "value", None))
        assert values and set(values) == {-3.0}  # the forger never reached the hub
        assert anonymous.recv(timeout=0.3) is None
        assert foreign.recv(timeout=0.3) is None
        assert hub.forwarded > 0


def _pair(path: Path) -> tuple[bytes, bytes]:
    from ionpilot.bus.security import read_keypair

    return read_keypair(path)


def test_heartbeats_seen_are_the_owners(lab) -> None:
    """A forged `hb.drivers` must not hide a frozen driver host from `up` (finding 3)."""
    config, _hub = lab
    with (
        Subscriber(as_principal(config, "operator"), ["hb."]) as sub,
        Publisher(as_principal(config, "sequencer"), "sequencer") as sequencer,
    ):
        for _ in range(300):
            sequencer.publish_heartbeat(1.0)
            if isinstance(sub.recv(timeout=0.02), Heartbeat):
                break
        liar = Publisher(as_principal(config, "sequencer"), "drivers")
        try:
            for _ in range(50):
                liar.publish_heartbeat(1.0)
            while sub.recv(timeout=0.3) is not None:
                pass
        finally:
            liar.close()
    assert sub.liveness.age("drivers") == float("inf")
