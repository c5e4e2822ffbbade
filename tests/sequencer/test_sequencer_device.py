"""The device description: Braket-shaped capabilities plus QDMI names; the CLI prints it."""

import json

from ionpilot.cli import main
from ionpilot.sequencer import describe_device
from ionpilot.sequencer.settings import DeviceSettings


def test_braket_shape():
    doc = describe_device(DeviceSettings())
    assert doc["paradigm"]["qubitCount"] == 5
    assert doc["paradigm"]["connectivity"]["fullyConnected"] is True
    assert set(doc["paradigm"]["nativeGateSet"]) >= {"r", "rz", "ms"}
    std = doc["standardized"]
    assert std["T2"]["value"] == 1.0 and std["T2"]["standardError"] > 0
    assert std["oneQubitProperties"]["4"]["oneQubitFidelity"][0]["fidelity"] == 0.9995
    assert std["twoQubitGateFidelity"][0]["fidelity"] == 0.995
    assert "raman_addr_3" in doc["pulse"]["ports"] and "q3" in doc["pulse"]["frames"]
    assert doc["ionpilot"]["gateDurations"]["ms"] == 200e-6
    assert doc["qdmi"]["device"]["QDMI_DEVICE_PROPERTY_QUBITSNUM"] == 5
    assert doc["qdmi"]["operations"]["ms"]["QDMI_OPERATION_PROPERTY_QUBITSNUM"] == 2


def test_cli_device_json(capsys):
    assert main(["device", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["braketSchemaHeader"]["name"] == "braket.device_schema.aqt.aqt_device_capabilities"
    assert doc["status"]["state"] == "unknown"  # no lab file: no lab was asked
    assert doc["qdmi"]["device"]["QDMI_DEVICE_PROPERTY_STATUS"] is None
