"""The line-protocol sink against a real VictoriaMetrics: the server stopped for 30 s of the
lab's (virtual) time, the recorder itself restarted meanwhile, the server back: every point
reaches it exactly once, in order, with its own timestamp and value."""

from __future__ import annotations

import json
import time
import urllib.parse
from pathlib import Path

from labprocs import hub_on_free_ports, wait_for  # type: ignore[import-not-found]
from servers import get, victoria_metrics  # type: ignore[import-not-found]

from ionpilot.bus.pubsub import Publisher
from ionpilot.bus.settings import BusSettings
from ionpilot.recorder.service import Recorder
from ionpilot.recorder.settings import InfluxSink, RecorderSettings
from ionpilot.recorder.sink import LineSink

NS = 1_000_000_000
TOPIC = "tlm.sinktest.value"


def sink_of(recorder: Recorder) -> LineSink:
    assert recorder.sink is not None
    return recorder.sink


def exported(url: str) -> list[tuple[int, float]]:
    """(timestamp ms, value) of every stored sample of TOPIC, as the server has them."""
    get(url + "/internal/force_flush")
    query = urllib.parse.urlencode({"match[]": f'ionpilot_value{{topic="{TOPIC}"}}'})
    body = get(f"{url}/api/v1/export?{query}").decode()
    samples: list[tuple[int, float]] = []
    for line in body.splitlines():
        doc = json.loads(line)
        samples += list(zip(doc["timestamps"], doc["values"], strict=True))
    return sorted(samples)


def test_server_away_for_30_s_every_point_arrives_exactly_once(tmp_path: Path) -> None:
    vm = victoria_metrics(tmp_path)
    settings = RecorderSettings(
        flush_interval=0.05,
        sink=InfluxSink(
            url=f"{vm.url}/write",
            flush_interval=0.05,
            retry_initial=0.05,
            retry_max=0.2,
            timeout=2.0,
        ),
    )
    t0 = (time.time_ns() // NS - 120) * NS  # the lab's timeline: 10 readings a second
    sent: list[tuple[int, float]] = []

    def publish(pub: Publisher, count: int) -> None:
        for _ in range(count):
            k = len(sent)
            t, value = t0 + k * NS // 10, 1000.0 + k * 0.5
            pub.publish(TOPIC, value, "V", t=t)
            sent.append((t // 1_000_000, value))

    def heard(recorder: Recorder, pub: Publisher) -> None:
        def stored() -> bool:
            pub.publish("tlm.sinktest.probe", 1.0)
            time.sleep(0.02)
            return recorder.store.messages > 0

        wait_for(stored, 10.0)

    with vm, hub_on_free_ports(BusSettings()) as (_hub, bus):
        vm.start()
        pub = Publisher(bus, "sinktest")
        recorder = Recorder(bus, settings, tmp_path).start()
        try:
            heard(recorder, pub)
            publish(pub, 100)
            wait_for(lambda: len(exported(vm.url)) == 100, 15.0)

            vm.stop()  # the server goes away for the next 30 s of readings
            publish(pub, 150)
            wait_for(
                lambda: recorder.store.rows_written >= 250 and sink_of(recorder).failures > 0, 10.0
            )
            recorder.stop()  # and the recorder restarts meanwhile: the spool is on disk
            assert recorder.sink is not None and sink_of(recorder).spooled() > 0
            recorder = Recorder(bus, settings, tmp_path).start()
            heard(recorder, pub)
            publish(pub, 150)
            wait_for(
                lambda: sink_of(recorder).spooled() > 0 and recorder.store.messages >= 150, 10.0
            )
            assert (sent[-1][0] - sent[100][0]) / 1000 >= 29.9  # 30 s of the lab's time away

            vm.start()  # back: the spool is replayed in order
            wait_for(lambda: sink_of(recorder).spooled() == 0, 20.0)

            def complete() -> list[tuple[int, float]] | None:
                samples = exported(vm.url)
                return samples if len(samples) >= len(sent) else None

            got = wait_for(complete, 15.0)
        finally:
            recorder.stop()
            pub.close()
    assert got == sent  # every point once, with its own time and value
