"""Recorder tests: the store and history on virtual time; the recorder on a hub in-process;
real servers (VictoriaMetrics, Prometheus) on loopback, skipped where their binary is missing."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "foundation"))
