"""Small real-socket clients the tests talk through (pyvisa-py, pyserial, xmlrpc, JSON)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pyvisa
import serial
import yaml

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "sim-lab.yaml"


def lab_instruments() -> dict[str, tuple[str, str]]:
    """{name: (model, address)} of every instrument of the default lab file."""
    data = yaml.safe_load(CONFIG.read_text())
    return {name: (d["model"], d["address"]) for name, d in data["instruments"].items()}


def visa(resource: str, term: str = "\n", timeout_ms: int = 2000) -> Any:
    rm = pyvisa.ResourceManager("@py")
    inst = rm.open_resource(resource, read_termination=term, write_termination=term)
    inst.timeout = timeout_ms
    return inst


class JsonClient:
    """The pulser's newline-delimited JSON protocol."""

    def __init__(self, address: str) -> None:
        host, port = address.removeprefix("tcp://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.file = self.sock.makefile("rwb")
        self.next_id = 0

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        self.next_id += 1
        self.file.write((json.dumps({"id": self.next_id, "op": op, **fields}) + "\n").encode())
        self.file.flush()
        reply: dict[str, Any] = json.loads(self.file.readline())
        assert reply["id"] == self.next_id
        return reply

    def result(self, op: str, **fields: Any) -> Any:
        reply = self.request(op, **fields)
        assert reply["ok"], reply
        return reply["result"]

    def close(self) -> None:
        self.file.close()
        self.sock.close()


class Sc10Client:
    def __init__(self, address: str) -> None:
        self.port = serial.serial_for_url(address, timeout=2)

    def command(self, text: str) -> list[str]:
        self.port.write(text.encode() + b"\r")
        raw = self.port.read_until(b"> ").decode()
        assert raw.endswith("> "), raw
        return raw[:-2].split("\r")[:-1]

    def close(self) -> None:
        self.port.close()


class DlcClient:
    def __init__(self, address: str) -> None:
        self.inst = visa(address)
        assert self.inst.read() == "DeCoF Command Line\r"  # the banner ends in CR LF

    def query(self, text: str) -> str:
        reply: str = self.inst.query(text)
        assert reply.startswith("> ")
        return reply[2:]

    def set(self, name: str, value: object) -> None:
        assert self.query(f"(param-set! '{name} {value})") == "0"
