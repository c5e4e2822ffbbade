"""The hub's own cost: CPU of its forwarding thread per message, under CURVE with topic owners.

A raw CURVE publisher process sends N messages (flat out, or paced at --rate Hz) through an
ionpilot `Hub` thread (or, with --raw, a `zmq.proxy` thread with pyzmq's ZAP authenticator) to
a raw CURVE subscriber process. The figure is the forwarding thread's CPU time (scheduler
statistics, /proc) over the messages the subscriber got: it does not depend on what else the
machine runs, unlike the rates of `bench/bus.py`.

    python bench/hub_cpu.py --json [--raw] [--rate 10000] [-n 50000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as MpEvent

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(__file__))
import bus as bench  # the same keys and settings as bench/bus.py


def publish(port: int, n: int, rate: float, folder: str, go: MpEvent) -> None:
    os.environ[bench.CURVE_ENV] = folder
    sock = zmq.Context().socket(zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, 2 * n)
    bench.raw_client_curve(sock)
    sock.connect(f"tcp://127.0.0.1:{port}")
    go.wait()
    sample = {"seq": 1, "t": 0, "src": "x", "value": 1.0, "unit": "Hz", "status": "OK"}
    payload = msgpack.packb(sample)
    period = 1.0 / rate if rate > 0 else 0.0
    next_t = time.perf_counter()
    for _ in range(n):
        if period:
            next_t = bench.pace(period, next_t)
        sock.send_multipart([b"tlm.rf_drive.frequency", payload])
    for _ in range(50):
        sock.send_multipart([b"tlm.end", payload])
        time.sleep(0.01)


def subscribe(port: int, n: int, folder: str, ready: MpEvent, out: Connection) -> None:
    os.environ[bench.CURVE_ENV] = folder
    sock = zmq.Context().socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 2 * n)
    bench.raw_client_curve(sock)
    sock.connect(f"tcp://127.0.0.1:{port}")
    sock.setsockopt(zmq.SUBSCRIBE, b"tlm.")
    time.sleep(1.0)  # joined (slow joiner) before the publisher starts
    ready.set()
    got, first, last = 0, 0.0, 0.0
    while True:
        topic, _ = sock.recv_multipart()
        if topic == b"tlm.end":
            break
        last = time.perf_counter()
        first = first or last
        got += 1
    out.send((got, got / (last - first) if last > first else 0.0))


def thread_cpu_ns(tid: int) -> int:
    with open(f"/proc/{os.getpid()}/task/{tid}/schedstat") as stat:
        return int(stat.read().split()[0])


def forwarding_thread(raw: bool) -> tuple[int, int, int]:
    """(thread id, publish port, subscribe port) of a running hub or raw proxy thread."""
    if raw:
        ctx = zmq.Context()
        xsub, xpub = ctx.socket(zmq.XSUB), ctx.socket(zmq.XPUB)
        for sock in (xsub, xpub):
            sock.setsockopt(zmq.SNDHWM, bench.HWM)
            sock.setsockopt(zmq.RCVHWM, bench.HWM)
        bench.raw_server_curve(ctx, xsub, xpub)
        xsub.bind("tcp://127.0.0.1:*")
        xpub.bind("tcp://127.0.0.1:*")
        thread = threading.Thread(target=zmq.proxy, args=(xsub, xpub), daemon=True)
        thread.start()
        assert thread.native_id is not None
        return thread.native_id, bench.bound_port(xsub), bench.bound_port(xpub)
    from ionpilot.bus import Hub

    hub = Hub(bench.settings(0, 0)).start()
    native = hub._thread.native_id if hub._thread is not None else None
    assert native is not None
    return (
        native,
        int(hub.publish_endpoint.rsplit(":", 1)[1]),
        int(hub.subscribe_endpoint.rsplit(":", 1)[1]),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50_000, help="messages")
    parser.add_argument("--rate", type=float, default=0.0, help="Hz (0: flat out)")
    parser.add_argument("--raw", action="store_true", help="zmq.proxy instead of the hub")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="ionpilot-bench-keys-")
    bench.make_keys(folder)
    os.environ[bench.CURVE_ENV] = folder
    tid, pub_port, sub_port = forwarding_thread(args.raw)
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    results, child_end = ctx.Pipe(duplex=False)
    sub = ctx.Process(target=subscribe, args=(sub_port, args.n, folder, go, child_end))
    pub = ctx.Process(target=publish, args=(pub_port, args.n, args.rate, folder, go))
    sub.start()
    pub.start()
    go.wait()
    before = thread_cpu_ns(tid)
    got, rate = results.recv()
    cpu = thread_cpu_ns(tid) - before
    pub.join(10)
    sub.join(10)
    out = {
        "proxy": "zmq.proxy" if args.raw else "ionpilot hub",
        "rate_hz": args.rate,
        "received": got,
        "msgs_per_s": round(rate),
        "thread_cpu_us_per_msg": round(cpu / 1e3 / max(got, 1), 2),
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
