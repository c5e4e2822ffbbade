"""Every broken lab file is refused with exit 2, naming the key and the line, never a traceback."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ionpilot.cli import main
from ionpilot.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
BAD = sorted((ROOT / "tests" / "configs" / "bad").glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (?P<key>\S+(?: syntax error)?) line (?P<line>\d+)$")


def expectation(path: Path) -> tuple[str, int]:
    match = EXPECT.match(path.read_text().splitlines()[0])
    assert match, f"{path.name} lacks its '# expect: KEY line N' header"
    return match["key"], int(match["line"])


def test_there_are_enough_broken_configurations() -> None:
    assert len(BAD) >= 12


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_config_is_refused_with_key_and_line(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key, line = expectation(path)
    code = main(["config", "check", str(path)])
    out, err = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in out + err
    matching = [ln for ln in err.splitlines() if f"{path.name}:{line}:" in ln]
    assert matching, f"no error at {path.name}:{line} in:\n{err}"
    assert any(key in ln for ln in matching), f"no error naming {key!r} at line {line}:\n{err}"


def test_all_errors_are_reported_at_once(tmp_path: Path) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text(
        f"include: {ROOT / 'configs' / 'sim-lab.yaml'}\n"
        "bus: {publish_port: x}\n"
        "instruments:\n"
        "  rf_drive: {limits: {power: {max: 99 dBm}}}\n"
        "servo: {clock_lock: {comb: nowhere}}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(lab)
    keys = {issue.key for issue in info.value.issues}
    assert {
        "bus.publish_port",
        "instruments.rf_drive.limits.power.max",
        "servo.clock_lock.comb",
    } <= keys


def test_cli_subprocess_has_no_traceback_for_a_bad_file() -> None:
    path = ROOT / "tests" / "configs" / "bad" / "yaml_syntax.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "ionpilot.cli", "config", "check", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    assert "YAML syntax error" in result.stderr


def test_missing_file_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", "/nonexistent/lab.yaml"]) == 2
    assert "file not found" in capsys.readouterr().err
