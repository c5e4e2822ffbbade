"""Driver-host benchmark: sustained parameter reads per second across every instrument of the
simulated lab, through the driver host and the bus, against a bare pyvisa/socket loop (the
ceiling) doing the same reads, in the same run.

The simulated lab (configs/sim-lab.yaml, every instrument, a virtual clock so counter gates take
no wall time) runs in a process of its own, on loopback. Each round measures
(a) bare: one thread per instrument, each on its own raw connection (pyvisa-py, pyserial,
    xmlrpc.client, a JSON socket), sending the very queries the drivers send, in a loop;
(b) host: a driver-host process (as `ionpilot drivers` runs it, polling off, its Python
    threads on one CPU) and one bus client (`ClientCore`) sending `get` requests,
    `--in-flight` outstanding per instrument.
The reads per instrument are its configured poll parameters (the pulser: `dds_frequency`; the
wavemeter: the routed input's `frequency`, `:MEAS:FREQ?` alone, since each of its configured
per-input polls waits 50 ms for the fibre switch to settle, which would measure the switch, not
the host). Rounds alternate the order; medians are reported.

Where the processes run (`--placement`) decides the bare ceiling more than anything else does.
Thirteen Python threads that take turns at one GIL run about twice as fast on one CPU as spread
over two (every hand-over of the GIL, and every wake-up after an instrument answers, then crosses
CPUs) — which is why the driver host pins its Python threads to one CPU. `pinned` (the default)
gives both measured sides that same single CPU (the last one the bench may use): the bare loop's
threads in phase (a), the host's in phase (b); the simulated lab, which stands in for instruments
that are machines of their own, and the bench's bus client, which stands in for the lab's users,
run on the other CPUs. `free` pins nothing but the host (which pins itself, as in production)
and lets the scheduler place the rest: the bare loop then pays the cross-CPU hand-overs the host
avoids, and lands at 3,000-6,100 reads/s between runs instead of ~9,000. With each measured side,
the CPU time its process spent per read is reported (`*_cpu_us_per_read`): a cost that does not
depend on where the scheduler put whom.

    python bench/drivers.py --json
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import multiprocessing as mp
import os
import resource
import socket
import statistics
import sys
import threading
import time
import xmlrpc.client
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "sim-lab.yaml"
TARGET_RATIO = 0.4  # host reads/s over bare reads/s
TARGET_CPU_RATIO = 2.5  # host CPU per read over bare CPU per read, at most


def lab_reads() -> dict[str, tuple[str, str, list[str]]]:
    """{instrument: (model, configured address, [parameters read])}."""
    from ionpilot.config import load_config

    config = load_config(CONFIG)
    out = {}
    for name, inst in config.instruments.items():
        params = list(inst.poll) or (["dds_frequency"] if inst.model == "ionpilot_pulser" else [])
        if inst.model == "bristol_871a":
            params = ["frequency"]
        if params:
            out[name] = (inst.model, inst.address, params)
    return out


# --------------------------------------------------------------------------- child processes


def sim_process(conn: Connection) -> None:
    """The simulated lab on free ports, until told to quit."""
    from ionpilot.sim.clock import VirtualClock
    from ionpilot.sim.settings import SimSettings

    # imported by name: mypy run on bench/ with --allow-untyped-defs would otherwise check the
    # simulated instruments under settings they are not written for
    lab_module: Any = importlib.import_module("ionpilot.sim.lab")
    instruments = {n: (model, addr) for n, (model, addr, _p) in lab_reads().items()}
    lab = lab_module.Lab(instruments, SimSettings(seed=1), VirtualClock(), free_ports=True)
    with lab:
        conn.send(lab.resources())
        conn.recv()


def host_process(conn: Connection, resources: dict[str, str]) -> None:
    """A driver host owning every instrument (no polling), until told to quit."""
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - QCoDeS greets each connection on stdout
    from ionpilot.bus.settings import BusSettings
    from ionpilot.config import load_config
    from ionpilot.drivers.host import DriverHost, InstrumentSpec, open_spec

    config = load_config(CONFIG)
    specs = [
        InstrumentSpec(
            name=name,
            model=config.instruments[name].model,
            address=address,
            timeout_s=2.0,
            limits=config.instruments[name].limit_values(),
        )
        for name, address in resources.items()
    ]
    # telemetry of every `get` is published as in the lab (to a hub nobody runs here)
    bus = BusSettings(publish_port=free_port(), subscribe_port=free_port())
    host = DriverHost("drivers", specs, bus, "tcp://127.0.0.1:0", open_spec)
    for worker in host.workers.values():
        worker.backoff.initial = 0.05
        worker.backoff.maximum = 0.2
    with host:
        deadline = time.monotonic() + 30
        while any(w.state != "connected" for w in host.workers.values()):
            if time.monotonic() > deadline:
                bad = {n: w.last_error for n, w in host.workers.items() if w.state != "connected"}
                conn.send(("error", bad))
                return
            time.sleep(0.02)
        conn.send(("ready", host.endpoint))
        while conn.recv() == "cpu":  # the host's CPU time and context switches so far
            conn.send(process_cost())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def bare_policy(kind: str) -> int | None:
    """Threads this process starts from now on get `kind`'s policy; returns the old one to
    restore (None: nothing changed)."""
    if kind != "batch":
        return None
    from ionpilot.drivers.host import batch_scheduling

    return batch_scheduling(0)


def process_cost() -> tuple[float, int]:
    """(CPU seconds, context switches) of this process so far, all its threads (ended ones
    included: getrusage counts them)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_nvcsw + usage.ru_nivcsw


def cpu_probe(conn: Connection) -> Callable[[], tuple[float, int]]:
    """The driver host's `process_cost()`, asked over its pipe."""

    def host_cost() -> tuple[float, int]:
        conn.send("cpu")
        cost: tuple[float, int] = conn.recv()
        return cost

    return host_cost


class Placement:
    """Which CPUs each party runs on (`pinned`), or none pinned but the host (`free`).

    Affinity is per thread: a thread started before its process was pinned keeps the CPUs it
    had. So every thread of a party is pinned (each task in /proc/PID/task), and `describe`
    reports, thread by thread, where each party's threads were allowed to run when measured."""

    def __init__(self, kind: str) -> None:
        from ionpilot.drivers.host import host_cpu

        measured = host_cpu("auto")  # the CPU the driver host pins itself to
        self.kind = kind if measured is not None else "free"  # one CPU: nothing to place
        allowed = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set()
        self.everything = allowed
        self.measured = {measured} if measured is not None else allowed
        self.others = (allowed - self.measured) or allowed
        self.seen: dict[str, list[dict[str, Any]]] = {}  # party -> its threads when measured

    def _pin(self, pid: int, cpus: set[int]) -> None:
        """Every thread of process `pid` (0: this one) on `cpus`, new threads included."""
        if self.kind == "pinned" and cpus:
            for tid in process_threads(pid or os.getpid()):
                with contextlib.suppress(ProcessLookupError):  # a thread that just ended
                    os.sched_setaffinity(tid, cpus)

    def simulated_lab(self, pid: int) -> None:
        self._pin(pid, self.others)

    def bare_loop(self) -> None:
        """This process (its threads started after) on the measured CPU."""
        self._pin(0, self.measured)

    def unpin(self) -> None:
        self._pin(0, self.everything)

    def bus_client(self) -> None:
        """This process on the other CPUs, leaving the measured one to the host."""
        self._pin(0, self.others)

    def record(self, party: str, pid: int) -> None:
        """Note where every thread of `pid` may run now (called while a side is measured)."""
        self.seen[party] = thread_placement(pid)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind != "pinned":
            out["driver_host_cpu"] = sorted(self.measured)
        else:
            out["measured_side_cpu"] = sorted(self.measured)
            out["simulated_lab_and_client_cpus"] = sorted(self.others)
        out["threads"] = self.seen
        return out


def process_threads(pid: int) -> list[int]:
    """The thread ids of process `pid` (Linux /proc; just the process itself elsewhere)."""
    try:
        return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return [pid]


def thread_placement(pid: int) -> list[dict[str, Any]]:
    """[{tid, name, cpus}] for every thread of `pid`: the affinity each one has now."""
    out = []
    for tid in sorted(process_threads(pid)):
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            cpus = sorted(os.sched_getaffinity(tid))
        except OSError:  # ended meanwhile
            continue
        out.append({"tid": tid, "name": name, "cpus": cpus})
    return out


# ------------------------------------------------------------------------------ bare readers


class VisaReader:
    """Raw pyvisa-py queries, parsed to a number as the drivers do."""

    def __init__(self, address: str, term: str, banner: bool, prompt: bool) -> None:
        import pyvisa

        self._rm = pyvisa.ResourceManager("@py")
        inst: Any = self._rm.open_resource(address)
        inst.write_termination = term
        inst.read_termination = "\n" if prompt else term
        inst.timeout = 5000
        self._inst = inst
        self._prompt = prompt
        if banner:
            inst.read()

    def query(self, command: str) -> float:
        inst = self._inst
        inst.write(command)
        line = inst.read()
        if self._prompt:
            line = line.lstrip("> ")
        return float(line)

    def close(self) -> None:
        self._inst.close()


def _dlc_command(param: str) -> str:
    node = {"current": "dl:cc:current-set", "piezo_voltage": "dl:pc:voltage-set"}[param]
    return f"(param-ref 'laser1:{node})"


def _scpi_command(model: str, param: str) -> str:
    if model == "rs_smb100a":
        return {"frequency": "SOUR:FREQ?", "power": "SOUR:POW?", "output": "OUTP:STAT?"}[param]
    if model == "qdac2":  # chNN.voltage
        channel, name = param.split(".")
        assert name == "voltage"
        return f"sour{int(channel[2:])}:volt?"
    if model == "hmc8043":  # chN.measured_current
        channel, name = param.split(".")
        assert name == "measured_current"
        return f"INST:NSEL {int(channel[2:])};:MEAS:CURR?"
    if model == "bristol_871a":
        return {"frequency": ":MEAS:FREQ?", "wavelength": ":MEAS:WAV?"}[param]
    if model == "keysight_53230a":
        return {"frequency": "READ?"}[param]
    raise KeyError((model, param))


def bare_reader(model: str, address: str) -> tuple[Callable[[str], float], Callable[[], None]]:
    """(read(param) -> number, close) on a raw connection to one simulated instrument."""
    if model in ("rs_smb100a", "qdac2", "hmc8043", "keysight_53230a"):
        visa = VisaReader(address, "\n", banner=False, prompt=False)
        if model == "keysight_53230a":
            visa._inst.write("CONF:FREQ (@1)")
        return (lambda p: visa.query(_scpi_command(model, p))), visa.close
    if model == "bristol_871a":
        visa = VisaReader(address, "\r\n", banner=True, prompt=False)
        return (lambda p: visa.query(_scpi_command(model, p))), visa.close
    if model == "dlc_pro":
        visa = VisaReader(address, "\n", banner=True, prompt=True)
        return (lambda p: visa.query(_dlc_command(p))), visa.close
    if model == "thorlabs_sc10":
        import serial

        port = serial.serial_for_url(address, timeout=5)

        def sc10(param: str) -> float:
            port.write(b"ens?\r")
            reply = port.read_until(b"> ")
            return float(reply.split(b"\r")[1])

        return sc10, port.close
    if model == "menlo_fc1500":
        proxy = xmlrpc.client.ServerProxy(address)
        keys = {
            "repetition_rate": "reprate.freq",
            "offset_frequency": "offset.freq",
            "locked": "system.locked",
        }

        def comb(param: str) -> float:
            t: Any = proxy.data.last_timestamp()
            records: Any = proxy.data.query(t - 0.01, [keys[param]])  # {timestamp: record}
            return float(records[max(records, key=float)][keys[param]])

        return comb, proxy("close")
    if model == "ionpilot_pulser":
        host, port_text = address.removeprefix("tcp://").rsplit(":", 1)
        sock = socket.create_connection((host, int(port_text)), timeout=5)
        stream = sock.makefile("rb")
        ids = iter(range(1, 1 << 62))

        def pulser(param: str) -> float:
            request = {"id": next(ids), "op": "get_dds", "channel": "clock_aom"}
            sock.sendall(json.dumps(request).encode() + b"\n")
            reply = json.loads(stream.readline())
            return float(reply["result"]["frequency_hz"])

        def close() -> None:
            stream.close()
            sock.close()

        return pulser, close
    raise KeyError(model)


def bare_run(
    reads: dict[str, tuple[str, str, list[str]]],
    seconds: float,
    started: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """One thread per instrument reading its parameters round-robin for `seconds`; `started`
    is called once every reader thread runs."""
    counts = dict.fromkeys(reads, 0)
    errors: list[str] = []
    start = threading.Barrier(len(reads) + 1)
    stop_at = [0.0]

    def worker(name: str, model: str, address: str, params: list[str]) -> None:
        try:
            read, close = bare_reader(model, address)
        except Exception as exc:
            errors.append(f"{name}: {exc!r}")
            start.wait()
            return
        try:
            start.wait()
            n = 0
            while time.perf_counter() < stop_at[0]:
                read(params[n % len(params)])
                n += 1
            counts[name] = n
        except Exception as exc:
            errors.append(f"{name}: {exc!r}")
        finally:
            close()

    threads = [
        threading.Thread(target=worker, args=(name, *spec), daemon=True)
        for name, spec in reads.items()
    ]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + 3600
    start.wait()
    t0, (cpu0, switches0) = time.perf_counter(), process_cost()
    stop_at[0] = t0 + seconds
    started()
    for t in threads:
        t.join(seconds + 30)
    elapsed = time.perf_counter() - t0
    cpu1, switches1 = process_cost()
    cpu, switches = cpu1 - cpu0, switches1 - switches0
    if errors:
        raise RuntimeError(f"bare loop failed: {errors}")
    total = sum(counts.values())
    return {
        "reads_per_s": total / elapsed,
        "cpu_us_per_read": 1e6 * cpu / max(1, total),
        "switches_per_read": switches / max(1, total),
        "per_instrument": counts,
    }


def host_run(
    endpoint: str,
    reads: dict[str, tuple[str, str, list[str]]],
    seconds: float,
    in_flight: int,
    host_cost: Callable[[], tuple[float, int]],
) -> dict[str, Any]:
    """`get` requests from one bus client, `in_flight` outstanding per instrument.

    The client is ionpilot's non-blocking `ClientCore` on a zmq poll loop: the cheapest client
    the bus has, so that on a small machine the client does not eat the CPU the host needs.
    """
    import zmq

    from ionpilot.bus.client import ClientCore
    from ionpilot.bus.settings import BusSettings

    core = ClientCore(BusSettings(), endpoint, name="bench")
    counts = dict.fromkeys(reads, 0)
    pending: dict[int, tuple[str, int]] = {}  # request id -> (instrument, sequence number)

    def send(name: str, n: int) -> None:
        params = reads[name][2]
        rid, payload = core.new_request(name, "get", {"name": params[n % len(params)]})
        pending[rid] = (name, n)
        core.submit(rid, payload)

    def drain(wait_ms: int, resend: bool) -> None:
        if core.socket.poll(wait_ms, zmq.POLLIN) == 0 and not core.has_outbox:
            return
        for reply in core.service():
            entry = pending.pop(reply.id, None) if reply.id is not None else None
            if entry is None:
                continue
            if not reply.ok:
                raise RuntimeError(f"{entry[0]}: {reply.code}: {reply.message}")
            name, n = entry
            counts[name] += 1
            if resend:
                send(name, n + in_flight)

    try:
        for name in reads:  # warm-up: every parameter once
            for k in range(len(reads[name][2])):
                send(name, k)
        while pending:
            drain(1000, resend=False)
        counts = dict.fromkeys(reads, 0)
        cpu0, switches0 = host_cost()
        t0 = time.perf_counter()
        stop_at = t0 + seconds
        for name in reads:
            for k in range(in_flight):
                send(name, k)
        while time.perf_counter() < stop_at:
            drain(100, resend=True)
        elapsed = time.perf_counter() - t0
        cpu1, switches1 = host_cost()
        cpu, switches = cpu1 - cpu0, switches1 - switches0
        while pending:  # let the last ones land (not counted)
            drain(1000, resend=False)
    finally:
        core.close()
    total = sum(counts.values())
    return {
        "reads_per_s": total / elapsed,
        "cpu_us_per_read": 1e6 * cpu / max(1, total),
        "switches_per_read": switches / max(1, total),
        "per_instrument": counts,
    }


# ---------------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each measurement")
    parser.add_argument("--in-flight", type=int, default=2, help="host: requests per instrument")
    parser.add_argument(
        "--placement",
        choices=("pinned", "free"),
        default="pinned",
        help="pinned: each measured side alone on one CPU (see the module docstring); "
        "free: only the host pinned, the scheduler places the rest",
    )
    parser.add_argument(
        "--bare-sched",
        choices=("default", "batch"),
        default="default",
        help="scheduling policy of the bare loop's threads: default (a plain program, the "
        "ceiling reported) or batch (the policy the driver host gives its own threads)",
    )
    args = parser.parse_args()
    placement = Placement(args.placement)

    reads = lab_reads()
    ctx = mp.get_context("spawn")
    sim_conn, sim_child = ctx.Pipe()
    sim = ctx.Process(target=sim_process, args=(sim_child,), daemon=True)
    sim.start()
    rounds: list[dict[str, Any]] = []
    try:
        resources: dict[str, str] = sim_conn.recv()
        assert sim.pid is not None
        placement.simulated_lab(sim.pid)
        addressed = {n: (m, resources[n], p) for n, (m, _a, p) in reads.items()}
        for r in range(args.rounds):
            result: dict[str, Any] = {}
            for kind in ("bare", "host") if r % 2 == 0 else ("host", "bare"):
                if kind == "bare":
                    placement.bare_loop()
                    policy = bare_policy(args.bare_sched)
                    result[kind] = bare_run(
                        addressed,
                        args.seconds,
                        lambda: placement.record("bare_loop", os.getpid()),
                    )
                    placement.record("simulated_lab", sim.pid)
                    if policy is not None:
                        os.sched_setscheduler(0, policy, os.sched_param(0))
                    continue
                placement.unpin()  # the host starts with every CPU and pins itself, as in the lab
                conn, child = ctx.Pipe()
                proc = ctx.Process(target=host_process, args=(child, resources), daemon=True)
                proc.start()
                placement.bus_client()
                try:
                    status, detail = conn.recv()
                    if status != "ready":
                        raise RuntimeError(f"driver host did not connect: {detail}")
                    result[kind] = host_run(
                        detail, addressed, args.seconds, args.in_flight, cpu_probe(conn)
                    )
                    assert proc.pid is not None
                    placement.record("driver_host", proc.pid)
                    placement.record("bench_client", os.getpid())
                    placement.record("simulated_lab", sim.pid)
                    conn.send("quit")
                finally:
                    proc.join(10)
                    if proc.is_alive():
                        proc.terminate()
                        proc.join(5)
            result["ratio"] = result["host"]["reads_per_s"] / result["bare"]["reads_per_s"]
            rounds.append(result)
            if not args.json:
                brief = {
                    k: [round(result[k]["reads_per_s"]), round(result[k]["cpu_us_per_read"], 1)]
                    for k in ("bare", "host")
                }
                print(
                    f"round {r + 1}: {json.dumps(brief)} ratio {result['ratio']:.3f}",
                    file=sys.stderr,
                )
        sim_conn.send("quit")
    finally:
        sim.join(10)
        if sim.is_alive():
            sim.terminate()
            sim.join(5)

    host_rate = statistics.median(r["host"]["reads_per_s"] for r in rounds)
    bare_rate = statistics.median(r["bare"]["reads_per_s"] for r in rounds)
    summary: dict[str, Any] = {
        "instruments": len(reads),
        "parameters": sum(len(p) for _m, _a, p in reads.values()),
        "rounds": args.rounds,
        "seconds": args.seconds,
        "in_flight_per_instrument": args.in_flight,
        "cpus": os.cpu_count(),
        "placement": placement.describe(),
        "bare_scheduling": args.bare_sched,
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "host_reads_per_s": round(host_rate, 1),
        "bare_reads_per_s": round(bare_rate, 1),
        "host_cpu_us_per_read": round(
            statistics.median(r["host"]["cpu_us_per_read"] for r in rounds), 1
        ),
        "bare_cpu_us_per_read": round(
            statistics.median(r["bare"]["cpu_us_per_read"] for r in rounds), 1
        ),
        "host_switches_per_read": round(
            statistics.median(r["host"]["switches_per_read"] for r in rounds), 2
        ),
        "bare_switches_per_read": round(
            statistics.median(r["bare"]["switches_per_read"] for r in rounds), 2
        ),
        "host_to_bare_ratio": round(statistics.median(r["ratio"] for r in rounds), 3),
        "target_ratio": TARGET_RATIO,
    }
    summary["host_to_bare_cpu_per_read"] = round(
        summary["host_cpu_us_per_read"] / summary["bare_cpu_us_per_read"], 2
    )
    summary["target_cpu_ratio"] = TARGET_CPU_RATIO
    summary["target_met"] = (
        summary["host_to_bare_ratio"] >= TARGET_RATIO
        and summary["host_to_bare_cpu_per_read"] <= TARGET_CPU_RATIO
    )
    summary["per_instrument_host_over_bare"] = {
        name: round(
            statistics.median(
                r["host"]["per_instrument"][name] / max(1, r["bare"]["per_instrument"][name])
                for r in rounds
            ),
            3,
        )
        for name in reads
    }
    print(json.dumps(summary) if args.json else json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
