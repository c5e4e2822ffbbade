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
    one = doc["standardized"]["oneQubitProperties"]["0"]
    assert one["T2"]["value"] == 1.0 and one["T2"]["standardError"] > 0
    assert (
        doc["standardized"]["twoQubitProperties"]["0-4"]["twoQubitGateFidelity"][0]["gateName"]
        == "MS"
    )
    assert "raman_addr_3" in doc["pulse"]["ports"] and "q3" in doc["pulse"]["frames"]
    assert doc["provider"]["gateDurations"]["ms"] == 200e-6
    assert doc["qdmi"]["device"]["QDMI_DEVICE_PROPERTY_QUBITSNUM"] == 5
    assert doc["qdmi"]["operations"]["ms"]["QDMI_OPERATION_PROPERTY_QUBITSNUM"] == 2


def test_cli_device_json(capsys):
    assert main(["device", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["braketSchemaHeader"]["name"] == "braket.device_schema.device_capabilities"
