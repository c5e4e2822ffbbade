"""Sequencer tests: make the shared lab helpers (labprocs.py of the foundation tests) importable."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "foundation"))
