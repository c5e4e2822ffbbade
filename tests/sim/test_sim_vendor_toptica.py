"""The simulated DLC pro driven by TOPTICA's own SDK (toptica-lasersdk) over its command line and
monitoring line, and by the DeCoF expressions other public clients send (QMI's multi-get and
multi-set), as a real controller would be."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from toptica.lasersdk.client import Client, DecopError
from toptica.lasersdk.dlcpro.v3_3_3 import DLCpro, NetworkConnection

from ionpilot.sim.lab import Lab
from ionpilot.sim.settings import SimSettings


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    instruments = {"laser_435": ("dlc_pro", "TCPIP0::127.0.0.1::1::SOCKET")}
    with Lab(instruments, SimSettings(seed=5), free_ports=True) as running:
        yield running


def _ports(lab: Lab) -> tuple[int, int]:
    command = int(lab.resources()["laser_435"].split("::")[2])
    return command, lab.monitoring_ports()["laser_435"]


@pytest.fixture
def dlc(lab: Lab) -> Iterator[Any]:
    command, monitoring = _ports(lab)
    with DLCpro(NetworkConnection("127.0.0.1", command, monitoring, timeout=3)) as device:
        yield device


def test_identify(dlc: Any) -> None:
    assert dlc.system_type.get() == "DLCpro"
    assert dlc.serial_number.get() == "DLCPRO_000435"
    assert dlc.fw_ver.get() == "3.3.3"
    assert dlc.uptime.get() >= 0
    assert dlc.laser1.dl.type.get() == "DL pro"


def test_current_and_piezo_set_and_read_back(dlc: Any, lab: Lab) -> None:
    cc, pc = dlc.laser1.dl.cc, dlc.laser1.dl.pc
    assert cc.current_set.set(121.5) == 0
    assert cc.current_set.get() == 121.5
    assert cc.current_act.get() == pytest.approx(121.5, abs=0.01)
    assert lab.world.lasers["435"].current_a == pytest.approx(0.1215)
    assert pc.voltage_set.set(71.25) == 0
    assert pc.voltage_set.get() == 71.25 and pc.enabled.get() is True
    assert cc.current_clip.get() == 250.0 and cc.current_clip_limit.get() == 250.0
    assert cc.current_clip.set(130.0) == 0
    with pytest.raises(DecopError, match="out of range"):
        cc.current_set.set(131.0)  # above the clip: refused, nothing applied
    assert cc.current_set.get() == 121.5
    cc.current_clip.set(250.0)
    cc.current_set.set(120.0)


def test_emission_off_and_on(dlc: Any) -> None:
    cc = dlc.laser1.dl.cc
    cc.enabled.set(False)
    try:
        assert dlc.emission.get() is False and dlc.laser1.emission.get() is False
        assert cc.current_act.get() == 0.0
    finally:
        cc.enabled.set(True)
    assert dlc.emission.get() is True and cc.emission.get() is True


def test_errors_change_nothing(dlc: Any, lab: Lab) -> None:
    cc = dlc.laser1.dl.cc
    before = cc.current_set.get()
    with pytest.raises(DecopError, match="out of range"):
        cc.current_set.set(-1.0)
    with pytest.raises(DecopError, match="out of range"):
        dlc.laser1.dl.pc.voltage_set.set(141.0)
    assert cc.current_set.get() == before
    assert dlc.laser1.dl.pc.voltage_set.get() <= 140.0


def test_plain_client_get_set_value_exec_and_unknown_names(lab: Lab) -> None:
    command, _ = _ports(lab)
    with Client(NetworkConnection("127.0.0.1", command, 0, timeout=3)) as client:
        assert client.get_set_value("laser1:dl:cc:current-set", float) == pytest.approx(120.0)
        assert client.get("laser1:dl:lock:lock-enabled", bool) is True
        assert client.exec("change-ul", 3, "", return_type=int) == 3
        with pytest.raises(DecopError, match="unknown parameter"):
            client.get("laser1:dl:cc:no-such-thing")
        with pytest.raises(DecopError, match="read-only"):
            client.set("laser1:emission", False)
        with pytest.raises(DecopError):
            client.set("laser1:dl:cc:enabled", 1)  # wrong type
        assert client.get("laser1:emission", bool) is True
        with pytest.raises(DecopError):
            client.exec("no-such-command")


def test_monitoring_line_pushes_changes(dlc: Any) -> None:
    cc = dlc.laser1.dl.cc
    seen: list[float] = []
    got_two = threading.Event()

    def on_update(_sub: Any, _time: Any, value: Any) -> None:
        seen.append(value.get())
        if len(seen) >= 2:
            got_two.set()

    subscription = cc.current_set.subscribe(on_update)
    try:
        dlc.run(timeout=0.3)  # the first update: the value when subscribed
        cc.current_set.set(119.0)
        for _ in range(20):
            dlc.run(timeout=0.1)
            if got_two.is_set():
                break
    finally:
        subscription.cancel()
    assert seen[0] == pytest.approx(120.0) and seen[-1] == 119.0
    cc.current_set.set(120.0)


def _raw(port: int, requests: list[bytes]) -> list[str]:
    """Send request lines on a bare socket; the reply of each (prompt stripped)."""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        stream = sock.makefile("rb")
        assert _until_prompt(stream) == "DeCoF Command Line\r\n"
        replies = []
        for request in requests:
            sock.sendall(request)
            replies.append(_until_prompt(stream).rstrip("\r\n"))
        return replies


def _until_prompt(stream: Any) -> str:
    data = b""
    while not data.endswith(b"\n> "):
        chunk = stream.read(1)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data[:-2].decode()


def test_multi_get_and_multi_set_expressions(lab: Lab) -> None:
    command, _ = _ports(lab)
    replies = _raw(
        command,
        [
            b"`(,(param-ref 'laser1:dl:cc:enabled),(param-ref 'serial-number))\n",
            b"(+ (param-set! 'laser1:dl:pc:voltage-set 70.5)(param-set! 'laser1:dl:tc:temp-set 24.0))\n",
            b"(param-ref 'laser1:dl:pc:voltage-set)\n",
            b"(param-ref 'laser1:dl:cc:current-set\n",  # unbalanced
        ],
    )
    assert replies[0] == '(#t "DLCPRO_000435")'
    assert replies[1] == "0"
    assert float(replies[2]) == 70.5
    assert replies[3].startswith("Error:")


def test_half_written_line_and_dropped_connection_change_nothing(lab: Lab) -> None:
    command, _ = _ports(lab)
    before = lab.world.lasers["435"].current_a
    with socket.create_connection(("127.0.0.1", command), timeout=3) as sock:
        sock.sendall(b"(param-set! 'laser1:dl:cc:current-set 50.0)")  # no newline, then gone
    assert _raw(command, [b"(param-ref 'laser1:dl:cc:current-set)\n"]) == [f"{before * 1e3:.6f}"]


def test_monitoring_line_reports_an_unknown_parameter_to_its_subscriber(lab: Lab) -> None:
    command, monitoring = _ports(lab)
    errors: list[str] = []
    with Client(NetworkConnection("127.0.0.1", command, monitoring, timeout=3)) as client:

        def on_update(_sub: Any, _time: Any, value: Any) -> None:
            try:
                value.get()
            except DecopError as err:
                errors.append(str(err))

        subscription = client.subscribe("laser1:dl:cc:no-such-thing", on_update)
        for _ in range(20):
            client.run(timeout=0.1)
            if errors:
                break
        subscription.cancel()
    assert errors and errors[0].startswith("Error: 2 ")
