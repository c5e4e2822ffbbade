"""Hardware ranges of every instrument model ionpilot drives: the one place both the config
validator and the drivers read, so a configured safety limit can narrow a range but never widen it.

Ranges are the instruments' datasheet figures, in SI units (dBm for RF power).
Pure data: importing this module must stay cheap (no QCoDeS, no PyVISA).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Transport = Literal["visa-socket", "serial-socket", "telnet", "xmlrpc", "tcp-json"]


@dataclass(frozen=True)
class HardwareRange:
    """The settable range of one parameter, as the instrument itself enforces it."""

    unit: str
    minimum: float
    maximum: float

    def contains(self, value: float) -> bool:
        return self.minimum <= value <= self.maximum


@dataclass(frozen=True)
class InstrumentModel:
    """One instrument model: how it is reached and what its settable parameters can do."""

    name: str
    description: str
    transport: Transport
    default_port: int
    parameters: dict[str, HardwareRange] = field(default_factory=dict)
    readable: tuple[str, ...] = ()
    channels: int = 0  # > 0: parameters apply per channel, addressed as chNN.<parameter>
    # the parameters a channel has, where not all of them (None: every one)
    channel_parameters: tuple[str, ...] | None = None

    def parameter_names(self) -> tuple[str, ...]:
        return tuple(self.parameters) + self.readable

    def channel_parameter_names(self) -> tuple[str, ...]:
        """What `chNN.<parameter>` may name."""
        if self.channel_parameters is None:
            return self.parameter_names()
        return self.channel_parameters


MODELS: dict[str, InstrumentModel] = {
    m.name: m
    for m in (
        InstrumentModel(
            name="rs_smb100a",
            description="Rohde & Schwarz SMB100A RF signal generator (trap RF drive)",
            transport="visa-socket",
            default_port=5025,
            parameters={
                "frequency": HardwareRange("Hz", 100e3, 6e9),
                "power": HardwareRange("dBm", -145.0, 30.0),
            },
            readable=("output",),
        ),
        InstrumentModel(
            name="qdac2",
            description="QDevil QDAC-II 24-channel DC source (trap electrodes)",
            transport="visa-socket",
            default_port=5025,
            parameters={
                "voltage": HardwareRange("V", -10.0, 10.0),
                "slew_rate": HardwareRange("V/s", 0.01, 2e7),
            },
            channels=24,
        ),
        InstrumentModel(
            name="hmc8043",
            description="Rohde & Schwarz HMC8043 bench supply (atomic oven)",
            transport="visa-socket",
            default_port=5025,
            parameters={
                "voltage": HardwareRange("V", 0.0, 32.0),
                "current": HardwareRange("A", 0.0, 3.0),
            },
            readable=("output", "measured_voltage", "measured_current"),
            channels=3,
        ),
        InstrumentModel(
            name="dlc_pro",
            description="Toptica DLC pro diode-laser controller (one laser head)",
            transport="telnet",
            default_port=1998,
            parameters={
                "current": HardwareRange("A", 0.0, 0.25),
                "piezo_voltage": HardwareRange("V", 0.0, 140.0),
            },
            readable=("emission",),
        ),
        InstrumentModel(
            name="bristol_871a",
            description="Bristol 871A wavemeter behind a multi-channel fibre switch",
            transport="telnet",
            default_port=23,
            parameters={"switch_channel": HardwareRange("", 1, 8)},
            readable=("frequency", "wavelength", "power"),
            channels=8,  # fibre-switch inputs: chN.frequency (switch, settle, read)
            channel_parameters=("frequency",),
        ),
        InstrumentModel(
            name="menlo_fc1500",
            description="Menlo Systems FC1500 optical frequency comb (XML-RPC)",
            transport="xmlrpc",
            default_port=8123,
            readable=("repetition_rate", "offset_frequency", "locked"),
        ),
        InstrumentModel(
            name="keysight_53230a",
            description="Keysight 53230A universal counter (comb beat notes)",
            transport="visa-socket",
            default_port=5025,
            parameters={"gate_time": HardwareRange("s", 1e-4, 1000.0)},
            readable=("frequency",),
        ),
        InstrumentModel(
            name="thorlabs_sc10",
            description="Thorlabs SC10 shutter controller (serial, 9600 baud)",
            transport="serial-socket",
            default_port=0,
            readable=("open",),
        ),
        InstrumentModel(
            name="ionpilot_pulser",
            description="ionpilot pulse controller (JSON over TCP; DDS channels and photon counting)",
            transport="tcp-json",
            default_port=0,
            parameters={
                "dds_frequency": HardwareRange("Hz", 1e6, 400e6),
                "dds_amplitude": HardwareRange("", 0.0, 1.0),
            },
            readable=("counts",),
        ),
    )
}
