"""The wheel carries every subsystem as a subpackage of `ionpilot`, the YAML data, and the CLI."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ionpilot import __version__
from ionpilot.cli import main

ROOT = Path(__file__).resolve().parents[2]
SUBPACKAGES = ("bus", "drivers", "sim", "servo", "sequencer", "gui", "configs")


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"ionpilot {__version__}"


@pytest.mark.slow
def test_wheel_maps_folders_to_subpackages(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # `make run` bootstraps quietly: no data folder left out of `packages`, no deprecated keys
    noise = result.stdout + result.stderr
    assert "would be ignored" not in noise and "is deprecated" not in noise, noise[-2000:]
    (wheel,) = tmp_path.glob("ionpilot-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for sub in SUBPACKAGES:
        assert f"ionpilot/{sub}/__init__.py" in names, sub
    # every package folder of the source tree is in the wheel (a forgotten one breaks the CLI)
    for init in ROOT.glob("*/**/__init__.py"):
        rel = init.relative_to(ROOT)
        if rel.parts[0] in (*SUBPACKAGES, "ionpilot") and ".venv" not in rel.parts:
            top = "ionpilot" if rel.parts[0] == "ionpilot" else f"ionpilot/{rel.parts[0]}"
            inner = "/".join(rel.parts[1:])
            assert f"{top}/{inner}" in names, rel
    assert "ionpilot/configs/sim-lab.yaml" in names
    assert "ionpilot/cli.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "ionpilot = ionpilot.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
