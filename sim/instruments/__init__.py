"""Simulated instruments: protocol adapters over the World, one module per real model."""

from __future__ import annotations

from .base import Protocol
from .bristol_871a import Bristol871a
from .dlc_pro import DlcPro
from .hmc8043 import Hmc8043
from .ionpilot_pulser import Pulser
from .keysight_53230a import Keysight53230a
from .menlo_fc1500 import MenloComb
from .qdac2 import Qdac2
from .rs_smb100a import Smb100a
from .scpi import ScpiProtocol
from .thorlabs_sc10 import Sc10

__all__ = [
    "Bristol871a",
    "DlcPro",
    "Hmc8043",
    "Keysight53230a",
    "MenloComb",
    "Protocol",
    "Pulser",
    "Qdac2",
    "Sc10",
    "ScpiProtocol",
    "Smb100a",
]
