"""Issue 19, nothing bypassed: "every pulse through the sequencer" is an access rule, not a habit
of our processes. On today's main the driver host served the pulser's `run` to any client with
the operator role, so a script with the operator's key played pulses past the sequencer's queue
(and its hold during a recovery). The host now serves `run` to the sequencer service's identity
alone, as the bus authenticates it (CURVE keys, as `ionpilot up` makes them); anyone else is
refused before anything reaches the controller, and may still ask it `describe`."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from labprocs import free_ports  # type: ignore[import-not-found]
from test_drivers_ionpilot_pulser import DESCRIBE, op  # type: ignore[import-not-found]

from ionpilot.bus.client import CommandClient
from ionpilot.bus.codec import BusError
from ionpilot.bus.labkeys import ensure_lab_keys, key_dir, lab_security
from ionpilot.bus.settings import BusSettings
from ionpilot.drivers.host import DriverHost, InstrumentSpec, open_spec
from ionpilot.drivers.replay import ReplayServer

PRINCIPALS = {"drivers": "operator", "sequencer": "operator", "daemon": "operator"}
PRINCIPALS["operator"] = "operator"
SCHEDULE = [
    {"t_ns": 0, "duration_ns": 1000, "channel": "clock", "amplitude": 1.0},
    {"t_ns": 1000, "duration_ns": 1000, "channel": "detect", "window": "d"},
]


@dataclasses.dataclass
class Host:
    server: ReplayServer
    clients: dict[str, CommandClient]

    def run(self, who: str) -> object:
        args = {"name": "run", "args": [1, SCHEDULE]}
        return self.clients[who].call("pulser", "call", args, timeout=5.0)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    ensure_lab_keys(tmp_path, PRINCIPALS)
    security = lab_security(tmp_path, PRINCIPALS, {}, identity="drivers")
    publish, subscribe = free_ports(2)  # no hub there: telemetry goes nowhere
    bus = BusSettings(publish_port=publish, subscribe_port=subscribe, security=security)
    script = [
        op("describe", DESCRIBE),  # on connecting
        op("describe", DESCRIBE),  # the operator's describe: served
        op("run", {"counts": [[1]]}, shots=1, schedule=SCHEDULE),  # the sequencer's run
    ]
    with ReplayServer(script) as server:
        spec = InstrumentSpec("pulser", "ionpilot_pulser", f"tcp://127.0.0.1:{server.port}")
        drivers = DriverHost("drivers", [spec], bus, "tcp://127.0.0.1:0", open_spec, cpu=None)
        drivers.start()
        clients = {
            name: CommandClient(
                dataclasses.replace(
                    bus,
                    security=dataclasses.replace(
                        security, client_key_file=str(key_dir(tmp_path) / f"{name}.key_secret")
                    ),
                ),
                drivers.endpoint,
                name="sequencer",  # what each calls itself: nothing the host believes
            )
            for name in ("operator", "daemon", "sequencer")
        }
        try:
            assert drivers.wait_first_attempts(10.0)
            yield Host(server, clients)
        finally:
            for client in clients.values():
                client.close()
            drivers.stop()


def test_only_the_sequencer_plays_pulses_on_the_pulser(host: Host) -> None:
    for who in ("operator", "daemon"):  # the daemon too: its clock jobs go through the queue
        with pytest.raises(BusError) as refused:
            host.run(who)
        assert refused.value.code == "forbidden"
        assert "pulser.run is sequencer's alone" in refused.value.message
        assert f"not '{who}'" in refused.value.message
        assert "through the sequencer's queue" in refused.value.message
    describe = host.clients["operator"].call("pulser", "call", {"name": "describe", "args": []})
    assert describe["model"] == "ionpilot_pulser"  # type: ignore[index]
    assert host.run("sequencer") == {"counts": [[1]]}
    assert host.server.failures == [] and host.server.remaining == 0  # nothing else was sent
