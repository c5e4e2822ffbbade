"""Console benchmark: 20 strip-chart traces of 10,000 points redrawn offscreen while the
console receives 2,000 telemetry messages per second from another process.

The publisher runs in a process of its own (as the driver hosts do); the console runs its real
Plots panel (ring buffers, peak downsampling, one plot per unit and magnitude). `fps` counts
paints of the chart view that followed new data; `worst_stall_ms` is the event loop's worst
delay: a 5 ms timer's longest gap beyond its interval.

    QT_QPA_PLATFORM=offscreen python bench/gui.py --json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
from PyQt6.QtCore import QElapsedTimer, QEvent, QObject, Qt, QTimer
from PyQt6.QtWidgets import QApplication

from ionpilot.bus import BusSettings, Hub
from ionpilot.gui.app import build_console, ensure_app
from ionpilot.gui.context import LabFacts
from ionpilot.gui.settings import GuiSettings

PUBLISHER = r"""
import sys, time, math
from ionpilot.bus import BusSettings, Publisher
pub_port, sub_port, rate, traces, seconds = (float(a) for a in sys.argv[1:6])
bus = BusSettings(publish_port=int(pub_port), subscribe_port=int(sub_port))
pub = Publisher(bus, "bench")
topics = [f"tlm.bench{i // 5}.signal{i:02d}" for i in range(int(traces))]
units = ["Hz", "V", "A", "dBm"]
start = time.perf_counter()
n = 0
while True:
    now = time.perf_counter() - start
    if now > seconds:
        break
    due = int(now * rate)
    while n < due:
        i = n % len(topics)
        pub.publish(topics[i], math.sin(n * 0.01 + i) + 0.01 * (n % 7), units[i % 4])
        n += 1
    time.sleep(0.002)
print(n)
"""


class PaintCounter(QObject):
    """Counts paint events of a widget."""

    def __init__(self) -> None:
        super().__init__()
        self.paints = 0

    def eventFilter(self, obj: QObject | None, event: QEvent | None) -> bool:  # noqa: N802
        if event is not None and event.type() == QEvent.Type.Paint:
            self.paints += 1
        return False


def run(traces: int, points: int, rate: float, seconds: float, redraw_hz: float) -> dict:
    app: QApplication = ensure_app()
    hub = Hub(BusSettings(publish_port=0, subscribe_port=0)).start()
    bus = dataclasses.replace(
        BusSettings(),
        publish_port=int(hub.publish_endpoint.rsplit(":", 1)[1]),
        subscribe_port=int(hub.subscribe_endpoint.rsplit(":", 1)[1]),
    )
    settings = GuiSettings(history_points=points, plot_redraw_rate=redraw_hz)
    console = build_console(bus, None, LabFacts(name="bench"), settings)
    window = console.window
    window.resize(1600, 1000)
    window.show()
    window.show_panel("plots")
    plots = window.plots
    # every trace starts full: `points` samples over the last points/per-trace-rate seconds
    per_trace_rate = rate / traces
    now = time.time()
    t = now - np.arange(points)[::-1] / per_trace_rate
    store = console.store
    names = [f"tlm.bench{i // 5}.signal{i:02d}" for i in range(traces)]
    rng = np.random.default_rng(1)
    from ionpilot.bus.codec import Telemetry

    units = ["Hz", "V", "A", "dBm"]
    for i, name in enumerate(names):
        store.ingest(Telemetry(0, int(t[-1] * 1e9), "bench", 0.0, units[i % 4], "OK", name))
        ring = store.history[name]
        y = np.cumsum(rng.normal(size=points)) * 0.01 + i
        for a, b in zip(t, y, strict=True):
            ring.append(float(a), float(b))
    plots.refresh()
    plots.choose(names)
    plots.window_box.setCurrentIndex(2)  # 10 min: every sample is in view
    counter = PaintCounter()
    viewport = plots.charts.graphics.viewport()
    assert viewport is not None
    viewport.installEventFilter(counter)
    for _ in range(20):  # settle the layout
        app.processEvents()
        plots.charts.redraw()

    worst = [0.0]
    clock = QElapsedTimer()
    clock.start()
    last = [clock.nsecsElapsed()]
    probe = QTimer()
    probe.setTimerType(Qt.TimerType.PreciseTimer)
    probe.setInterval(5)

    def tick() -> None:
        now_ns = clock.nsecsElapsed()
        gap = (now_ns - last[0]) / 1e6 - 5.0
        worst[0] = max(worst[0], gap)
        last[0] = now_ns

    probe.timeout.connect(tick)
    cmd = [
        sys.executable,
        "-c",
        PUBLISHER,
        str(bus.publish_port),
        str(bus.subscribe_port),
        str(rate),
        str(traces),
        str(seconds + 1.0),
    ]
    publisher = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    start_msgs = store.messages
    # warm up one second (the publisher connects), then measure
    deadline = time.perf_counter() + 1.0
    while time.perf_counter() < deadline:
        app.processEvents()
        time.sleep(0.001)
    paints0, frames0, msgs0 = counter.paints, plots.charts.frames, store.messages
    probe.start()
    last[0] = clock.nsecsElapsed()
    worst[0] = 0.0
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    while time.perf_counter() - t0 < seconds:
        app.processEvents()
        time.sleep(0.0005)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    probe.stop()
    paints = counter.paints - paints0
    frames = plots.charts.frames - frames0
    received = store.messages - msgs0
    sent = int(publisher.communicate(timeout=30)[0].strip() or 0)
    result = {
        "traces": traces,
        "points_per_trace": min(points, len(store.history[names[0]])),
        "offered_msgs_per_s": rate,
        "received_msgs_per_s": round(received / elapsed, 1),
        "published_total": sent,
        "received_total": store.messages - start_msgs,
        "redraw_rate_requested_hz": redraw_hz,
        "fps": round(min(paints, frames) / elapsed, 1),
        "paints_per_s": round(paints / elapsed, 1),
        "data_frames_per_s": round(frames / elapsed, 1),
        "worst_stall_ms": round(worst[0], 1),
        "gui_cpu_fraction": round(cpu / elapsed, 2),
        "seconds": round(elapsed, 2),
        "platform": os.environ.get("QT_QPA_PLATFORM", ""),
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }
    console.close()
    hub.stop()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=20)
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=2000.0, help="telemetry messages per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--redraw-hz", type=float, default=60.0, help="requested redraw rate")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.traces, args.points, args.rate, args.seconds, args.redraw_hz)
    result["targets"] = {"fps": ">= 30", "worst_stall_ms": "<= 50"}
    result["meets_targets"] = result["fps"] >= 30 and result["worst_stall_ms"] <= 50
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>26}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
