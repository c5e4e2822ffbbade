"""The recorder's store against bare SQLite, while the lab runs; history query time; a year's size.

    .venv/bin/python bench/recorder.py [--messages 200000] [--lab-seconds 40] [--no-lab] [--json]

* ingest: the recorder's own write path (`Store.add` per bus message: sequence accounting, series
  lookup, rows; `Store.commit` per batch of the recorder's size) against the same rows put
  through a bare `sqlite3` `executemany` loop into the same table, same pragmas, same batches
  (the ceiling), in one run, alternating, while `ionpilot up` runs the simulated lab beside
  them (the recorder's real situation; --no-lab leaves it out). `ingest_ratio` = store / bare
  samples per second (target >= 0.5); the CPU-time ratio is printed too (wall time is noisy
  on a shared machine).
* `query_1day_ms`: one day of a 1 Hz topic at 1-minute resolution (1440 points) from a record
  holding that day, median of 20 queries (target <= 50 ms).
* the lab's own rate as its recorder saw it (rows/s, series), the bytes per row measured here, and
  from them the size of a year of the default lab under the default retentions (raw 30 d,
  1-minute 365 d, hourly beyond).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ionpilot.bus.client import CommandClient
from ionpilot.bus.codec import Telemetry
from ionpilot.config import load_config
from ionpilot.core.clock import ManualClock
from ionpilot.recorder.query import History
from ionpilot.recorder.settings import RecorderSettings
from ionpilot.recorder.store import NS, SCHEMA, Store

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "foundation"))
from labprocs import lab_on_free_ports  # type: ignore[import-not-found]  # noqa: E402

BATCH = 5_000  # the recorder's batch_rows default
TOPICS = 60  # about the default lab's number of telemetry topics


def messages(count: int, t0: int) -> list[Telemetry]:
    """`count` scalar readings spread over TOPICS topics, as the lab publishes them."""
    out = []
    for k in range(count):
        topic = f"tlm.bench{k % TOPICS}.value"
        out.append(
            Telemetry(k // TOPICS + 1, t0 + k * 1000, "drivers", 1.0 + k * 1e-3, "V", "OK", topic)
        )
    return out


def store_run(path: Path, msgs: list[Telemetry]) -> tuple[float, float, int]:
    """(wall s, CPU s, rows) through the recorder's Store."""
    store = Store(path, RecorderSettings(), ManualClock(wall_start_ns=msgs[0].t))
    wall, cpu = time.perf_counter(), time.process_time()
    add, commit = store.add, store.commit
    for k, msg in enumerate(msgs, 1):
        add(msg)
        if k % BATCH == 0:
            commit()
    commit()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    rows = store.rows_written
    store.close()
    return wall, cpu, rows


def bare_run(path: Path, msgs: list[Telemetry]) -> tuple[float, float, int]:
    """(wall s, CPU s, rows) of the same rows by `executemany` into the same table."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA)
    ids = {f"tlm.bench{k}.value": k + 1 for k in range(TOPICS)}
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(msgs), BATCH):
        rows = [(ids[m.topic], m.t, m.seq, m.value, None, 0) for m in msgs[start : start + BATCH]]
        db.execute("BEGIN")
        db.executemany("INSERT OR IGNORE INTO raw VALUES (?, ?, ?, ?, ?, ?)", rows)
        db.execute("COMMIT")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    db.close()
    return wall, cpu, len(msgs)


def file_bytes(path: Path) -> int:
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    (size,) = db.execute("PRAGMA page_size").fetchone()
    db.close()
    return int(pages) * int(size)


def query_day(folder: Path) -> tuple[float, int]:
    """Median ms of one day of a 1 Hz topic at 1-minute resolution, and its point count."""
    day_ago = (time.time_ns() // NS - 86_400) // 60 * 60 * NS
    clock = ManualClock(wall_start_ns=day_ago)
    path = folder / "day.sqlite"
    store = Store(path, RecorderSettings(), clock)
    for k in range(86_400):
        store.add(
            Telemetry(k + 1, clock.wall_ns(), "daemon", 1e3 + k % 17, "Hz", "OK", "servo.x.f")
        )
        clock.advance(1.0)
        if k % BATCH == BATCH - 1:
            store.commit()
    store.commit()
    store.rollup()
    store.close()
    history = History(path, RecorderSettings(), clock)
    times = []
    points = 0
    for _ in range(20):
        start = time.perf_counter()
        got = history.history("servo.x.f", day_ago, clock.wall_ns(), every_s=60.0)
        times.append((time.perf_counter() - start) * 1e3)
        points = len(got["t_ns"])
    return statistics.median(times), points


class LabRun:
    """`ionpilot up` on free ports in a temporary directory, for the bench's duration."""

    def __init__(self, folder: Path, seconds: float) -> None:
        self.lab = lab_on_free_ports(folder, "bench-recorder")
        self.config = load_config(self.lab)
        argv = [sys.executable, "-m", "ionpilot.cli", "up", "--config", str(self.lab)]
        argv += ["--duration", f"{seconds:g}", "--quiet"]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT
        )

    def recorder_status(self) -> dict[str, Any]:
        port = self.config.processes["recorder"].command_port
        try:
            with CommandClient(self.config.bus, f"tcp://127.0.0.1:{port}") as client:
                reply = client.call("recorder", "status", {}, timeout=2.0)
        except Exception:  # not up yet
            return {}
        return reply if isinstance(reply, dict) else {}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(60)


def year_size(rows_per_s: float, series: int, row_bytes: float, settings: RecorderSettings) -> int:
    """Bytes of a year under the default retentions: raw for raw_retention, one 1-minute row
    per series-minute for a year, hourly rows for the year."""
    raw = rows_per_s * settings.raw_retention * row_bytes
    minute = series * 525_600 * row_bytes
    hour = series * 8_760 * row_bytes
    return int(raw + minute + hour)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--lab-seconds", type=float, default=40.0)
    parser.add_argument("--no-lab", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ionpilot-bench-recorder-"))
    lab: LabRun | None = None
    out: dict[str, Any] = {"messages": args.messages, "batch_rows": BATCH}
    try:
        if not args.no_lab:
            lab = LabRun(folder, args.lab_seconds + 120)
            deadline = time.monotonic() + 90
            while not lab.recorder_status() and time.monotonic() < deadline:
                time.sleep(0.5)
            first = lab.recorder_status()
            t_first = time.monotonic()
        msgs = messages(args.messages, time.time_ns() - 10**12)
        store_s: list[tuple[float, float, int]] = []
        bare_s: list[tuple[float, float, int]] = []
        for k in range(3):  # alternating, so both see the same load
            store_s.append(store_run(folder / f"store{k}.sqlite", msgs))
            bare_s.append(bare_run(folder / f"bare{k}.sqlite", msgs))
        row_bytes = file_bytes(folder / "store0.sqlite") / store_s[0][2]
        store_rate = statistics.median(r / w for w, _, r in store_s)
        bare_rate = statistics.median(r / w for w, _, r in bare_s)
        store_cpu = statistics.median(r / c for _, c, r in store_s)
        bare_cpu = statistics.median(r / c for _, c, r in bare_s)
        out.update(
            store_samples_per_s=round(store_rate),
            bare_samples_per_s=round(bare_rate),
            ingest_ratio=round(store_rate / bare_rate, 3),
            ingest_ratio_cpu=round(store_cpu / bare_cpu, 3),
            bytes_per_row=round(row_bytes, 1),
        )
        query_ms, points = query_day(folder)
        out.update(query_1day_ms=round(query_ms, 2), query_1day_points=points)
        if lab is not None:
            while time.monotonic() - t_first < args.lab_seconds:
                time.sleep(0.5)
            last = lab.recorder_status()
            span = time.monotonic() - t_first
            if first and last:
                rate = (last["rows_written"] - first["rows_written"]) / span
                out.update(
                    lab_running=True,
                    lab_rows_per_s=round(rate, 1),
                    lab_messages_per_s=round((last["messages"] - first["messages"]) / span, 1),
                    lab_series=last["series"],
                    lab_gaps=last["gaps"],
                    year_size_bytes=year_size(rate, last["series"], row_bytes, RecorderSettings()),
                )
            else:
                out["lab_running"] = False
        out["targets"] = {
            "ingest_ratio>=0.5": out["ingest_ratio"] >= 0.5,
            "query_1day_ms<=50": out["query_1day_ms"] <= 50,
        }
    finally:
        if lab is not None:
            lab.stop()
        shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key}: {value}")
    return 0 if all(out["targets"].values()) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
