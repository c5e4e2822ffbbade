"""Experiments on the live lab: a QCoDeS station of the bus's instruments, datasets in the lab's
data_dir, and scans that pause while the daemon recovers the lab (`experiments -> bus`, qcodes)."""

from __future__ import annotations

from ionpilot.experiments.scan import Pause, ScanResult, Suspender, scan
from ionpilot.experiments.station import (
    BusParameter,
    RemoteInstrument,
    default_lab_file,
    lab_file_sha256,
    qcodes_station,
)

__all__ = [
    "BusParameter",
    "Pause",
    "RemoteInstrument",
    "ScanResult",
    "Suspender",
    "default_lab_file",
    "lab_file_sha256",
    "qcodes_station",
    "scan",
]
