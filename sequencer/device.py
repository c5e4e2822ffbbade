"""The device describes itself so any compiler can target it: a document that loads in Amazon
Braket's own models (`amazon-braket-schemas`), with the QDMI property names of the same figures
beside them.

Braket has no generic gate-model QPU capabilities model with a schema header of its own; the one
for a trapped-ion processor whose provider section carries values with uncertainties and a time
stamp is AQT's (`braket.device_schema.aqt.aqt_device_capabilities`, native gates R, RZ, RXX as
ours), so the document is written to that schema: `BraketSchemaBase.parse_raw_schema` loads it
(service, OpenQASM action, paradigm, provider, standardized properties v3). The pulse section
(ports, frames, OpenPulse functions) has its own header and loads as
`PulseDeviceActionProperties`. Sections and keys the schemas do not have are ours, named in
`EXTENSIONS`: the device status, every figure's origin (`calibrations`), the species, durations
and error model (`ionpilot`), and `qdmi`.

Figures come from the lab's calibration record where an experiment measured them (value,
uncertainty, time stamp, source), else from the lab file, and each says which (`calibrations`);
a calibration older than its validity sets QDMI `NEEDSCALIBRATION` and the status `calibration`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ionpilot.sequencer.calibrations import Calibration
from ionpilot.sequencer.device_status import DeviceStatus, not_asked
from ionpilot.sequencer.gates import STD_GATES
from ionpilot.sequencer.qasm_program import EXTERNS
from ionpilot.sequencer.schedule import addressed_channels, ms_sideband_hz
from ionpilot.sequencer.settings import DeviceSettings

CAPABILITIES_HEADER = {"name": "braket.device_schema.aqt.aqt_device_capabilities", "version": "1"}
OPENQASM = "braket.ir.openqasm.program"
# keys of ours that the Braket models do not have (a Braket reader ignores them), per section
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "": ("pulse", "status", "calibrations", "ionpilot", "qdmi"),
    f"action.{OPENQASM}": (
        "supportsMidCircuitMeasurement",
        "supportsFeedForward",
        "feedbackLatency",
        "supportedExterns",
    ),
}


def _header(name: str, version: str = "1") -> dict[str, str]:
    return {"name": f"braket.device_schema.{name}", "version": version}


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


@dataclass(frozen=True)
class Figure:
    """One figure of the device: value ± uncertainty, measured (with its calibration) or as
    configured in the lab file."""

    value: float
    uncertainty: float
    calibration: Calibration | None = None
    due: bool = False  # measured, but older than its validity

    def origin(self, configured_as: str) -> dict[str, Any]:
        cal = self.calibration
        if cal is None:
            return {
                "origin": "configured",
                "value": self.value,
                "uncertainty": self.uncertainty,
                "note": f"as configured in the lab file ({configured_as}), not measured",
            }
        return {
            "origin": "measured",
            "value": cal.value,
            "uncertainty": cal.uncertainty,
            "unit": cal.unit,
            "measuredAt": _utc(cal.measured_s),
            "measured_s": cal.measured_s,
            "source": cal.source,
            "validity_s": cal.validity_s,
            "needsCalibration": self.due,
        }


class Figures:
    """The device's figures with the calibration record laid over the lab file's values."""

    def __init__(
        self, device: DeviceSettings, calibrations: Mapping[str, Calibration], now_s: float
    ) -> None:
        self.device = device
        self.now_s = now_s
        self.calibrations = dict(calibrations)
        self.ignored: dict[str, str] = {}
        d = device
        self.r_fidelity = self._take("r_gate_fidelity", d.r_gate.fidelity, d.r_gate.fidelity_error)
        self.ms_fidelity = self._take("ms_fidelity", d.ms_gate.fidelity, d.ms_gate.fidelity_error)
        self.readout = self._take("readout_fidelity", d.spam_fidelity, d.spam_fidelity_error)
        self.t2 = self._take("t2_star", d.t2, d.t2_error)
        self.t1 = Figure(d.t1, d.t1_error)

    def _take(self, quantity: str, value: float, uncertainty: float) -> Figure:
        cal = self.calibrations.get(quantity)
        if cal is None:
            return Figure(value, uncertainty)
        fraction = quantity.endswith("_fidelity")
        possible = (0 <= cal.value <= 1 and cal.uncertainty <= 1) if fraction else cal.value > 0
        if not (math.isfinite(cal.value) and math.isfinite(cal.uncertainty)) or not possible:
            self.ignored[quantity] = (
                f"recorded {cal.value} +- {cal.uncertainty} is not a possible value; the "
                "configured figure is reported"
            )
            return Figure(value, uncertainty)
        return Figure(cal.value, cal.uncertainty, cal, cal.stale(self.now_s))

    def due(self) -> list[str]:
        """Recorded quantities older than their validity."""
        return sorted(q for q, c in self.calibrations.items() if c.stale(self.now_s))

    def updated_s(self) -> float | None:
        """When the newest calibration was measured (None: nothing was measured)."""
        return max((c.measured_s for c in self.calibrations.values()), default=None)

    def origins(self) -> dict[str, Any]:
        d = self.device
        out: dict[str, Any] = {
            "rGateFidelity": self.r_fidelity.origin("device.r_gate.fidelity"),
            "msGateFidelity": self.ms_fidelity.origin("device.ms_gate.fidelity"),
            "readoutFidelity": self.readout.origin("device.spam_fidelity"),
            "T2": self.t2.origin("device.t2"),
            "T1": self.t1.origin("device.t1"),
        }
        if self.t2.calibration is not None:
            out["T2"]["note"] = "T2* from Ramsey (no echo), as AQT's provider properties define T2"
        shown = {"r_gate_fidelity", "ms_fidelity", "readout_fidelity", "t2_star"}
        out["recorded"] = {
            q: Figure(c.value, c.uncertainty, c, c.stale(self.now_s)).origin(q)
            for q, c in sorted(self.calibrations.items())
            if q not in shown
        }
        out["ignored"] = dict(self.ignored)
        out["needsCalibration"] = self.due()
        out["gateDurations"] = f"as configured in the lab file (r {d.r_gate.duration:g} s, ms " + (
            f"{d.ms_gate.duration:g} s); a measured pi_time or ms_detuning is reported in "
            "`recorded`, the compiler keeps the configured pulses"
        )
        return out


def describe_device(
    device: DeviceSettings,
    *,
    calibrations: Mapping[str, Calibration] | None = None,
    now_s: float | None = None,
    status: DeviceStatus | None = None,
) -> dict[str, Any]:
    """Braket-loadable capabilities of `device` with `calibrations` (the lab's record) laid over
    the configured figures, the device `status`, and `qdmi` (QDMI property names). `now_s`
    (Unix time) decides which calibrations are due."""
    now = datetime.now(UTC).timestamp() if now_s is None else now_s
    figures = Figures(device, calibrations or {}, now)
    due = figures.due()
    if status is None:
        status = not_asked("no lab was asked (the device as configured, not a running lab)")
    n = device.ions
    updated = figures.updated_s()
    durations = {
        "r": device.r_gate.duration,
        "rz": 0.0,
        "ms": device.ms_gate.duration,
        "rxx": device.ms_gate.duration,
        "measure": device.detection_duration,
        "reset": device.pumping_duration,
    }
    capabilities: dict[str, Any] = {
        "braketSchemaHeader": dict(CAPABILITIES_HEADER),
        "service": _service(device, updated),
        "action": {OPENQASM: _openqasm(device)},
        "deviceParameters": _parameters_schema(device),
        "paradigm": {
            "braketSchemaHeader": _header("gate_model_qpu_paradigm_properties"),
            "qubitCount": n,
            "nativeGateSet": list(device.native_gates),
            "connectivity": {
                "fullyConnected": device.connectivity == "all_to_all",
                "connectivityGraph": {},
            },
        },
        "provider": _provider(device, figures, updated if updated is not None else now),
        "standardized": _standardized(device, figures, updated),
        "pulse": _pulse(device),
        "status": {**status.to_json(), "needsCalibration": due},
        "calibrations": figures.origins(),
        "ionpilot": {
            "species": device.species,
            "gateDurations": durations,
            "errorModel": {
                "overRotation": device.error_model.over_rotation,
                "detuningHz": device.error_model.detuning,
                "dephasingTime": device.error_model.dephasing_time,
                "prepError": device.error_model.prep_error,
                "readoutErrorDark": device.error_model.readout_error_dark,
                "readoutErrorBright": device.error_model.readout_error_bright,
            },
        },
    }
    capabilities["qdmi"] = _qdmi(device, durations, figures, status, due)
    return capabilities


def _service(device: DeviceSettings, updated: float | None) -> dict[str, Any]:
    return {
        "braketSchemaHeader": _header("device_service_properties"),
        "executionWindows": [
            {"executionDay": "Everyday", "windowStartHour": "00:00", "windowEndHour": "23:59:59"}
        ],
        "shotsRange": [1, 100000],
        "deviceCost": None,
        "deviceDocumentation": {
            "imageUrl": None,
            "summary": f"{device.ions}-ion {device.species} processor ({device.name})",
            "externalDocumentationUrl": None,
        },
        "deviceLocation": None,
        "updatedAt": None if updated is None else _utc(updated),
        "getTaskPollIntervalMillis": None,
    }


def _openqasm(device: DeviceSettings) -> dict[str, Any]:
    return {
        "version": ["3.0", "2.0"],
        "actionType": OPENQASM,
        "supportedOperations": [*sorted(STD_GATES), "U", "gphase"],
        "supportedModifiers": [
            {"name": "inv"},
            # a non-integer power only of a single-qubit gate (qasm.py)
            {"name": "pow", "exponent_types": ["int", "float"]},
            {"name": "ctrl", "max_qubits": 2},
        ],
        "supportedPragmas": [],
        "forbiddenPragmas": [],
        "supportPhysicalQubits": True,
        "supportedResultTypes": [{"name": "Probability", "minShots": 1, "maxShots": 100000}],
        "supportsMidCircuitMeasurement": True,
        "supportsFeedForward": True,
        "feedbackLatency": device.feedback_latency,
        "supportedExterns": {name: text for name, (text, _) in EXTERNS.items()},
    }


def _parameters_schema(device: DeviceSettings) -> dict[str, Any]:
    """The JSON schema of what a job may set (Braket's `deviceParameters`): the shots."""
    return {
        "title": "IonpilotDeviceParameters",
        "type": "object",
        "properties": {
            "shots": {"type": "integer", "minimum": 1, "maximum": 100000},
            "qubitCount": {"type": "integer", "minimum": 1, "maximum": device.ions},
        },
    }


def _percent(figure: Figure) -> dict[str, float]:
    return {"value": 100.0 * figure.value, "uncertainty": 100.0 * figure.uncertainty}


def _provider(device: DeviceSettings, f: Figures, updated: float) -> dict[str, Any]:
    """AQT's characterisation: fidelities in percent and times with their uncertainties."""
    return {
        "braketSchemaHeader": _header("aqt.aqt_provider_properties"),
        "properties": {
            "single_qubit_gate_fidelity": {
                str(q): _percent(f.r_fidelity) for q in range(device.ions)
            },
            "mean_two_qubit_gate_fidelity": _percent(f.ms_fidelity),
            "spam_fidelity_lower_bound": 100.0 * f.readout.value,
            "t2_coherence_time_s": {"value": f.t2.value, "uncertainty": f.t2.uncertainty},
            "t1_s": {"value": f.t1.value, "uncertainty": f.t1.uncertainty},
            "readout_time_micros": device.detection_duration * 1e6,
            "single_qubit_gate_duration_micros": device.r_gate.duration * 1e6,
            "two_qubit_gate_duration_micros": device.ms_gate.duration * 1e6,
            "updated_at": _utc(updated),
        },
    }


def _fidelity(figure: Figure) -> dict[str, Any]:
    """A v3 fidelity. Its type is left out: v3 names only randomized benchmarking, and neither
    a lab-file figure nor a parity-oscillation fit is one; `calibrations` says where each came
    from."""
    return {
        "fidelityType": None,
        "fidelity": figure.value,
        "standardError": figure.uncertainty,
        "unit": "fraction",
    }


def _standardized(device: DeviceSettings, f: Figures, updated: float | None) -> dict[str, Any]:
    """Braket's standardized gate-model properties, version 3 (the one AQT's model carries)."""
    r = _fidelity(f.r_fidelity)
    return {
        "braketSchemaHeader": _header("standardized_gate_model_qpu_device_properties", "3"),
        "oneQubitProperties": {str(q): {"oneQubitFidelity": [r]} for q in range(device.ions)},
        "T1": {"value": f.t1.value, "standardError": f.t1.uncertainty, "unit": "s"},
        "T2": {"value": f.t2.value, "standardError": f.t2.uncertainty, "unit": "s"},
        "readoutFidelity": [_fidelity(f.readout)],
        "readoutDuration": {"value": device.detection_duration, "standardError": None, "unit": "s"},
        "singleQubitGateDuration": {
            "value": device.r_gate.duration,
            "standardError": None,
            "unit": "s",
        },
        "singleQubitFidelity": [r],
        "twoQubitGateFidelity": [_fidelity(f.ms_fidelity)],
        "twoQubitGateDuration": {
            "value": device.ms_gate.duration,
            "standardError": None,
            "unit": "s",
        },
        "activeResetDuration": {
            "value": device.pumping_duration,
            "standardError": None,
            "unit": "s",
        },
        "updatedAt": None if updated is None else _utc(updated),
    }


def _function(name: str, *arguments: tuple[str, str], returns: str | None = None) -> dict[str, Any]:
    return {
        "functionName": name,
        "arguments": [
            {"name": a, "type": t, "optional": False, "description": None} for a, t in arguments
        ],
        "returnType": returns,
    }


def _pulse(device: DeviceSettings) -> dict[str, Any]:
    n = device.ions
    ports: dict[str, Any] = {}
    frames: dict[str, Any] = {}
    for name, ch in device.channels.items():
        qubits = (
            [ch.ion]
            if ch.kind == "beam_addressed" and ch.ion is not None
            else list(range(n))
            if ch.kind == "beam_global"
            else []
        )
        ports[name] = {
            "portId": name,
            "direction": "rx" if ch.kind == "detection" else "tx",
            "portType": ch.kind,
            "dt": device.time_unit * device.grid_mu,
            "qubitMappings": qubits,
            "centerFrequencies": [ch.aom_center_frequency] if ch.aom_bandwidth else [],
            "qhpSpecificProperties": {
                "aomBandwidth": ch.aom_bandwidth,
                "maxAmplitude": ch.max_amplitude,
                "minDuration": ch.min_duration,
                "rabiFrequency": ch.rabi_frequency if ch.kind.startswith("beam") else None,
            },
        }
    for ion, ch_name in sorted(addressed_channels(device).items()):
        ch = device.channels[ch_name]
        frames[f"q{ion}"] = {
            "frameId": f"q{ion}",
            "portId": ch_name,
            "frequency": ch.aom_center_frequency,
            "centerFrequency": ch.aom_center_frequency,
            "phase": 0.0,
            "associatedGate": None,  # Braket names one gate; this frame drives three
            "qubitMappings": [ion],
            "qhpSpecificProperties": {
                "associatedGates": ["r", "ms", "rz"],
                "msSidebandOffset": ms_sideband_hz(device),
            },
        }
    if device.detection_channel in device.channels:
        frames["detect"] = {
            "frameId": "detect",
            "portId": device.detection_channel,
            "frequency": 0.0,
            "centerFrequency": None,
            "phase": 0.0,
            "associatedGate": "measure",
            "qubitMappings": list(range(n)),
            "qhpSpecificProperties": None,
        }
    clock = device.channels.get(device.clock_channel)
    if clock is not None:
        frames["clock"] = {
            "frameId": "clock",
            "portId": device.clock_channel,
            "frequency": clock.aom_center_frequency,
            "centerFrequency": clock.aom_center_frequency,
            "phase": 0.0,
            "associatedGate": None,
            "qubitMappings": [0],
            "qhpSpecificProperties": None,
        }
    return {
        "braketSchemaHeader": _header("pulse.pulse_device_action_properties"),
        "supportedQhpTemplateWaveforms": {
            "constant": _function(
                "constant", ("duration", "duration"), ("amplitude", "float"), returns="waveform"
            ),
        },
        "ports": ports,
        "supportedFunctions": {
            "newframe": _function(
                "newframe",
                ("port", "port"),
                ("frequency", "float"),
                ("phase", "angle"),
                returns="frame",
            ),
            "play": _function("play", ("frame", "frame"), ("waveform", "waveform")),
            "shift_phase": _function("shift_phase", ("frame", "frame"), ("phase", "angle")),
            "set_phase": _function("set_phase", ("frame", "frame"), ("phase", "angle")),
            "shift_frequency": _function(
                "shift_frequency", ("frame", "frame"), ("frequency", "float")
            ),
            "set_frequency": _function("set_frequency", ("frame", "frame"), ("frequency", "float")),
            # only as the body of `defcal measure $i -> bit { return capture(frame, t); }`
            "capture": _function(
                "capture", ("frame", "frame"), ("duration", "duration"), returns="bit"
            ),
        },
        "frames": frames,
        "supportsLocalPulseElements": False,
        "supportsDynamicFrames": True,
        "supportsNonNativeGatesWithPulses": True,
        "validationParameters": {
            "MAX_SCALE": 1.0,
            "MAX_AMPLITUDE": max((c.max_amplitude for c in device.channels.values()), default=1.0),
            "MIN_PULSE_LENGTH": device.grid_mu * device.time_unit,
            "MAX_PULSE_LENGTH": device.max_schedule_duration,
            "TIME_UNIT": device.time_unit,
            "GRID_MU": device.grid_mu,
            "MAX_EVENT_RATE": device.max_event_rate,
        },
        "nativeGateCalibrationsRef": None,
    }


def _qdmi(
    device: DeviceSettings,
    durations: dict[str, float],
    f: Figures,
    status: DeviceStatus,
    due: list[str],
) -> dict[str, Any]:
    """QDMI's property names; the lower-case keys beside a figure are ours (QDMI has no
    uncertainty or time stamp): its uncertainty, origin and measurement time."""
    n = device.ions
    perfect = Figure(1.0, 0.0)
    ops: dict[str, tuple[int, int, Figure]] = {
        "r": (1, 2, f.r_fidelity),
        "rz": (1, 1, perfect),  # a frame change: no pulse, no error
        "ms": (2, 3, f.ms_fidelity),
        "rxx": (2, 1, f.ms_fidelity),
        "measure": (1, 0, f.readout),
    }

    def provenance(figure: Figure) -> dict[str, Any]:
        cal = figure.calibration
        return {
            "uncertainty": figure.uncertainty,
            "origin": "configured" if cal is None else "measured",
            "measuredAt": None if cal is None else _utc(cal.measured_s),
        }

    return {
        "device": {
            "QDMI_DEVICE_PROPERTY_NAME": device.name,
            "QDMI_DEVICE_PROPERTY_VERSION": "1",
            "QDMI_DEVICE_PROPERTY_STATUS": status.qdmi(),
            "QDMI_DEVICE_PROPERTY_QUBITSNUM": n,
            "QDMI_DEVICE_PROPERTY_SITES": list(range(n)),
            "QDMI_DEVICE_PROPERTY_OPERATIONS": list(ops),
            "QDMI_DEVICE_PROPERTY_COUPLINGMAP": [
                [a, b] for a in range(n) for b in range(n) if a != b
            ],
            "QDMI_DEVICE_PROPERTY_NEEDSCALIBRATION": 1 if due else 0,
            "QDMI_DEVICE_PROPERTY_DURATIONUNIT": "s",
            "QDMI_DEVICE_PROPERTY_DURATIONSCALEFACTOR": 1.0,
            "status_reason": status.reason,
            "needs_calibration": due,
        },
        "sites": {
            str(q): {
                "QDMI_SITE_PROPERTY_INDEX": q,
                "QDMI_SITE_PROPERTY_T1": f.t1.value,
                "QDMI_SITE_PROPERTY_T2": f.t2.value,
                "t1": provenance(f.t1),
                "t2": provenance(f.t2),
            }
            for q in range(n)
        },
        "operations": {
            name: {
                "QDMI_OPERATION_PROPERTY_NAME": name,
                "QDMI_OPERATION_PROPERTY_QUBITSNUM": qubits,
                "QDMI_OPERATION_PROPERTY_PARAMETERSNUM": params,
                "QDMI_OPERATION_PROPERTY_DURATION": durations[name],
                "QDMI_OPERATION_PROPERTY_FIDELITY": figure.value,
                "fidelity": provenance(figure),
            }
            for name, (qubits, params, figure) in ops.items()
        },
    }


def device_snapshot(device: DeviceSettings) -> dict[str, Any]:
    """A compact record of the device as used for one run (goes into every result)."""
    return {
        "name": device.name,
        "species": device.species,
        "qubit_count": device.ions,
        "native_gates": list(device.native_gates),
        "r_gate": {"duration_s": device.r_gate.duration, "fidelity": device.r_gate.fidelity},
        "ms_gate": {"duration_s": device.ms_gate.duration, "fidelity": device.ms_gate.fidelity},
        "t2_s": device.t2,
        "spam_fidelity": device.spam_fidelity,
        "time_unit_s": device.time_unit,
        "grid_mu": device.grid_mu,
        "error_model": {
            "over_rotation": device.error_model.over_rotation,
            "detuning_hz": device.error_model.detuning,
            "dephasing_time_s": device.error_model.dephasing_time,
            "prep_error": device.error_model.prep_error,
            "readout_error_dark": device.error_model.readout_error_dark,
            "readout_error_bright": device.error_model.readout_error_bright,
        },
    }


def with_ions(device: DeviceSettings, ions: int) -> DeviceSettings:
    """The same device with `ions` ions, adding addressed beams (copies of ion 0's) as needed."""
    from dataclasses import replace

    from ionpilot.sequencer.schedule import addressed_channels as _addr

    addr = _addr(device)
    template = device.channels[addr[0]] if 0 in addr else None
    channels = dict(device.channels)
    for ion in range(ions):
        if ion not in addr and template is not None:
            channels[f"raman_addr_{ion}"] = replace(template, ion=ion)
    return replace(device, ions=ions, channels=channels)
