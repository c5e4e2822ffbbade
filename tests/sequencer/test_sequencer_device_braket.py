"""`ionpilot device --json` loads in Amazon Braket's own models (amazon-braket-schemas): the whole
document through its header, every section through its own, and no key of ours is silently
dropped by a model except the extensions the device names."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ionpilot.cli import main
from ionpilot.sequencer.device import EXTENSIONS, describe_device
from ionpilot.sequencer.settings import DeviceSettings

schema_base = pytest.importorskip(
    "braket.schema_common", reason="amazon-braket-schemas (the dev extra) is not installed"
)
Base = schema_base.BraketSchemaBase


def _dropped(ours: Any, theirs: Any, path: str = "") -> list[str]:
    """Keys of `ours` that the model's own JSON does not have (what a Braket reader loses)."""
    lost: list[str] = []
    if isinstance(ours, dict) and isinstance(theirs, dict):
        allowed = EXTENSIONS.get(path, ())
        for key, value in ours.items():
            where = f"{path}.{key}" if path else key
            if key not in theirs:
                if key not in allowed:
                    lost.append(where)
                continue
            lost += _dropped(value, theirs[key], where)
    elif isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            lost += _dropped(a, b, f"{path}[{i}]")
    return lost


def _load(section: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    model = Base.parse_raw_schema(json.dumps(section))
    return model, json.loads(model.json())


def test_the_cli_document_loads_in_the_braket_models_section_by_section(capsys) -> None:
    assert main(["device", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    caps, caps_json = _load(doc)
    assert type(caps).__name__ == "AqtDeviceCapabilities"
    assert _dropped(doc, caps_json) == []
    expected = {
        "service": "DeviceServiceProperties",
        "paradigm": "GateModelQpuParadigmProperties",
        "provider": "AqtProviderProperties",
        "standardized": "StandardizedGateModelQpuDeviceProperties",
        "pulse": "PulseDeviceActionProperties",
    }
    for section, name in expected.items():
        model, model_json = _load(doc[section])
        assert type(model).__name__ == name, section
        assert _dropped(doc[section], model_json, section) == [], section
    from braket.device_schema import OpenQASMDeviceActionProperties  # type: ignore[import-untyped]

    action = doc["action"]["braket.ir.openqasm.program"]
    loaded = OpenQASMDeviceActionProperties.parse_obj(action)
    assert _dropped(action, json.loads(loaded.json()), "action.braket.ir.openqasm.program") == []
    ctrl = [m for m in loaded.supportedModifiers if m.name == "ctrl"]
    assert ctrl and ctrl[0].max_qubits == 2
    # the figures survive the round trip
    assert caps.paradigm.qubitCount == 5
    assert caps.standardized.twoQubitGateFidelity[0].fidelity == pytest.approx(0.995)
    assert set(caps.provider.properties.single_qubit_gate_fidelity) == {"0", "1", "2", "3", "4"}
    assert "raman_addr_3" in doc["pulse"]["ports"] and "q3" in doc["pulse"]["frames"]


def test_a_wrong_header_or_field_is_refused_by_the_oracle() -> None:
    """The oracle does refuse: what the document used to carry (a `_v1` suffix in a header, a
    `ctrl` modifier with a field the schema does not know) fails to load."""
    doc = describe_device(DeviceSettings(), now_s=1.8e9)
    bad = json.loads(json.dumps(doc["service"]))
    bad["braketSchemaHeader"]["name"] += "_v1"
    with pytest.raises(ModuleNotFoundError):
        Base.parse_raw_schema(json.dumps(bad))
    action = json.loads(json.dumps(doc["action"]["braket.ir.openqasm.program"]))
    action["supportedModifiers"] = [{"name": "pow"}]  # no exponent_types
    from braket.device_schema import OpenQASMDeviceActionProperties  # type: ignore[import-untyped]
    from pydantic.v1 import ValidationError

    with pytest.raises(ValidationError):
        OpenQASMDeviceActionProperties.parse_obj(action)


def test_an_impossible_recorded_figure_is_set_aside_and_the_document_still_loads() -> None:
    from ionpilot.sequencer.calibrations import Calibration

    cals = {  # a hand-edited record: a fidelity above 1, a zero T2*
        "ms_fidelity": Calibration("ms_fidelity", 1.3, 0.1, "", 1.7e9, "by hand", 86_400.0),
        "t2_star": Calibration("t2_star", 0.0, 0.1, "s", 1.7e9, "by hand", 86_400.0),
    }
    doc = describe_device(DeviceSettings(), calibrations=cals, now_s=1.7e9 + 10)
    Base.parse_raw_schema(json.dumps(doc))
    assert set(doc["calibrations"]["ignored"]) == {"ms_fidelity", "t2_star"}
    assert doc["standardized"]["twoQubitGateFidelity"][0]["fidelity"] == 0.995  # configured
