"""`ionpilot device`, `ionpilot run-qasm` and `ionpilot sequencer-service`: describe the
processor, run an OpenQASM file (on the simulator at once, or on the trap as a job in the
sequencer service's queue), serve the job queue on the bus."""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import time
from pathlib import Path
from typing import Any

from ionpilot.bus.codec import BusError
from ionpilot.commands.jobs import JobsError, duration, queue_link, result_lines, submit_and_wait
from ionpilot.config import DEFAULT_CONFIG, LabConfig
from ionpilot.sequencer.backends import BACKEND_NAMES, get_backend
from ionpilot.sequencer.calibrations import Calibration, CalibrationError, CalibrationStore
from ionpilot.sequencer.device import describe_device
from ionpilot.sequencer.device_status import not_asked, read_device_status
from ionpilot.sequencer.errors import BackendUnavailable, QasmError, ScheduleError, SequencerError
from ionpilot.sequencer.qasm import parse_qasm
from ionpilot.sequencer.qasm_program import NeedsShotByShot
from ionpilot.sequencer.runner import (
    compile_program,
    qasm_limits,
    run_program,
    run_without_schedule,
)
from ionpilot.sequencer.settings import DeviceSettings
from ionpilot.sequencer.trap import BusPulserLink


def register(subparsers: Any) -> None:
    device = subparsers.add_parser(
        "device",
        help="describe the trapped-ion processor",
        description="Describe the trapped-ion processor of a lab file (or the built-in one).",
    )
    device.add_argument(
        "--config",
        help="lab file: its device, its calibration record and the running lab's status "
        "(default: the built-in 5-ion Yb+ device, no lab asked)",
    )
    device.add_argument(
        "--json", action="store_true", help="capabilities that load in amazon-braket-schemas"
    )
    device.add_argument(
        "--offline", action="store_true", help="do not ask the lab for its status (state unknown)"
    )
    device.set_defaults(handler=run_device)
    run = subparsers.add_parser(
        "run-qasm",
        help="compile and run an OpenQASM 2/3 file",
        description=(
            "Compile and run FILE. On the simulator it runs at once, in this process. On the "
            "trap it is a job in the sequencer service's queue, like any other: audited, run in "
            "its turn, and kept waiting while user jobs are held (a recovery); the reason is "
            "printed. Exit 0 done, 1 the lab did not answer or the job failed, 2 bad input or "
            "refused (--no-wait on a held queue)."
        ),
    )
    run.add_argument("file", help="OpenQASM file")
    run.add_argument("--shots", type=int, default=1000, help="repetitions (default 1000)")
    run.add_argument(
        "--backend",
        choices=BACKEND_NAMES,
        default="sim",
        help="sim: the simulated ion chain, here and now; trap: the lab, through the job queue",
    )
    run.add_argument("--ideal", action="store_true", help="simulator without the error model")
    run.add_argument("--seed", type=int, default=None, help="seed for the simulator's shots")
    run.add_argument(
        "--no-wait",
        action="store_true",
        help="trap: refuse at once (exit 2, nothing queued) while user jobs are held",
    )
    run.add_argument(
        "--priority",
        type=int,
        default=0,
        help="trap: the job's priority, -100..100, higher runs first (default 0)",
    )
    run.add_argument(
        "--config",
        help=f"lab file (default: built-in 5-ion Yb+ device; for --backend trap {DEFAULT_CONFIG})",
    )
    run.add_argument("--json", action="store_true", help="print the result document as JSON")
    run.set_defaults(handler=run_qasm_file)
    service = subparsers.add_parser(
        "sequencer-service",
        help="serve the job queue on the bus and run its jobs",
        description="Serve the job queue on the bus and run its jobs on one backend.",
    )
    service.add_argument("--config", default=str(DEFAULT_CONFIG), help="lab file")
    service.add_argument(
        "--backend", choices=BACKEND_NAMES, default="trap", help="where jobs run (default trap)"
    )
    service.add_argument("--ideal", action="store_true", help="simulator without the error model")
    service.add_argument(
        "--queue", help="job queue file (default: <lab data_dir>/sequencer/jobs.json)"
    )
    service.add_argument(
        "--stale-hold",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="a hold of the daemon's whose heartbeat has been silent this long is marked stale "
        "(kept; `ionpilot jobs` says so; default 60)",
    )
    service.set_defaults(handler=run_service_command)


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
    """The device of the lab file with its calibration record laid over, and the lab's status
    asked on the bus (`offline` when it does not answer)."""
    calibrations: dict[str, Calibration] = {}
    now = time.time()
    if args.config is None:
        device = DeviceSettings()
        status = not_asked("no lab file given: the built-in device, no lab asked")
    else:
        from ionpilot.config import load_config

        try:
            config = load_config(args.config)
        except Exception as exc:  # ConfigError and friends: a bad file is bad input
            return _error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 2)
        device = config.device
        try:
            store = CalibrationStore(config.lab.data_dir, device.calibration_validity)
            calibrations = store.latest()
        except CalibrationError as exc:  # the record is there but unreadable
            return _error(str(exc), 1)
        due = sorted(q for q, c in calibrations.items() if c.stale(now))
        if args.offline:
            status = not_asked("not asked (--offline)")
        else:
            with LabAsker(config) as ask:
                status = read_device_status(ask, due)
    doc = describe_device(device, calibrations=calibrations, now_s=now, status=status)
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(
        f"{device.name}: {device.ions} x {device.species}, native {', '.join(device.native_gates)}"
    )
    print(f"  status: {status.state} ({status.reason})")
    figures = doc["calibrations"]
    shown = {k: v for k, v in figures.items() if isinstance(v, dict) and "origin" in v}
    for name, figure in [*shown.items(), *figures["recorded"].items()]:
        when = f" {figure['measuredAt']} by {figure['source']}" if "measuredAt" in figure else ""
        unit = f" {figure['unit']}" if figure.get("unit") else ""
        print(
            f"  {name}: {figure['value']:g} +- {figure['uncertainty']:g}{unit} "
            f"({figure['origin']}{when})"
        )
    due = doc["calibrations"]["needsCalibration"]
    if due:
        print(f"  needs calibration: {', '.join(due)}")
    print(
        f"  R {device.r_gate.duration * 1e6:.0f} us, MS {device.ms_gate.duration * 1e6:.0f} us; "
        f"channels: {', '.join(device.channels)}"
    )
    return 0


class LabAsker:
    """Requests to the lab's processes (daemon, sequencer) for the device status: each fails at
    once when nothing listens at its port, else within `timeout_s`."""

    def __init__(self, config: LabConfig, timeout_s: float = 2.0) -> None:
        self.config = config
        self.timeout_s = timeout_s
        self._clients: dict[str, Any] = {}

    def __call__(self, process: str, method: str, args: dict[str, Any]) -> Any:
        from ionpilot.bus.client import CommandClient

        client = self._clients.get(process)
        if client is None:
            if process not in self.config.processes:
                raise OSError(f"the lab file has no process '{process}'")
            host = self.config.bus.host
            port = self.config.processes[process].command_port
            try:
                with socket.create_connection((host, port), timeout=1.0):
                    pass  # something listens: ask it
            except OSError as exc:
                raise OSError(
                    f"nothing answers at {host}:{port} ({exc.strerror or exc}); is the lab "
                    "running (`ionpilot up`)?"
                ) from None
            client = CommandClient(self.config.bus, f"tcp://{host}:{port}", name="ionpilot-device")
            self._clients[process] = client
        return client.call(process, method, args, timeout=self.timeout_s, retries=0)

    def __enter__(self) -> LabAsker:
        return self

    def __exit__(self, *exc: object) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


def pulser_link(config: LabConfig) -> BusPulserLink:
    """The trap backend's way to the pulse controller named by the lab file's device section."""
    from ionpilot.bus.directory import Directory

    target = config.device.pulse_controller
    if target not in config.instruments:
        raise BackendUnavailable(
            f"trap backend: the lab file has no instrument '{target}' (device.pulse_controller)"
        )
    directory = Directory.from_config(config.bus.host, config.processes, config.instruments)
    try:
        endpoint = directory.resolve(target)
    except (BusError, KeyError) as exc:
        raise BackendUnavailable(f"trap backend: no process serves '{target}': {exc}") from None
    return BusPulserLink(config.bus, endpoint, target, client="sequencer")


def run_qasm_file(args: argparse.Namespace) -> int:
    if args.shots < 1:
        return _error("--shots must be at least 1", 2)
    if args.backend == "trap" and (args.ideal or args.seed is not None):
        return _error("--ideal and --seed are for --backend sim; the trap has real ions", 2)
    if args.backend != "trap" and (args.no_wait or args.priority != 0):
        return _error("--no-wait and --priority are for --backend trap (the queue)", 2)
    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except OSError as exc:
        return _error(f"cannot read {args.file}: {exc.strerror or exc}", 2)
    try:
        if args.backend == "trap":
            from ionpilot.config import load_config

            config = load_config(args.config or DEFAULT_CONFIG)
            device = config.device
        else:
            device = _device(args.config)
    except Exception as exc:
        return _error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 2)
    try:
        limits = qasm_limits(args.backend, device)
        try:
            circuit = parse_qasm(text, name=Path(args.file).stem, device=device, limits=limits)
        except NeedsShotByShot as why:
            if args.backend != "sim":
                raise
            backend = get_backend("sim", device, ideal=args.ideal)
            result = run_without_schedule(
                text, why, backend, device, shots=args.shots, seed=args.seed
            )
        else:
            if args.backend == "trap":  # through the service's queue, which compiles it again
                compile_program(circuit, device)  # refused here, at once, when it cannot run
                result = _run_on_trap(args, text, config)
            else:
                program = compile_program(circuit, device)
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
    except JobsError as exc:
        return _error(f"trap backend: {exc}", exc.code)
    result["ideal"] = bool(args.ideal)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.file}: {args.shots} shots on {args.backend}{' (ideal)' if args.ideal else ''}")
    if "job" in result:
        job = result["job"]
        print(
            f"  job {job['id']} by {job['submitter']}: waited {duration(job['waited_s'])}, "
            f"ran {duration(job['ran_s'])}"
        )
    print("\n".join(result_lines(result, args.shots)))
    for cut in result.get("truncated", []):  # a while loop on measurements, bounded
        upper = cut.get("fraction_upper_95")
        print(
            f"  while loop at line {cut['line']}: cut off after {cut['bound']} tries in "
            f"{100 * cut['fraction']:.3g} % of shots"
            + ("" if upper is None else f" (at most {100 * upper:.3g} % at 95 % confidence)")
        )
    return 0


def _run_on_trap(args: argparse.Namespace, text: str, config: LabConfig) -> dict[str, Any]:
    """The program as a user job in the sequencer service's queue (so the hold, the order and
    the audit trail apply to it as to any job); the job's result document once it has run."""
    request = {"qasm": text, "shots": args.shots, "priority": args.priority, "backend": "trap"}
    with queue_link(config) as link:
        job = submit_and_wait(link, request, _say, no_wait=args.no_wait)
    if job["state"] != "done":
        raise JobsError(f"job {job['id']} {job['state']}: {job.get('error') or ''}".rstrip(), 1)
    result: dict[str, Any] = job["result"]
    started, finished = job["started_s"], job["finished_s"]
    result["job"] = {
        "id": job["id"],
        "submitter": job["submitter"],
        "priority": job["priority"],
        "submitted_s": job["submitted_s"],
        "started_s": started,
        "finished_s": finished,
        "waited_s": started - job["submitted_s"],
        "ran_s": finished - started,
    }
    return result


def _say(text: str) -> None:
    print(f"run-qasm: {text}", file=sys.stderr, flush=True)


def run_service_command(args: argparse.Namespace) -> int:
    from ionpilot.runtime import load_or_report, run_service
    from ionpilot.sequencer.calibrations import CalibrationStore
    from ionpilot.sequencer.interleave import ClockShare
    from ionpilot.sequencer.jobs import Job, JobQueue
    from ionpilot.sequencer.runner import execute_job
    from ionpilot.sequencer.service import SequencerService
    from ionpilot.sequencer.trap import TrapBackend
    from ionpilot.servo.interrogation import clock_duty

    config = load_or_report(args.config)
    if config is None:
        return 2
    process = SequencerService.PROCESS
    if not 0 < args.stale_hold <= 86400:
        return _error(f"--stale-hold {args.stale_hold:g}: seconds in (0, 86400]", 2)
    if process not in config.processes:
        return _error(f"the lab file has no process '{process}' (processes: section)", 2)
    link: BusPulserLink | None = None
    try:
        if args.backend == "trap":
            link = pulser_link(config)
        queue = JobQueue(args.queue or Path(config.lab.data_dir) / "sequencer" / "jobs.json")
    except SequencerError as exc:  # BackendUnavailable, JobError (unreadable queue file)
        return _error(str(exc), 1)
    device = config.device
    backend = get_backend(args.backend, device, ideal=args.ideal, link=link)

    def execute(job: Job) -> dict[str, Any]:
        return execute_job(job, device, ideal=args.ideal, backend=backend)

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s sequencer %(levelname)s %(message)s"
    )
    port = config.processes[process].command_port
    # the clock keeps the share of the controller its shared time constant needs (lab file:
    # servo.clock_lock.shared_time_constant); user jobs play in calls of at most one slice
    share = ClockShare(min_duty=clock_duty(config.servo.clock_lock, config.servo.pulses))
    store = CalibrationStore(config.lab.data_dir)
    service = SequencerService(
        queue,
        device,
        execute,
        config.bus,
        f"tcp://{config.bus.host}:{port}",
        backend=args.backend,
        share=share,
        calibrations=lambda: {q: c.to_json() for q, c in store.latest().items()},
        stale_hold_s=args.stale_hold,
    )
    if isinstance(backend, TrapBackend):
        backend.max_call_s = share.max_user_slice_s
        backend.between_calls = service.between_slices

    def stop() -> None:
        service.stop()
        if link is not None:
            link.close()

    where = queue.path
    return run_service(
        service.start, stop, f"ready {process}: {args.backend} backend, queue {where}"
    )
