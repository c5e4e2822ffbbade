"""The device describes itself so any compiler can target it: JSON shaped like Amazon Braket's
device capabilities (service/action/paradigm/standardized/pulse sections) with the QDMI property
names of the same figures in a second section."""

from __future__ import annotations

from typing import Any

from ionpilot.sequencer.gates import STD_GATES
from ionpilot.sequencer.qasm_program import EXTERNS
from ionpilot.sequencer.schedule import addressed_channels, ms_sideband_hz
from ionpilot.sequencer.settings import DeviceSettings

_RB = {"name": "RANDOMIZED_BENCHMARKING", "description": None}


def _header(name: str) -> dict[str, str]:
    return {"name": f"braket.device_schema.{name}", "version": "1"}


def describe_device(device: DeviceSettings) -> dict[str, Any]:
    """Braket-shaped capabilities of `device`, plus `qdmi` (QDMI property names)."""
    n = device.ions
    one_q = {
        str(q): {
            "T1": {"value": device.t1, "standardError": device.t1_error, "unit": "S"},
            "T2": {"value": device.t2, "standardError": device.t2_error, "unit": "S"},
            "oneQubitFidelity": [
                {
                    "fidelityType": _RB,
                    "fidelity": device.r_gate.fidelity,
                    "standardError": device.r_gate.fidelity_error,
                },
                {
                    "fidelityType": {"name": "READOUT", "description": None},
                    "fidelity": device.spam_fidelity,
                    "standardError": device.spam_fidelity_error,
                },
            ],
        }
        for q in range(n)
    }
    two_q = {
        f"{a}-{b}": {
            "twoQubitGateFidelity": [
                {
                    "direction": None,
                    "gateName": "MS",
                    "fidelity": device.ms_gate.fidelity,
                    "standardError": device.ms_gate.fidelity_error,
                    "fidelityType": _RB,
                }
            ]
        }
        for a in range(n)
        for b in range(a + 1, n)
    }
    addr = addressed_channels(device)
    ports: dict[str, Any] = {}
    frames: dict[str, Any] = {}
    for name, ch in device.channels.items():
        qubits = (
            [str(ch.ion)]
            if ch.kind == "beam_addressed" and ch.ion is not None
            else [str(q) for q in range(n)]
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
    for ion, ch_name in sorted(addr.items()):
        ch = device.channels[ch_name]
        frames[f"q{ion}"] = {
            "frameId": f"q{ion}",
            "portId": ch_name,
            "frequency": ch.aom_center_frequency,
            "centerFrequency": ch.aom_center_frequency,
            "phase": 0.0,
            "associatedGate": ["r", "ms", "rz"],
            "qubitMappings": [str(ion)],
            "qhpSpecificProperties": {"msSidebandOffset": ms_sideband_hz(device)},
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
            "qubitMappings": ["0"],
            "qhpSpecificProperties": None,
        }
    durations = {
        "r": device.r_gate.duration,
        "rz": 0.0,
        "ms": device.ms_gate.duration,
        "rxx": device.ms_gate.duration,
        "measure": device.detection_duration,
        "reset": device.pumping_duration,
    }
    capabilities: dict[str, Any] = {
        "braketSchemaHeader": _header("device_capabilities"),
        "service": {
            "braketSchemaHeader": _header("device_service_properties_v1"),
            "executionWindows": [
                {
                    "executionDay": "Everyday",
                    "windowStartHour": "00:00",
                    "windowEndHour": "23:59:59",
                }
            ],
            "shotsRange": [1, 100000],
            "deviceDocumentation": {
                "name": device.name,
                "summary": f"{n}-ion {device.species} processor",
            },
        },
        "action": {
            "braket.ir.openqasm.program": {
                "version": ["3.0", "2.0"],
                "actionType": "braket.ir.openqasm.program",
                "supportedOperations": [*sorted(STD_GATES), "U", "gphase"],
                "supportedModifiers": [
                    {"name": "inv"},
                    {"name": "pow"},
                    {"name": "ctrl", "maxQubits": 2},
                ],
                "supportedPragmas": [],
                "forbiddenPragmas": [],
                "supportPhysicalQubits": True,
                "supportsMidCircuitMeasurement": True,
                "supportsFeedForward": True,
                "feedbackLatency": device.feedback_latency,
                "supportedExterns": {name: text for name, (text, _) in EXTERNS.items()},
                "supportedResultTypes": [
                    {"name": "Probability", "minShots": 1, "maxShots": 100000}
                ],
            }
        },
        "paradigm": {
            "braketSchemaHeader": _header("gate_model_qpu_paradigm_properties_v1"),
            "qubitCount": n,
            "nativeGateSet": list(device.native_gates),
            "connectivity": {
                "fullyConnected": device.connectivity == "all_to_all",
                "connectivityGraph": {},
            },
        },
        "standardized": {
            "braketSchemaHeader": _header("standardized_gate_model_qpu_device_properties_v1"),
            "oneQubitProperties": one_q,
            "twoQubitProperties": two_q,
        },
        "pulse": {
            "braketSchemaHeader": _header("pulse.pulse_device_action_properties_v1"),
            "supportedQhpTemplateWaveforms": {"constant": {}, "bichromatic": {}},
            "supportedOpenPulseInstructions": [
                "play(frame, constant(duration, amplitude))",
                "shift_phase",
                "set_phase",
                "set_frequency",
                "shift_frequency",
                "delay[duration] frame",
                "capture(frame, duration) in defcal measure",
            ],
            "ports": ports,
            "frames": frames,
            "supportsLocalPulseElements": False,
            "supportsDynamicFrames": True,
            "supportsNonNativeGatesWithPulses": True,
            "validationParameters": {
                "MAX_SCALE": 1.0,
                "MAX_AMPLITUDE": max(
                    (c.max_amplitude for c in device.channels.values()), default=1.0
                ),
                "MIN_PULSE_LENGTH": device.grid_mu * device.time_unit,
                "MAX_PULSE_LENGTH": device.max_schedule_duration,
                "TIME_UNIT": device.time_unit,
                "GRID_MU": device.grid_mu,
                "MAX_EVENT_RATE": device.max_event_rate,
            },
        },
        "provider": {
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
    capabilities["qdmi"] = _qdmi(device, durations)
    return capabilities


def _qdmi(device: DeviceSettings, durations: dict[str, float]) -> dict[str, Any]:
    n = device.ions
    ops = {
        "r": (1, 2, device.r_gate.fidelity),
        "rz": (1, 1, 1.0),
        "ms": (2, 3, device.ms_gate.fidelity),
        "rxx": (2, 1, device.ms_gate.fidelity),
    }
    return {
        "device": {
            "QDMI_DEVICE_PROPERTY_NAME": device.name,
            "QDMI_DEVICE_PROPERTY_VERSION": "1",
            "QDMI_DEVICE_PROPERTY_STATUS": "IDLE",
            "QDMI_DEVICE_PROPERTY_QUBITSNUM": n,
            "QDMI_DEVICE_PROPERTY_SITES": list(range(n)),
            "QDMI_DEVICE_PROPERTY_OPERATIONS": list(ops),
            "QDMI_DEVICE_PROPERTY_COUPLINGMAP": [
                [a, b] for a in range(n) for b in range(n) if a != b
            ],
            "QDMI_DEVICE_PROPERTY_NEEDSCALIBRATION": 0,
            "QDMI_DEVICE_PROPERTY_DURATIONUNIT": "s",
            "QDMI_DEVICE_PROPERTY_DURATIONSCALEFACTOR": 1.0,
        },
        "sites": {
            str(q): {
                "QDMI_SITE_PROPERTY_INDEX": q,
                "QDMI_SITE_PROPERTY_T1": device.t1,
                "QDMI_SITE_PROPERTY_T2": device.t2,
            }
            for q in range(n)
        },
        "operations": {
            name: {
                "QDMI_OPERATION_PROPERTY_NAME": name,
                "QDMI_OPERATION_PROPERTY_QUBITSNUM": qubits,
                "QDMI_OPERATION_PROPERTY_PARAMETERSNUM": params,
                "QDMI_OPERATION_PROPERTY_DURATION": durations[name],
                "QDMI_OPERATION_PROPERTY_FIDELITY": fidelity,
            }
            for name, (qubits, params, fidelity) in ops.items()
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
