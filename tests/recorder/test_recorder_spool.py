"""The sink's spool without a server: lines as Influx line protocol, batches durable and sent
oldest first, one at a time, never twice; a full spool drops the oldest batch and says so. And
the lab file's `recorder:` and `metrics:` sections."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from labprocs import SIM_LAB  # type: ignore[import-not-found]

from ionpilot.bus.codec import Telemetry
from ionpilot.config import ConfigError, load_config
from ionpilot.recorder.settings import InfluxSink
from ionpilot.recorder.sink import LineSink, line_of


def test_line_protocol_escapes_tags_and_skips_what_it_cannot_carry() -> None:
    msg = Telemetry(1, 1_700_000_000_000_000_000, "drivers", 2.5, "V/s", "OK", "tlm.a b,c.x")
    assert line_of(msg) == [
        "ionpilot,topic=tlm.a\\ b\\,c.x,src=drivers,unit=V/s value=2.5 1700000000000000000"
    ]
    record = Telemetry(
        2, 5, "daemon", {"error_hz": 0.5, "state": "locked", "n": 3}, "", "OK", "s.u"
    )
    assert line_of(record) == ["ionpilot,topic=s.u,src=daemon error_hz=0.5,n=3.0 5"]
    assert line_of(Telemetry(3, 5, "d", float("nan"), "", "OK", "s.n")) == []
    assert line_of(Telemetry(4, 5, "d", "locked", "", "OK", "s.t")) == []


class Collector(BaseHTTPRequestHandler):
    bodies: ClassVar[list[bytes]] = []
    fail = False

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if Collector.fail:
            self.send_response(503)
        else:
            Collector.bodies.append(body)
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_batches_go_out_in_order_once_and_survive_a_restart(tmp_path: Path) -> None:
    server = HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/write"
        settings = InfluxSink(url=url, max_batch_lines=2)
        Collector.fail = True
        sink = LineSink(settings, tmp_path / "spool")
        sink.put([f"m value={k} {k}" for k in range(5)])  # 3 batches: 2, 2, 1 lines
        assert sink.pump() == 0 and sink.failures == 1 and sink.spooled() == 3
        again = LineSink(settings, tmp_path / "spool")  # a restarted recorder takes them up
        again.put(["m value=5 5"])
        Collector.fail = False
        assert again.pump() == 4 and again.spooled() == 0
        sent = b"".join(Collector.bodies).decode().splitlines()
        assert sent == [f"m value={k} {k}" for k in range(6)]
        assert again.pump() == 0 and len(Collector.bodies) == 4
    finally:
        server.shutdown()
        server.server_close()


def test_a_full_spool_drops_the_oldest_batch_and_counts_it(tmp_path: Path) -> None:
    settings = InfluxSink(url="http://127.0.0.1:9/write", max_batch_lines=10, max_spool_bytes=60)
    sink = LineSink(settings, tmp_path / "spool")
    for k in range(4):
        sink.put([f"m value={k} {k}", f"m value={k} {k + 1}"])  # 26-28 bytes a batch
    assert sink.spooled() == 2 and sink.dropped_lines == 4
    kept = sorted((tmp_path / "spool").glob("*.lp"))
    assert kept[0].read_text().startswith("m value=2 ")


def test_the_lab_file_sets_retention_sink_and_metrics(tmp_path: Path) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text(
        f"include: {SIM_LAB}\n"
        "recorder: {raw_retention: 7 d, sink: {url: 'http://127.0.0.1:8428/write'}}\n"
        "metrics: {ports: {daemon: 15620, recorder: 15622}}\n"
    )
    config = load_config(lab)
    assert config.recorder.raw_retention == 7 * 86400
    assert config.recorder.sink.url.endswith("/write")
    assert config.metrics.ports == {"daemon": 15620, "recorder": 15622}
    lab.write_text(f"include: {SIM_LAB}\nrecorder: {{raw_retention: 2000 d}}\n")
    with pytest.raises(ConfigError, match="raw_retention <= minute_retention"):
        load_config(lab)
