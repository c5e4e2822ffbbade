"""`ionpilot device` and `ionpilot run-qasm`: describe the processor, run an OpenQASM file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ionpilot.sequencer.backends import BACKEND_NAMES, get_backend
from ionpilot.sequencer.device import describe_device
from ionpilot.sequencer.errors import BackendUnavailable, QasmError, ScheduleError, SequencerError
from ionpilot.sequencer.qasm import parse_qasm
from ionpilot.sequencer.runner import compile_program, run_program
from ionpilot.sequencer.settings import DeviceSettings


def register(subparsers: Any) -> None:
    device = subparsers.add_parser("device", help="describe the trapped-ion processor")
    device.add_argument("--config", help="lab file (default: built-in 5-ion Yb+ device)")
    device.add_argument("--json", action="store_true", help="Braket-shaped JSON capabilities")
    device.set_defaults(handler=run_device)
    run = subparsers.add_parser("run-qasm", help="compile and run an OpenQASM 2/3 file")
    run.add_argument("file", help="OpenQASM file")
    run.add_argument("--shots", type=int, default=1000)
    run.add_argument("--backend", choices=BACKEND_NAMES, default="sim")
    run.add_argument("--ideal", action="store_true", help="simulator without the error model")
    run.add_argument("--seed", type=int, default=None, help="seed for the simulator's shots")
    run.add_argument("--config", help="lab file (default: built-in 5-ion Yb+ device)")
    run.add_argument("--json", action="store_true", help="print the result document as JSON")
    run.set_defaults(handler=run_qasm_file)


def _error(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _device(path: str | None) -> DeviceSettings:
    """The device from a lab file's `device:` section, or the defaults."""
    if path is None:
        return DeviceSettings()
    from ionpilot.config import load_config

    device: DeviceSettings = load_config(path).device
    return device


def run_device(args: argparse.Namespace) -> int:
    try:
        device = _device(args.config)
    except Exception as exc:  # ConfigError and friends: a bad file is bad input
        return _error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 2)
    doc = describe_device(device)
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(
        f"{device.name}: {device.ions} x {device.species}, native {', '.join(device.native_gates)}"
    )
    print(
        f"  R {device.r_gate.duration * 1e6:.0f} us F={device.r_gate.fidelity}, "
        f"MS {device.ms_gate.duration * 1e6:.0f} us F={device.ms_gate.fidelity}, "
        f"T2 {device.t2} s, SPAM {device.spam_fidelity}"
    )
    print(f"  channels: {', '.join(device.channels)}")
    return 0


def run_qasm_file(args: argparse.Namespace) -> int:
    if args.shots < 1:
        return _error("--shots must be at least 1", 2)
    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except OSError as exc:
        return _error(f"cannot read {args.file}: {exc.strerror or exc}", 2)
    try:
        device = _device(args.config)
    except Exception as exc:
        return _error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 2)
    try:
        program = compile_program(parse_qasm(text, name=Path(args.file).stem), device)
        backend = get_backend(args.backend, device, ideal=args.ideal)
        result = run_program(program, backend, device, args.shots, args.seed)
    except QasmError as exc:
        return _error(f"{args.file}: {exc}", 2)
    except ScheduleError as exc:
        return _error(str(exc), 2)
    except BackendUnavailable as exc:
        return _error(str(exc), 1)
    except SequencerError as exc:
        return _error(str(exc), 1)
    result["ideal"] = bool(args.ideal)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.file}: {args.shots} shots on {args.backend}{' (ideal)' if args.ideal else ''}")
    for key, count in list(result["counts"].items())[:32]:
        lo, hi = result["intervals"][key]
        print(f"  {key}  {count:6d}  p={count / args.shots:.4f}  [{lo:.4f}, {hi:.4f}]")
    report = result["compile"]
    print(
        f"  native: {report['native_counts']}, two-qubit {report['two_qubit_count']}, "
        f"duration {report['estimated_duration_s'] * 1e3:.3f} ms"
    )
    return 0
