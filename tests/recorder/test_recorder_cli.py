"""The commands' pieces: times as operators write them, MJD/UTC, the frequency-record CSV, the
Allan deviation of a known noise, and `ionpilot history` when no recorder answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from labprocs import lab_on_free_ports  # type: ignore[import-not-found]

from ionpilot.cli import build_parser
from ionpilot.commands.adev import allan, even_grid
from ionpilot.commands.history import write_csv
from ionpilot.recorder.client import mjd, parse_every, parse_when, utc_text

NS = 1_000_000_000
NOW = 1_796_000_000 * NS


def test_times_are_read_as_written_and_bad_ones_say_what_is_allowed() -> None:
    assert parse_when("now", NOW) == NOW
    assert parse_when("5min", NOW) == NOW - 300 * NS
    assert parse_when("1 d", NOW) == NOW - 86_400 * NS
    assert parse_when("2000-01-01T00:00Z", NOW) == 946_684_800 * NS
    assert parse_when("2000-01-01T01:00+01:00", NOW) == 946_684_800 * NS
    assert parse_when("2000-01-01 00:00", NOW) == 946_684_800 * NS  # no zone: UTC
    assert parse_every("1min") == 60.0
    with pytest.raises(ValueError, match="write a duration back from now"):
        parse_when("yesterday", NOW)
    with pytest.raises(ValueError, match="a duration such as"):
        parse_every("5 V")
    assert mjd(946_684_800 * NS) == 51544.0  # 2000-01-01T00:00Z
    assert utc_text(946_684_800 * NS + 1500) == "2000-01-01T00:00:00.000001Z"


def test_the_frequency_record_csv_has_mjd_utc_offset_and_lock_state(
    capsys: pytest.CaptureFixture[str],
) -> None:
    nu0 = 688_358_979_309_308.0
    result: dict[str, Any] = {
        "series": "servo.clock.output_frequency",
        "unit": "Hz",
        "t_ns": [946_684_800 * NS, 946_684_810 * NS],
        "value": [nu0 + 0.6883589793093080, None],
        "lock_state": ["locked", "holdover"],
    }
    write_csv(result, nu0)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "mjd,utc,frequency_hz,fractional_offset,lock_state"
    mjd0, utc0, f0, offset0, state0 = lines[1].split(",")
    assert (mjd0, utc0, state0) == ("51544.000000000", "2000-01-01T00:00:00.000000Z", "locked")
    assert float(f0) == pytest.approx(nu0 + 0.688, abs=0.13)
    assert float(offset0) == pytest.approx(1.0e-15, rel=0.2)
    assert lines[2].split(",")[2:] == ["", "", "holdover"]


def test_allan_deviation_of_white_frequency_noise_falls_as_one_over_root_tau() -> None:
    rng = np.random.default_rng(1)
    t = np.arange(4096, dtype=np.int64) * NS + NOW
    f = 1e9 * (1 + 1e-12 * rng.standard_normal(4096))
    means, tau0, empty = even_grid(t, f, None)
    assert (tau0, empty, len(means)) == (1.0, 0, 4096)
    rows = allan((means - means.mean()) / 1e9, tau0)
    first = rows[0]
    assert first["tau_s"] == 1.0 and first["adev"] == pytest.approx(1e-12, rel=0.05)
    assert first["ci_low"] < first["adev"] < first["ci_high"]
    tau64 = next(r for r in rows if r["tau_s"] == 64.0)
    assert tau64["adev"] == pytest.approx(1e-12 / 8, rel=0.3)
    width = (tau64["ci_high"] - tau64["ci_low"]) / tau64["adev"]
    assert width > (first["ci_high"] - first["ci_low"]) / first["adev"]  # fewer averages


def test_history_without_a_recorder_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = lab_on_free_ports(tmp_path, "norecorder")
    args = build_parser().parse_args(["history", "servo.clock.error", "--config", str(lab)])
    assert args.handler(args) == 1
    err = capsys.readouterr().err
    assert "the recorder does not answer" in err and "Traceback" not in err
