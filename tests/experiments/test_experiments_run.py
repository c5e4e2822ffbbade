"""`ionpilot run SCRIPT.py`: every script in examples/ runs against the simulated lab (CI's
check that the examples work), with the progress line for its scans; a missing script or a bad
lab file is one line of error, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from uplab import UpLab

from ionpilot.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# each example with arguments that keep CI short (a new example must be added here)
CI_ARGS: dict[str, list[str]] = {
    "dond_micromotion.py": ["--points", "5"],
    "rabi.py": ["--points", "7", "--shots", "15", "--stop", "0.03"],
}


def test_every_example_runs_against_the_simulated_lab(
    up_lab: UpLab, capsys: pytest.CaptureFixture[str]
) -> None:
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert scripts == sorted(CI_ARGS), "every example needs its CI arguments here"
    for name in scripts:
        code = main(["run", str(EXAMPLES / name), "--config", str(up_lab.lab_file), *CI_ARGS[name]])
        out = capsys.readouterr()
        assert code == 0, f"{name}:\n{out.out}\n{out.err}"
        assert "run id" in out.out or "(run " in out.out, out.out
        if name == "rabi.py":  # a scan of ionpilot's: its progress line
            assert "point 7/7" in out.err and "pt/s" in out.err, out.err
        else:  # a QCoDeS dond: QCoDeS's own progress bar (points, rate, time left)
            assert "5/5" in out.err and "it/s" in out.err, out.err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["no_such_script.py"], "no_such_script.py: no such script"),
        (["README.md"], "not a Python script"),
        ([str(EXAMPLES / "rabi.py"), "--config", "no/such/lab.yaml"], "no/such/lab.yaml"),
    ],
)
def test_a_script_that_cannot_run_is_said_in_one_line(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
