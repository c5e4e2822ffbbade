"""The simulated Menlo comb driven by `brush` (a public client of Menlo's XML-RPC data server)
and by the bare `data.query(-n, keys)` form of Menlo's own example scripts."""

from __future__ import annotations

import itertools
import xmlrpc.client
from collections.abc import Iterator
from typing import Any

import brush.comb  # type: ignore[import-untyped]
import pytest

from ionpilot.sim.lab import Lab
from ionpilot.sim.settings import SimSettings


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab(
        {"comb": ("menlo_fc1500", "http://127.0.0.1:1/RPC2")}, SimSettings(seed=9), free_ports=True
    ) as running:
        running.world.advance(30.0)
        yield running


def _port(lab: Lab) -> int:
    return int(lab.resources()["comb"].split(":")[2].split("/")[0])


def test_brush_identifies_and_lists_keys(lab: Lab) -> None:
    comb = brush.comb.FrequencyComb("127.0.0.1", _port(lab))
    assert "Menlo" in comb.get_version()
    keys = comb.keys()
    assert {"reprate.freq", "offset.freq", "system.locked", "counter0.freq"} <= set(keys)
    assert comb.metadata["system.locked"]["type"] == "bool"
    assert comb.metadata["reprate.freq"]["type"] == "double"


def test_brush_reads_the_newest_record(lab: Lab) -> None:
    comb = brush.comb.FrequencyComb("127.0.0.1", _port(lab))
    data = comb.get_data()
    assert data["timestamp"] == lab.world.epoch_unix + 30.0
    assert data["system.locked"] is True
    assert data["reprate.freq"] == pytest.approx(lab.world.comb_repetition_rate)
    assert data["offset.freq"] == lab.world.settings.comb.offset_frequency
    assert 0 < data["counter0.freq"] < data["reprate.freq"] / 2
    assert comb["system.locked"] is True


def test_brush_reads_history_and_sees_an_unlock(lab: Lab) -> None:
    comb = brush.comb.FrequencyComb("127.0.0.1", _port(lab))
    lab.world.inject("comb_unlock")  # at world second 30: records 30 ... 49 are unlocked
    lab.world.advance(5.0)
    since = comb.get_data_since(10, ["system.locked", "reprate.freq"])
    stamps = since["timestamp"]
    assert len(stamps) == 10 and stamps == sorted(stamps)
    assert all(b - a == 1.0 for a, b in itertools.pairwise(stamps))
    assert since["system.locked"][:4] == [True] * 4 and not any(since["system.locked"][4:])
    lab.world.advance(lab.world.settings.comb.relock_time)
    again = comb.get_data_since(30, ["system.locked"])  # history is kept as it was
    assert again["system.locked"][-1] is True
    assert again["system.locked"].count(False) == int(lab.world.settings.comb.relock_time)


def test_query_forms_and_faults(lab: Lab) -> None:
    proxy: Any = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{_port(lab)}")  # no /RPC2 path
    last = proxy.data.last_timestamp()
    recent = proxy.data.query(-3.0, ["offset.freq"])
    assert sorted(float(t) for t in recent) == [last - 2, last - 1, last]
    assert proxy.data.query(last, ["offset.freq"]) == {}  # nothing after the newest
    everything = proxy.data.query(last - 0.5, [])
    assert set(everything[repr(last)]) == set(proxy.data.getInfo())
    with pytest.raises(xmlrpc.client.Fault, match="unknown key"):
        proxy.data.query(last - 5, ["reprate.freq", "no.such.key"])
    with pytest.raises(xmlrpc.client.Fault):
        proxy.data.query("yesterday", [])
    with pytest.raises(xmlrpc.client.Fault):
        proxy.no.such.method()
