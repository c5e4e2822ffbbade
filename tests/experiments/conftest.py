"""Experiment tests: one lab under `ionpilot up` for every test of the folder (see uplab.py)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "foundation"))
sys.path.insert(0, str(HERE))

from uplab import up_lab  # noqa: E402

__all__ = ["up_lab"]
