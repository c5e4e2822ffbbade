"""Bus benchmark: ionpilot against raw pyzmq + msgpack, measured in the same run.

(a) raw PUB -> zmq.proxy (XSUB/XPUB) -> SUB with msgpack, (b) ionpilot Publisher -> Hub ->
Subscriber: delivered messages per second when the publisher sends flat out, and latency
p50/p99 at 1 kHz and 10 kHz offered load; (c) command round trip, raw REQ/REP against
ionpilot's CommandClient/CommandServer. Publisher, proxy and server each run in a process of
their own (as in the lab). Each pub/sub measurement runs in `--segments` short runs per kind,
alternating raw and ionpilot run by run, and round trips alternate between the two clients in
blocks of 50, so whatever else runs on the machine loads both alike (one long run per kind let a
neighbour's burst decide the ratio: 0.33 to 0.90 with the same code); rounds repeat that and the
medians are reported; `load_avg_1min` (before, after) says how busy the machine was. Each
stage's CPU per delivered message (publisher, proxy, subscriber processes, from /proc) is
reported too: unlike the rates, it does not depend on what else the machine runs.
Proxies and servers bind port 0 and report the port they got (no free-port race). The raw
REQ client waits forever for its reply; ionpilot's waits with the per-call timeout (a timed
poll: about 2-3 us of each round trip on this machine), retries reads, checks every field.

    python bench/bus.py --json
    python bench/bus.py --json --curve   # both sides under CURVE; ionpilot's hub checks owners
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as MpEvent
from typing import Any

import msgpack
import zmq

HWM = 10_000
TOPIC = "tlm.rf_drive.frequency"
WARM = "tlm.bench.warmup"
END = "tlm.bench.end"
SRC = "drivers@labpc-01"
VALUE = 25_000_000.123456789
UNIT = "Hz"
RPC_TARGET = "rf_drive"
RPC_ARGS = {"name": "frequency"}


def bound_port(sock: zmq.Socket[bytes]) -> int:
    """The port a socket bound with `tcp://127.0.0.1:*` got (no free-port race)."""
    return int(sock.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1])


def sample_bytes() -> int:
    payload = msgpack.packb(
        {"seq": 1, "t": time.time_ns(), "src": SRC, "value": VALUE, "unit": UNIT, "status": "OK"}
    )
    return len(TOPIC) + len(payload)


CURVE_ENV = "IONPILOT_BENCH_CURVE"  # the key folder, when both sides run under CURVE


def curve_dir() -> str:
    return os.environ.get(CURVE_ENV, "")


def make_keys(folder: str) -> None:
    """A server pair and the bench's client identity (it publishes and calls)."""
    from ionpilot.bus.security import create_keypair

    for name in ("server", "bench"):
        create_keypair(folder, name)


def settings(pub_port: int, sub_port: int) -> Any:
    """Equal queues on both sides (HWM messages); under CURVE the lab's way: the bench's
    identity owns `tlm.`, so the hub checks every message's sender (its Python loop)."""
    from ionpilot.bus import BusSettings
    from ionpilot.bus.security import read_public_key
    from ionpilot.bus.settings import BusSecurity, CurveClient

    security = BusSecurity(curve=False)
    folder = curve_dir()
    if folder:
        security = BusSecurity(
            curve=True,
            server_public_key=read_public_key(f"{folder}/server.key"),
            server_key_file=f"{folder}/server.key_secret",
            client_key_file=f"{folder}/bench.key_secret",
            clients={"bench": CurveClient(read_public_key(f"{folder}/bench.key"), "operator")},
            owners={"bench": ("tlm.",)},
        )
    return BusSettings(
        publish_port=pub_port,
        subscribe_port=sub_port,
        high_water_mark=HWM,
        max_queued_bytes=HWM * 65_536,
        security=security,
    )


def raw_server_curve(ctx: zmq.Context[zmq.Socket[bytes]], *socks: zmq.Socket[bytes]) -> Any:
    """Raw pyzmq's own CURVE: a ZAP authenticator thread allowing the bench's public key."""
    folder = curve_dir()
    if not folder:
        return None
    import zmq.auth
    from zmq.auth.thread import ThreadAuthenticator

    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=folder)
    public, secret = zmq.auth.load_certificate(f"{folder}/server.key_secret")
    for sock in socks:
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.curve_server = True
    return auth


def raw_client_curve(sock: zmq.Socket[bytes]) -> None:
    folder = curve_dir()
    if not folder:
        return
    import zmq.auth

    server_public, _ = zmq.auth.load_certificate(f"{folder}/server.key")
    public, secret = zmq.auth.load_certificate(f"{folder}/bench.key_secret")
    sock.curve_serverkey = server_public
    sock.curve_publickey = public
    sock.curve_secretkey = secret


# ----------------------------------------------------------------------------- child processes


def raw_proxy(report: Connection) -> None:
    ctx = zmq.Context()
    xsub = ctx.socket(zmq.XSUB)
    xpub = ctx.socket(zmq.XPUB)
    for sock in (xsub, xpub):
        sock.setsockopt(zmq.SNDHWM, HWM)
        sock.setsockopt(zmq.RCVHWM, HWM)
    _auth = raw_server_curve(ctx, xsub, xpub)
    xsub.bind("tcp://127.0.0.1:*")
    xpub.bind("tcp://127.0.0.1:*")
    report.send((bound_port(xsub), bound_port(xpub)))
    zmq.proxy(xsub, xpub)


def ionpilot_hub(report: Connection) -> None:
    from ionpilot.bus import Hub

    hub = Hub(settings(0, 0)).start()
    report.send(
        (
            int(hub.publish_endpoint.rsplit(":", 1)[1]),
            int(hub.subscribe_endpoint.rsplit(":", 1)[1]),
        )
    )
    while True:
        time.sleep(3600)


def pace(period: float, next_t: float) -> float:
    """Wait until `next_t` (sleeping, so the other processes keep the CPUs); next deadline."""
    delay = next_t - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
    return next_t + period


def publisher(kind: str, pub_port: int, conn: Connection, go: MpEvent, done: MpEvent) -> None:
    """Serves runs: ("run", n, rate_hz) -> warm up until `go`, send n samples, end markers."""
    if kind == "raw":
        ctx = zmq.Context()
        sock = ctx.socket(zmq.PUB)
        sock.setsockopt(zmq.SNDHWM, HWM)
        raw_client_curve(sock)
        sock.connect(f"tcp://127.0.0.1:{pub_port}")
        packb = msgpack.packb
        time_ns = time.time_ns
        topic_b, warm_b, end_b = TOPIC.encode(), WARM.encode(), END.encode()
        sample = {"seq": 0, "t": 0, "src": SRC, "value": VALUE, "unit": UNIT, "status": "OK"}

        def send_raw(n: int, rate: float) -> None:
            send = sock.send_multipart
            if rate <= 0:
                for i in range(1, n + 1):
                    sample["seq"] = i
                    sample["t"] = time_ns()
                    send([topic_b, packb(sample)])
                return
            period = 1.0 / rate
            next_t = time.perf_counter()
            for i in range(1, n + 1):
                next_t = pace(period, next_t)
                sample["seq"] = i
                sample["t"] = time_ns()
                send([topic_b, packb(sample)])

        def marker(topic: bytes) -> None:
            sample["t"] = time_ns()
            sock.send_multipart([topic, packb(sample)])

        send_run = send_raw

        def warm() -> None:
            marker(warm_b)

        def end() -> None:
            marker(end_b)
    else:
        from ionpilot.bus import Publisher

        pub = Publisher(settings(pub_port, 0), SRC, send_hwm=HWM)

        def send_ionpilot(n: int, rate: float) -> None:
            publish = pub.publish
            if rate <= 0:
                for _ in range(n):
                    publish(TOPIC, VALUE, UNIT)
                return
            period = 1.0 / rate
            next_t = time.perf_counter()
            for _ in range(n):
                next_t = pace(period, next_t)
                publish(TOPIC, VALUE, UNIT)

        send_run = send_ionpilot

        def warm() -> None:
            pub.publish(WARM, 0)

        def end() -> None:
            pub.publish(END, 0)

    while True:
        cmd = conn.recv()
        if cmd[0] == "quit":
            return
        _, n, rate = cmd
        while not go.is_set():
            warm()
            go.wait(0.002)
        send_run(n, rate)
        while not done.is_set():
            end()
            done.wait(0.002)
        conn.send("ok")


def raw_rep_server(report: Connection) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REP)
    _auth = raw_server_curve(ctx, sock)
    sock.bind("tcp://127.0.0.1:*")
    report.send(bound_port(sock))
    packb, unpackb = msgpack.packb, msgpack.unpackb
    while True:
        request = unpackb(sock.recv())
        sock.send(packb({"id": request["id"], "ok": True, "value": VALUE}))


def ionpilot_server(report: Connection) -> None:
    from ionpilot.bus import BusSettings, CommandServer

    server = CommandServer("drivers", settings(0, 0) if curve_dir() else BusSettings())
    endpoint = server.bind("tcp://127.0.0.1:0")
    report.send(int(endpoint.rsplit(":", 1)[1]))
    server.register(RPC_TARGET, "get", lambda request: VALUE, inline=True)
    server.start()
    while True:
        time.sleep(3600)


# ---------------------------------------------------------------------------------- parent side


class RawSub:
    def __init__(self, port: int) -> None:
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, HWM)
        raw_client_curve(self.sock)
        self.sock.connect(f"tcp://127.0.0.1:{port}")
        self.sock.setsockopt(zmq.SUBSCRIBE, b"tlm.")

    def run(self, go: MpEvent, latency: bool) -> tuple[int, float, list[int]]:
        recv, unpackb, time_ns = self.sock.recv_multipart, msgpack.unpackb, time.time_ns
        topic_b, end_b = TOPIC.encode(), END.encode()
        count, first, last, lat = 0, 0.0, 0.0, []
        while True:
            topic, payload = recv()
            msg = unpackb(payload)
            if topic == topic_b:
                if latency:
                    lat.append(time_ns() - msg["t"])
                last = time.perf_counter()
                if not count:
                    first = last
                count += 1
            elif topic == end_b:
                if count:
                    return count, last - first, lat
            else:
                go.set()


class IonpilotSub:
    def __init__(self, port: int) -> None:
        from ionpilot.bus import Subscriber

        self.sub = Subscriber(settings(0, port), ["tlm."], recv_hwm=HWM)

    def run(self, go: MpEvent, latency: bool) -> tuple[int, float, list[int]]:
        recv, time_ns = self.sub.recv, time.time_ns
        count, first, last, lat = 0, 0.0, 0.0, []
        while True:
            msg = recv()
            assert msg is not None
            topic = msg.topic
            if topic == TOPIC:
                if latency:
                    lat.append(time_ns() - msg.t)
                last = time.perf_counter()
                if not count:
                    first = last
                count += 1
            elif topic == END:
                if count:
                    return count, last - first, lat
            else:
                go.set()


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of process `pid` so far (ns; /proc's scheduler statistics):
    what the proxy costs per message, whatever else loads the machine."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
                total += int(stat.read().split()[0])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            pass  # a thread that just ended
    return total


Stage = tuple[Any, Connection, MpEvent, MpEvent, dict[str, int]]  # sub, pub pipe, go, done, pids


def pubsub_segment(
    stage: Stage, n: int, rate: float
) -> tuple[int, float, list[int], dict[str, int]]:
    """One run of `n` messages at `rate` Hz (0: flat out): (received, span s, latencies ns,
    CPU ns of each stage's process: publisher, proxy, subscriber, all their threads, ZeroMQ's
    I/O threads included)."""
    sub, conn, go, done, pids = stage
    go.clear()
    done.clear()
    conn.send(("run", n, rate))
    stages = {"pub": pids["pub"], "proxy": pids["proxy"], "sub": os.getpid()}
    cpu_before = {name: cpu_ns(pid) for name, pid in stages.items()}
    count, span, lat = sub.run(go, latency=rate > 0)
    cpu = {name: cpu_ns(pid) - cpu_before[name] for name, pid in stages.items()}
    done.set()
    conn.recv()
    return count, span, lat, cpu


def pubsub_run(
    stages: dict[str, Stage], order: tuple[str, ...], n: int, rate: float, segments: int
) -> dict[str, dict[str, float]]:
    """`n` messages per kind in `segments` runs, alternating the kinds run by run (the first
    kind swapping every other pair), so both see the same load from whatever else the
    machine runs; rates and CPU over all segments, percentiles over all latencies."""
    size = max(1, n // segments)
    totals = {kind: {"count": 0, "span": 0.0, "sent": 0} for kind in order}
    lats: dict[str, list[int]] = {kind: [] for kind in order}
    cpus: dict[str, dict[str, int]] = {kind: {} for kind in order}
    for segment in range(segments):
        for kind in order if segment % 2 == 0 else order[::-1]:
            count, span, lat, cpu = pubsub_segment(stages[kind], size, rate)
            total = totals[kind]
            total["count"] += count
            total["span"] += span
            total["sent"] += size
            lats[kind].extend(lat)
            for name, ns in cpu.items():
                cpus[kind][name] = cpus[kind].get(name, 0) + ns
    out: dict[str, dict[str, float]] = {}
    for kind, total in totals.items():
        count, span = int(total["count"]), float(total["span"])
        figures = {
            "received": count,
            "lost": total["sent"] - count,
            "msgs_per_s": count / span if span else 0.0,
        }
        for name, ns in cpus[kind].items():
            figures[f"{name}_cpu_us_per_msg"] = ns / 1e3 / count if count else 0.0
        if lats[kind]:
            figures["p50_us"] = pct(lats[kind], 0.50) / 1e3
            figures["p99_us"] = pct(lats[kind], 0.99) / 1e3
        out[kind] = figures
    return out


RPC_BLOCK = 50  # round trips in a row before switching to the other client


def rpc_clients(
    ports: dict[str, int],
) -> tuple[dict[str, Callable[[int], None]], list[Callable[[], None]]]:
    """One round trip per call, for each kind: raw REQ/REP and ionpilot's client/server, with
    the same request map (id, method, target, args, client) and the same reply map."""
    sock = zmq.Context.instance().socket(zmq.REQ)
    raw_client_curve(sock)
    sock.connect(f"tcp://127.0.0.1:{ports['raw']}")
    packb, unpackb = msgpack.packb, msgpack.unpackb
    send, recv = sock.send, sock.recv

    def raw(i: int) -> None:
        send(
            packb(
                {
                    "id": i,
                    "method": "get",
                    "target": RPC_TARGET,
                    "args": RPC_ARGS,
                    "client": "bench",
                }
            )
        )
        reply = unpackb(recv())
        assert reply["ok"]

    from ionpilot.bus import BusSettings, CommandClient

    bus = settings(0, 0) if curve_dir() else BusSettings()
    client = CommandClient(bus, f"tcp://127.0.0.1:{ports['ionpilot']}", name="bench")
    call = client.request

    def ionpilot(i: int) -> None:
        reply = call(RPC_TARGET, "get", RPC_ARGS)
        assert reply.ok, reply

    return {"raw": raw, "ionpilot": ionpilot}, [sock.close, client.close]


def rpc_run(ports: dict[str, int], n: int) -> dict[str, dict[str, float]]:
    """`n` round trips per kind after 200 of warm-up each, interleaved in blocks of RPC_BLOCK
    so both kinds see the same load from whatever else runs on the machine."""
    clients, closers = rpc_clients(ports)
    perf = time.perf_counter_ns
    times: dict[str, list[float]] = {kind: [] for kind in clients}
    for call in clients.values():
        for i in range(200):
            call(i)
    order = list(clients)
    for block in range(0, n, RPC_BLOCK):
        for kind in order if block // RPC_BLOCK % 2 == 0 else order[::-1]:
            call, out = clients[kind], times[kind]
            for i in range(block, min(n, block + RPC_BLOCK)):
                t0 = perf()
                call(i)
                out.append(perf() - t0)
    for close in closers:
        close()
    return {
        kind: {"p50_us": pct(t, 0.5) / 1e3, "p99_us": pct(t, 0.99) / 1e3}
        for kind, t in times.items()
    }


def med(rounds: list[dict[str, Any]], *path: str) -> float:
    values = []
    for r in rounds:
        v: Any = r
        for key in path:
            v = v[key]
        values.append(float(v))
    return statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--burst", type=int, default=100_000, help="messages per throughput run")
    parser.add_argument("--rpc", type=int, default=3000, help="round trips per RPC run")
    parser.add_argument(
        "--segments",
        type=int,
        default=10,
        help="pub/sub runs per measurement and kind, alternating raw and ionpilot",
    )
    parser.add_argument(
        "--rpc-only", action="store_true", help="measure only the command round trips"
    )
    parser.add_argument(
        "--curve",
        action="store_true",
        help="both sides under CURVE (ionpilot: the lab's way, its hub checking topic owners)",
    )
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    if args.curve:
        import tempfile

        folder = tempfile.mkdtemp(prefix="ionpilot-bench-keys-")
        make_keys(folder)
        os.environ[CURVE_ENV] = folder  # spawned children inherit it

    ctx = mp.get_context("spawn")
    procs: list[Any] = []
    kinds = ("raw", "ionpilot")
    subs: dict[str, Any] = {}
    pubs: dict[str, tuple[Connection, MpEvent, MpEvent]] = {}
    rpc_ports: dict[str, int] = {}
    stage_pids: dict[str, dict[str, int]] = {}
    try:
        for kind in kinds:  # proxies and servers bind port 0 and report what they got
            proxy = raw_proxy if kind == "raw" else ionpilot_hub
            server = raw_rep_server if kind == "raw" else ionpilot_server
            proxy_ports, proxy_report = ctx.Pipe(duplex=False)
            server_port, server_report = ctx.Pipe(duplex=False)
            started = [
                ctx.Process(target=proxy, args=(proxy_report,), daemon=True),
                ctx.Process(target=server, args=(server_report,), daemon=True),
            ]
            for p in started:
                p.start()
            procs.extend(started)
            proxy_pid = started[0].pid
            assert proxy_pid is not None  # started
            stage_pids[kind] = {"proxy": proxy_pid}
            for conn in (proxy_ports, server_port):
                if not conn.poll(60):
                    raise RuntimeError(f"the {kind} proxy or server did not start")
            pub_port, sub_port = proxy_ports.recv()
            rpc_ports[kind] = server_port.recv()
            parent_conn, child_conn = ctx.Pipe()
            go, done = ctx.Event(), ctx.Event()
            pub = ctx.Process(
                target=publisher, args=(kind, pub_port, child_conn, go, done), daemon=True
            )
            pub.start()
            procs.append(pub)
            assert pub.pid is not None  # started
            stage_pids[kind]["pub"] = pub.pid
            subs[kind] = RawSub(sub_port) if kind == "raw" else IonpilotSub(sub_port)
            pubs[kind] = (parent_conn, go, done)

        rounds: list[dict[str, Any]] = []
        stages: dict[str, Stage] = {
            kind: (subs[kind], *pubs[kind], stage_pids[kind]) for kind in kinds
        }
        for r in range(args.rounds):
            result: dict[str, Any] = {kind: {} for kind in kinds}
            order = kinds if r % 2 == 0 else kinds[::-1]
            if not args.rpc_only:
                for name, n, rate in (
                    ("throughput", args.burst, 0.0),
                    ("lat_1khz", 3000, 1000.0),
                    ("lat_10khz", 10_000, 10_000.0),
                ):
                    for kind, figures in pubsub_run(stages, order, n, rate, args.segments).items():
                        result[kind][name] = figures
            for kind, figures in rpc_run(rpc_ports, args.rpc).items():
                result[kind]["rpc"] = figures
            rounds.append(result)
            if not args.json:
                print(f"round {r + 1}: {json.dumps(result)}", file=sys.stderr)
        for kind in kinds:
            pubs[kind][0].send(("quit",))
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(5)

    def ratio(*path: str) -> float:
        return statistics.median(
            [float(_get(r["ionpilot"], *path)) / float(_get(r["raw"], *path)) for r in rounds]
        )

    summary: dict[str, Any] = {
        "curve": bool(args.curve),
        "sample_bytes": sample_bytes(),
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "rpc_p99_ratio": ratio("rpc", "p99_us"),
        "rpc_p50_ratio": ratio("rpc", "p50_us"),
    }
    columns: dict[str, tuple[str, str]] = {
        "rpc_p50_us": ("rpc", "p50_us"),
        "rpc_p99_us": ("rpc", "p99_us"),
    }
    if not args.rpc_only:
        summary["throughput_ratio"] = ratio("throughput", "msgs_per_s")
        summary["latency_p99_ratio_1khz"] = ratio("lat_1khz", "p99_us")
        summary["latency_p99_ratio_10khz"] = ratio("lat_10khz", "p99_us")
        for stage in ("pub", "proxy", "sub"):
            summary[f"{stage}_cpu_ratio"] = ratio("throughput", f"{stage}_cpu_us_per_msg")
        columns = {
            "msgs_per_s": ("throughput", "msgs_per_s"),
            "pub_cpu_us_per_msg": ("throughput", "pub_cpu_us_per_msg"),
            "proxy_cpu_us_per_msg": ("throughput", "proxy_cpu_us_per_msg"),
            "sub_cpu_us_per_msg": ("throughput", "sub_cpu_us_per_msg"),
            "proxy_cpu_us_per_msg_10khz": ("lat_10khz", "proxy_cpu_us_per_msg"),
            "lost_of_burst": ("throughput", "lost"),
            "p50_us_1khz": ("lat_1khz", "p50_us"),
            "p99_us_1khz": ("lat_1khz", "p99_us"),
            "p50_us_10khz": ("lat_10khz", "p50_us"),
            "p99_us_10khz": ("lat_10khz", "p99_us"),
            **columns,
        }
    for kind in kinds:
        summary[kind] = {name: med(rounds, kind, *path) for name, path in columns.items()}
    summary["targets_met"] = (
        summary.get("throughput_ratio", 1.0) >= 0.8
        and summary.get("latency_p99_ratio_1khz", 1.0) <= 1.5
        and summary.get("latency_p99_ratio_10khz", 1.0) <= 1.5
        and summary["rpc_p99_ratio"] <= (1.5 if args.curve else 1.3)
    )
    if args.json:
        print(json.dumps(summary))
    else:
        print(json.dumps(summary, indent=2))
    return 0


def _get(d: dict[str, Any], *path: str) -> Any:
    for key in path:
        d = d[key]
    return d


if __name__ == "__main__":
    sys.exit(main())
