"""What the daemon keeps for weeks stays bounded, and what it writes for a restart survives a
crash: the audit file keeps its newest rows and sets a damaged file aside, the uptime records fold
old faults into totals, operator commands cannot pile up, and the lock state is written with
fsync of the file and of its directory, leaving no temporary files behind after a crash."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from ionpilot.bus.codec import BusError, Request
from ionpilot.bus.settings import BusSettings
from ionpilot.core.clock import ManualClock
from ionpilot.servo.audit import AuditLog
from ionpilot.servo.daemon import MAX_PENDING_ACTIONS, Daemon
from ionpilot.servo.persistence import ClockLockSnapshot, StateStore
from ionpilot.servo.settings import ClockLockSettings, PulseCalibration
from ionpilot.servo.uptime import UptimeAccount

NOW = 1_700_000_000_000_000_000
SNAPSHOT = ClockLockSnapshot(
    saved_wall_ns=NOW,
    reference_wall_ns=NOW,
    aom_frequency_hz=200_000_037.25,
    drift_hz_per_s=0.3,
    state="locked",
    interrogation="rabi",
    updates=1200,
)


# ----------------------------------------------------------------------------- audit log


def test_audit_file_keeps_only_the_newest_rows(tmp_path: Path) -> None:
    clock = ManualClock()
    path = tmp_path / "audit.sqlite"
    log = AuditLog(clock, path, max_rows=50, prune_every=10)
    for i in range(300):
        clock.advance(1.0)
        log.record("step", f"a{i}", "done", detail="x" * 200)
    assert log.count == 300
    assert log.row_count() <= 50 + 10  # pruned in batches of prune_every
    assert log.rows()[-1][3] == "a299"  # the newest survive
    size = path.stat().st_size
    for i in range(300):  # freed pages are reused: the file does not keep growing
        log.record("step", f"b{i}", "done", detail="x" * 200)
    assert log.row_count() <= 50 + 10
    assert path.stat().st_size <= size * 1.5
    log.close()


def test_audit_is_pruned_at_open_for_a_daemon_that_restarts_often(tmp_path: Path) -> None:
    clock = ManualClock()
    path = tmp_path / "audit.sqlite"
    for _ in range(5):  # five short lives, each well below one pruning batch
        log = AuditLog(clock, path, max_rows=20, prune_every=1000)
        for i in range(15):
            log.record("step", f"x{i}", "done")
        log.close()
    again = AuditLog(clock, path, max_rows=20, prune_every=1000)
    assert again.row_count() == 20
    again.close()


def test_damaged_audit_file_is_set_aside_and_the_daemon_starts(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    path.write_bytes(b"\x00not a database, a power cut\xff" * 500)
    seen: list[Any] = []
    log = AuditLog(ManualClock(), path, sinks=[seen.append])
    assert log.open_error is not None and "moved to" in log.open_error
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("audit.sqlite.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"\x00not a database")
    assert seen[0].kind == "audit_restore_failed" and seen[0].severity == "MAJOR"
    log.record("trip", "ion_loss", "no fluorescence")
    assert [r[2] for r in log.rows()] == ["audit_restore_failed", "trip"]
    log.close()


def test_locked_audit_file_is_not_mistaken_for_a_damaged_one() -> None:
    from ionpilot.servo.audit import _damaged

    assert not _damaged(sqlite3.OperationalError("database is locked"))
    exc = sqlite3.DatabaseError("file is not a database")
    exc.sqlite_errorcode = sqlite3.SQLITE_NOTADB  # type: ignore[attr-defined]
    assert _damaged(exc)


# ------------------------------------------------------------------------------- uptime


def test_uptime_records_are_bounded_and_totals_stay_exact() -> None:
    account = UptimeAccount(0.0, max_records=100)
    for i in range(10_000):
        record = account.fault_tripped("ion_loss" if i % 2 else "mode_hop", "book", i, "")
        record.finished_s = i + 0.5
        if i % 10 == 0:
            record.escalated = True
        else:
            record.recovered_s = i + (2.0 if i % 2 else 4.0)
    in_progress = account.fault_tripped("ion_loss", "book", 10_000.0, "")  # still running
    for i in range(500):  # the unfinished one is older than max_records now, and is kept
        account.fault_tripped("mode_hop", "book", 10_001.0 + i, "").escalated = True
    assert len(account.faults) <= 100 + 10 + 1
    assert in_progress in account.faults
    assert account.fields()["faults"] == 10_501
    summary = account.summary()
    ion, hop = summary["ion_loss"], summary["mode_hop"]
    assert ion["count"] == 5001 and hop["count"] == 5500
    assert ion["recovered"] == 5000 and ion["escalated"] == 0
    assert hop["recovered"] == 4000 and hop["escalated"] == 1500
    assert ion["mttr_s"] == {"median": 2.0, "max": 2.0}
    assert hop["mttr_s"] == {"median": 4.0, "max": 4.0}
    in_progress.finished_s = in_progress.recovered_s = 10_003.0  # finishing late still counts
    assert account.summary()["ion_loss"]["recovered"] == 5001


# ----------------------------------------------------------------------- daemon commands


def test_operator_commands_cannot_pile_up_while_the_lock_thread_is_busy(tmp_path: Path) -> None:
    bus = BusSettings(publish_port=1, subscribe_port=2)  # nothing is sent in this test
    daemon = Daemon(
        ClockLockSettings(),
        PulseCalibration(),
        bus,
        drivers_call=lambda *a, **k: None,
        command_endpoint="tcp://127.0.0.1:0",
        state_dir=tmp_path,
        clock=ManualClock(),
    )
    try:
        request = Request(1, "call", "daemon", {"name": "pause"}, "script")
        for _ in range(MAX_PENDING_ACTIONS):
            assert daemon._command(request) == {"queued": "pause"}
        for _ in range(1000):  # a script in a loop: refused, not queued
            with pytest.raises(BusError) as refused:
                daemon._command(request)
            assert refused.value.code == "busy"
        assert len(daemon._pending) == MAX_PENDING_ACTIONS
    finally:
        daemon.server.close()
        daemon.publisher.close()


# ------------------------------------------------------------------------ persisted state


def test_state_file_and_its_directory_are_fsynced(tmp_path: Path, monkeypatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    store = StateStore(tmp_path / "state")
    store.save(SNAPSHOT)
    directory = str(store.directory)
    assert len(synced) == 2
    assert synced[0].startswith(f"{directory}/.clock_lock.json.")  # the data, before the rename
    assert synced[1] == directory  # the rename


def test_crash_mid_write_keeps_the_old_state_and_leaves_no_litter(
    tmp_path: Path, monkeypatch
) -> None:
    store = StateStore(tmp_path)
    store.save(SNAPSHOT)

    def power_cut(src: str, dst: str) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", power_cut)
    with pytest.raises(OSError):
        store.save(dataclasses.replace(SNAPSHOT, updates=9999))
    monkeypatch.undo()
    assert store.load(NOW, 600).updates == 1200  # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["clock_lock.json"]


def test_temporary_files_of_killed_daemons_are_swept(tmp_path: Path) -> None:
    for i in range(50):  # what 50 kill -9 between mkstemp and rename would leave
        (tmp_path / f".clock_lock.json.crash{i}").write_text('{"half": ')
    (tmp_path / "audit.sqlite").write_bytes(b"")  # not ours to touch
    store = StateStore(tmp_path)
    store.save(SNAPSHOT)
    store.save(dataclasses.replace(SNAPSHOT, updates=1201))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.sqlite", "clock_lock.json"]
    assert store.load(NOW, 600).updates == 1201


# ------------------------------------------------------------------------ recovery engine


def test_escalation_history_is_bounded_and_counted() -> None:
    from ionpilot.servo.health import HealthMonitor
    from ionpilot.servo.recovery import KEEP_ESCALATIONS, RecoveryEngine
    from ionpilot.servo.settings import RecoverySettings

    class Lab:
        def set(self, parameter: str, value: float) -> None:
            pass

    class Lock:
        def stop(self, reason: str) -> None:
            pass

    clock = ManualClock()
    engine = RecoveryEngine(
        [],
        RecoverySettings(),
        HealthMonitor({}, clock),
        lock=Lock(),  # type: ignore[arg-type]
        lab=Lab(),  # type: ignore[arg-type]
        clock=clock,
        uptime=UptimeAccount(0.0, max_records=50),
    )
    for i in range(10 * KEEP_ESCALATIONS):  # an operator who resumes a failing lab, for weeks
        clock.advance(60.0)
        engine._escalate(clock.now(), "unrecognised", f"fault {i}")
        engine.safe = False
    assert engine.escalation_count == 10 * KEEP_ESCALATIONS
    assert len(engine.escalations) == KEEP_ESCALATIONS
    assert engine.escalations[-1]["reason"] == f"fault {10 * KEEP_ESCALATIONS - 1}"
    assert len(engine.uptime.faults) <= 55
    assert engine.uptime.fields()["faults"] == 10 * KEEP_ESCALATIONS
