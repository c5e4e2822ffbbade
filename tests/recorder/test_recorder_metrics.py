"""Prometheus metrics of the daemon, a driver host and the recorder, scraped by a real
Prometheus: lock state, health severity per signal, instruments, messages and gaps."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

from labprocs import free_ports, lab_config, live_lab, wait_for  # type: ignore[import-not-found]
from servers import get, prometheus  # type: ignore[import-not-found]

from ionpilot.metrics import daemon_snapshot, host_snapshot, recorder_snapshot, serve_metrics
from ionpilot.recorder.service import Recorder
from ionpilot.servo.daemon import Daemon
from ionpilot.sim.clock import RealClock


def query(url: str, promql: str) -> list[dict[str, Any]]:
    body = get(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")
    result: list[dict[str, Any]] = json.loads(body)["data"]["result"]
    return result


def test_prometheus_scrapes_daemon_driver_host_and_recorder(tmp_path: Path) -> None:
    config = lab_config()
    ports = free_ports(3)
    servers: list[Any] = []
    with live_lab(["rf_drive", "oven"], RealClock(), poll_s=0.2, connected_within_s=10.0) as live:
        daemon = Daemon(  # not started: its metrics read the lock and health as they stand
            config.servo.clock_lock,
            config.servo.pulses,
            live.bus,
            drivers_call=lambda *a, **k: {},
            command_endpoint="tcp://127.0.0.1:0",
            state_dir=tmp_path / "servo",
            aux_locks=dict(config.servo.aux_locks),
            recovery=config.recovery,
            health=config.health,
        )
        recorder = Recorder(live.bus, config.recorder, tmp_path).start()
        try:
            servers.append(
                serve_metrics("daemon", lambda: daemon_snapshot(daemon.metrics()), ports[0])
            )
            servers.append(
                serve_metrics("drivers", lambda: host_snapshot(live.host.metrics()), ports[1])
            )
            servers.append(
                serve_metrics("recorder", lambda: recorder_snapshot(recorder.status()), ports[2])
            )
            with prometheus(tmp_path, [f"127.0.0.1:{p}" for p in ports]) as prom:
                prom.start()

                def scraped() -> list[dict[str, Any]] | None:
                    up = query(prom.url, 'up{job="ionpilot"} == 1')
                    messages = query(prom.url, "ionpilot_recorder_messages_total > 0")
                    return up if len(up) == 3 and messages else None

                wait_for(scraped, 30.0)
                state = query(prom.url, "ionpilot_clock_lock_state == 1")
                assert [r["metric"]["state"] for r in state] == [daemon.lock.state.value]
                assert daemon.recovery is not None
                severities = query(prom.url, "ionpilot_health_severity")
                assert {r["metric"]["signal"] for r in severities} == set(
                    daemon.recovery.health.signals
                )
                connected = query(prom.url, "ionpilot_instrument_connected")
                assert {r["metric"]["instrument"]: r["value"][1] for r in connected} == {
                    "rf_drive": "1",
                    "oven": "1",
                }
                polls = query(prom.url, "ionpilot_instrument_polls_total{instrument='rf_drive'}")
                assert float(polls[0]["value"][1]) > 0
                uptime = query(prom.url, "ionpilot_process_uptime_seconds")
                assert {r["metric"]["process"] for r in uptime} == {"daemon", "drivers", "recorder"}
        finally:
            for server in servers:
                server.shutdown()
            recorder.stop()
            daemon.publisher.close()
            daemon.server.close()
