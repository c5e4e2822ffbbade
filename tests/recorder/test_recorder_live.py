"""The recorder on a real hub: history over the bus with units and lock state, the console's
clock plots opening with the stored hour, and kill -9 under the supervisor (the absence is a gap
with its span; every number outside it stored exactly once)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import dataclasses
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from labprocs import free_ports, hub_on_free_ports, lab_on_free_ports, wait_for  # type: ignore[import-not-found]

from ionpilot.bus.client import CommandClient
from ionpilot.bus.directory import Directory
from ionpilot.bus.pubsub import Publisher
from ionpilot.bus.settings import BusSettings, ProcessSettings
from ionpilot.recorder.client import fetch_history
from ionpilot.recorder.service import Recorder, record_path
from ionpilot.recorder.settings import RecorderSettings
from ionpilot.script import Lab
from ionpilot.supervisor import ChildSpec, Supervisor, ionpilot_argv

NS = 1_000_000_000


@dataclasses.dataclass
class Recording:
    bus: BusSettings
    recorder: Recorder
    endpoint: str
    publisher: Publisher


@pytest.fixture
def recording(tmp_path: Path) -> Iterator[Recording]:
    with hub_on_free_ports(BusSettings()) as (_hub, bus):
        (port,) = free_ports(1)
        endpoint = f"tcp://127.0.0.1:{port}"
        recorder = Recorder(bus, RecorderSettings(), tmp_path, command_endpoint=endpoint).start()
        publisher = Publisher(bus, "daemon")
        try:
            yield Recording(bus, recorder, endpoint, publisher)
        finally:
            publisher.close()
            recorder.stop()


def publish_until_heard(rec: Recording) -> None:
    """Publish a probe until the recorder stores it (the subscription has reached the hub)."""

    def heard() -> bool:
        rec.publisher.publish("tlm.probe.value", 1.0)
        time.sleep(0.05)
        return rec.recorder.store.messages > 0

    wait_for(heard, 10.0)


def stored(rec: Recording, messages: int) -> bool:
    """At least `messages` received and every one of them committed."""
    store = rec.recorder.store
    return store.messages >= messages and store.pending == 0


def publish_clock_hour(rec: Recording, points: int = 120) -> list[int]:
    """The last hour of the clock: its state, output frequency and servo records."""
    pub = rec.publisher
    now = time.time_ns()
    times = [now - 3500 * NS + k * (3400 * NS // points) for k in range(points)]
    pub.publish("servo.clock.state", "acquiring", t=times[0] - NS)
    for k, t in enumerate(times):
        if k == 10:
            pub.publish("servo.clock.state", "locked", t=t - 1)
        pub.publish("servo.clock.output_frequency", 688_358_979_309_308.0 + 0.1 * k, "Hz", t=t)
        pub.publish("servo.clock.optical_frequency", {"output_frequency_hz": 6.88e14 + k}, t=t)
        pub.publish("servo.clock.error", 0.01 * (k % 7 - 3), "Hz", t=t)
        pub.publish("servo.clock.update", {"aom_frequency_hz": 200e6 + k, "error_hz": 0.0}, t=t)
    return times


def test_history_over_the_bus_has_units_and_lock_state(recording: Recording) -> None:
    publish_until_heard(recording)
    times = publish_clock_hour(recording)
    series = "servo.clock.output_frequency"
    wait_for(lambda: stored(recording, 4 * len(times) + 3), 10.0)
    with CommandClient(recording.bus, recording.endpoint) as client:
        got = fetch_history(client.call, series, times[0] - NS, time.time_ns())
        assert got["tier"] == "raw" and got["unit"] == "Hz"
        assert got["t_ns"] == times
        assert got["value"][3] == pytest.approx(688_358_979_309_308.3)
        assert got["lock_state"][:10] == ["acquiring"] * 10
        assert set(got["lock_state"][10:]) == {"locked"}
        minute = fetch_history(client.call, series, times[0] - NS, time.time_ns(), 60.0)
        assert minute["tier"] == "agg_1min" and sum(minute["count"]) == len(times)
        from ionpilot.bus.codec import BusError

        with pytest.raises(BusError, match=r"nothing recorded as 'servo\.clock\.nothing'"):
            fetch_history(client.call, "servo.clock.nothing", times[0], time.time_ns())
    port = int(recording.endpoint.rsplit(":", 1)[1])
    directory = Directory.from_config("127.0.0.1", {"recorder": ProcessSettings(port)})
    with Lab(directory, recording.bus) as lab:  # the script API: numpy arrays
        h = lab.history(series, since=times[0] - NS)
        assert h.tier == "raw" and h.unit == "Hz" and len(h) == len(times)
        assert h.t_ns.dtype == np.int64 and list(h.t_ns) == times
        assert h.value.dtype == np.float64 and h.value[3] == pytest.approx(6.883589793093083e14)
        assert h.lock_state is not None and list(h.lock_state[9:11]) == ["acquiring", "locked"]
        m = lab.history("servo.clock.error", since=times[0] - NS, every="1min")
        assert m.tier == "agg_1min" and m.count is not None and m.count.sum() == len(times)
        assert m.min is not None and m.max is not None and (m.min <= m.max).all()
        with pytest.raises(ValueError, match="until"):
            lab.history(series, since="1h", until="2h")


def test_the_console_clock_plots_open_with_the_stored_hour(
    recording: Recording, qtbot: Any
) -> None:
    from ionpilot.gui.app import build_console, ensure_app
    from ionpilot.gui.clock import AOM_SERIES

    publish_until_heard(recording)
    times = publish_clock_hour(recording)
    wait_for(lambda: stored(recording, 4 * len(times) + 3), 10.0)
    port = int(recording.endpoint.rsplit(":", 1)[1])
    directory = Directory.from_config("127.0.0.1", {"recorder": ProcessSettings(port)})
    ensure_app()
    console = build_console(recording.bus, directory)
    qtbot.addWidget(console.window)
    try:
        store = console.store
        comb = "servo.clock.optical_frequency:output_frequency_hz"

        def filled() -> bool:
            return all(
                s in store.history and len(store.history[s]) >= len(times)
                for s in (comb, AOM_SERIES, "servo.clock.error")
            )

        qtbot.waitUntil(filled, timeout=10_000)
        t, _ = store.history[comb].view()
        assert t[0] == pytest.approx(times[0] / 1e9)
        states = [v for _, v in store.changes["servo.clock.state"]]
        assert states[:2] == ["acquiring", "locked"]
        console.window.show_panel("clock")
        console.window.clock.refresh()
        x, _ = console.window.clock.comb_curve.getData()
        assert x is not None and len(x) >= len(times)
    finally:
        console.close()


def test_kill_9_of_the_recorder_is_a_gap_and_nothing_else_is_lost_or_doubled(
    tmp_path: Path,
) -> None:
    lab = lab_on_free_ports(tmp_path, "kill9", secured=False)  # its counter owns no topic
    from ionpilot.config import load_config

    config = load_config(lab)
    specs = [
        ChildSpec("hub", ionpilot_argv("hub", "--config", str(lab)), ready_prefix="hub:"),
        ChildSpec("recorder", ionpilot_argv("recorder", "--config", str(lab))),
    ]
    supervisor = Supervisor(specs, backoff_initial_s=0.2, log_dir=tmp_path / "logs")
    topic = "tlm.counter.value"
    publisher = Publisher(config.bus, "counter")
    sent = 0

    def publish(seconds: float) -> None:
        nonlocal sent
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sent += 1
            publisher.publish(topic, float(sent))
            time.sleep(0.002)
            supervisor.tick()

    recorder = CommandClient(
        config.bus, f"tcp://127.0.0.1:{config.processes['recorder'].command_port}"
    )
    path = record_path(config.lab.data_dir)

    def stored() -> int:
        try:
            status = recorder.call("recorder", "status", {}, timeout=1.0)
        except Exception:
            return 0
        return int(status["messages"]) if isinstance(status, dict) else 0

    try:
        supervisor.start_all()
        publish(1.0)
        wait_for(lambda: stored() > 50, 10.0)
        publish(1.0)
        victim = supervisor.children["recorder"].pid
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        publish(1.0)  # the supervisor notices, backs off, restarts
        wait_for(lambda: supervisor.children["recorder"].pid not in (None, victim), 10.0)
        recorder.close()
        recorder = CommandClient(
            config.bus, f"tcp://127.0.0.1:{config.processes['recorder'].command_port}"
        )
        wait_for(lambda: stored() > 0, 20.0)  # the new one is up and storing
        publish(1.0)
        commits = recorder.call("recorder", "status", {})["commits"]
        # two commits more: everything received before now is on disk
        wait_for(lambda: recorder.call("recorder", "status", {})["commits"] >= commits + 2, 5.0)
    finally:
        recorder.close()
        publisher.close()
        supervisor.stop_all()
    assert supervisor.children["recorder"].policy.restarts == 1
    db = sqlite3.connect(path)
    (sid,) = db.execute("SELECT id FROM series WHERE topic = ? AND field = ''", (topic,)).fetchone()
    seqs = [r[0] for r in db.execute("SELECT seq FROM raw WHERE series = ? ORDER BY seq", (sid,))]
    gaps = db.execute(
        "SELECT first_seq, last_seq, start_ns, end_ns, reason FROM gaps WHERE topic = ?", (topic,)
    ).fetchall()
    away = db.execute(
        "SELECT start_ns, end_ns FROM gaps WHERE topic IS NULL AND reason = 'recorder_down'"
    ).fetchall()
    db.close()
    assert len(seqs) == len(set(seqs)), "a sequence number stored twice"
    assert len(away) == 1 and away[0][1] > away[0][0]  # the recorder's absence, with its span
    down = [g for g in gaps if g[4] == "recorder_down"]
    assert len(down) == 1, gaps
    first, last, start_ns, end_ns, _ = down[0]
    assert end_ns - start_ns > 0.1 * NS  # it was away for a while
    missed = {n for g in gaps for n in range(g[0], g[1] + 1)}
    expected = set(range(seqs[0], seqs[-1] + 1))
    assert set(seqs) | missed == expected  # every number outside the gaps stored
    assert not set(seqs) & missed  # ... and none inside
    assert last - first + 1 >= 100  # a second of publishing at least fell into the gap
    assert seqs[-1] > last  # and recording went on after it
    assert (tmp_path / "logs" / "recorder.log").read_text().count("[supervisor] started") == 2
