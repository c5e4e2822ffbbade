"""End to end with real processes and CURVE on: the whole lab (hub, sim, driver host, daemon,
sequencer) runs with an allow-list of client keys, locks the clock as it does without security,
serves an observer's reads but refuses its set-points with `forbidden`, and gives a client
without a listed key nothing at all. Once locked, `up` is stopped (the lock, not a fixed duration,
decides how long the test takes)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from labprocs import UpRun, daemon_status, lab_on_free_ports, locked_and_idle

from ionpilot.bus.client import CommandClient
from ionpilot.bus.codec import Telemetry
from ionpilot.bus.pubsub import Subscriber
from ionpilot.bus.security import ClientKeys, create_keypair, read_public_key
from ionpilot.bus.settings import BusSecurity
from ionpilot.config import load_config


def secured_lab(tmp: Path) -> tuple[Path, dict[str, Path]]:
    """A free-port lab with CURVE on: `lab` (operator, the processes' identity) and `viewer`
    (observer) are listed; `stranger` has a key pair that nobody listed."""
    keys = tmp / "keys"
    secrets = {}
    for name in ("server", "lab", "viewer", "stranger"):
        _public, secret = create_keypair(keys, name)
        secrets[name] = secret
    lab = lab_on_free_ports(tmp, "secured")
    security = (
        "security: {curve: true, "
        f'server_public_key: "{read_public_key(keys / "server.key")}", '
        f"server_key_file: '{secrets['server']}', client_key_file: '{secrets['lab']}', "
        "clients: {"
        f'lab: {{public_key: "{read_public_key(keys / "lab.key")}", role: operator}}, '
        f'viewer: {{public_key: "{read_public_key(keys / "viewer.key")}", role: observer}}'
        "}}"
    )
    text = lab.read_text()
    head, sep, rest = text.partition("bus: {")
    assert sep, "the lab builder writes the bus section in flow style"
    lab.write_text(f"{head}bus: {{{security}, {rest}")
    return lab, secrets


def client_as(lab: Path, secret: Path | None, process: str) -> CommandClient:
    """A command client of `process` with the identity in `secret` (None: CURVE-less)."""
    config = load_config(lab)
    endpoint = f"tcp://{config.bus.host}:{config.processes[process].command_port}"
    if secret is None:  # a client that does not speak CURVE at all
        plain = dataclasses.replace(config.bus, security=BusSecurity())
        return CommandClient(plain, endpoint, name="plain")
    keys = ClientKeys.from_settings(config.bus.security, secret)
    return CommandClient(config.bus, endpoint, name=secret.stem, keys=keys)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_secured_lab_locks_and_enforces_roles(tmp_path: Path) -> None:
    lab, secrets = secured_lab(tmp_path)
    summary = tmp_path / "summary.json"
    with UpRun(lab, 150, tmp_path, "--summary-json", str(summary), "--quiet") as up:
        config = load_config(lab)
        viewer_keys = ClientKeys.from_settings(config.bus.security, secrets["viewer"])
        # an observer may listen: its first valid rf_drive reading says the host is connected
        # (each wait is a blocking receive with its own timeout, never a sleep)
        with Subscriber(config.bus, ["tlm.rf_drive.power"], keys=viewer_keys) as sub:
            reading = None
            for _attempt in range(120):
                up.check()
                reading = sub.recv(timeout=1.0)
                if isinstance(reading, Telemetry) and reading.status == "OK":
                    break
            assert isinstance(reading, Telemetry) and reading.status == "OK", up.tail()
        viewer = client_as(lab, secrets["viewer"], "drivers")
        try:
            reply = viewer.request("rf_drive", "get", {"name": "power"})
            assert reply.ok, f"{reply.code}: {reply.message}"
            power = reply.value
            refused = viewer.request("rf_drive", "set", {"name": "power", "value": 1.0})
            assert not refused.ok and refused.code == "forbidden", refused
            again = viewer.request("rf_drive", "get", {"name": "power"})
            assert again.ok and again.value == power
        finally:
            viewer.close()
        for secret in (secrets["stranger"], None):  # listed nowhere / no CURVE: no reply
            outsider = client_as(lab, secret, "drivers")
            try:
                reply = outsider.request("rf_drive", "get", {"name": "power"}, timeout=1.5)
                assert not reply.ok and reply.code == "timeout", reply
            finally:
                outsider.close()
        operator = client_as(lab, secrets["lab"], "daemon")  # listed: an operator
        try:
            assert up.wait_until(lambda: locked_and_idle(daemon_status(operator)), 120, 0.2), (
                daemon_status(operator),
                up.tail(),
            )
        finally:
            operator.close()
        code = up.stop()
    assert code == 0, up.tail()
    assert not up.left_behind()
    result = json.loads(summary.read_text())
    assert result["time_to_lock_s"] is not None, result
    assert result["locked_fraction"] > 0.5, result
    # each process spoke as itself (its own key under data_dir/keys), within its own topics
    assert result["bus_secured"] is True and result["hub_refused"] == {}, result
