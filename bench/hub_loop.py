"""Where the hub's per-message Python goes: its forwarding loop taken apart, variant by variant.

A raw CURVE publisher process sends flat out into an XSUB socket under ZAP (the hub's way: the
`User-Id` of each message names its sender); each variant forwards `-n` messages to an XPUB
with one subscriber and reports the CPU of its own thread per message. `bytes` is the floor
(no sender known: not allowed in the hub), `frame` adds the topic's Frame (its `more` flag),
`user` its `User-Id`, `hub` the verdict lookups and the clock read (the hub's own loop);
`rcvmore` takes the topic as bytes, reads `RCVMORE` and the `User-Id` from a payload Frame.

    python bench/hub_loop.py --json [-n 100000] [variant ...]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(__file__))
import bus as bench  # the same keys and settings as bench/bus.py

Sock = zmq.Socket[bytes]
NOBLOCK, MORE_NOBLOCK = int(zmq.NOBLOCK), int(zmq.SNDMORE | zmq.NOBLOCK)


def publish(port: int, n: int, folder: str) -> None:
    os.environ[bench.CURVE_ENV] = folder
    sock = zmq.Context().socket(zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, 0)
    bench.raw_client_curve(sock)
    sock.connect(f"tcp://127.0.0.1:{port}")
    time.sleep(0.5)  # joined before the first message
    payload = msgpack.packb({"seq": 1, "t": 0, "src": "x", "value": 1.0, "unit": "Hz"})
    for _ in range(n):
        sock.send(b"tlm.rf_drive.frequency", zmq.SNDMORE)
        sock.send(payload)
    time.sleep(60)  # the consumer ends this process once it has everything


def forward_bytes(xsub: Sock, xpub: Sock, n: int) -> None:
    recv, send = super(zmq.Socket, xsub).recv, super(zmq.Socket, xpub).send
    for _ in range(n):
        topic = recv(0, True)
        payload = recv(0, True)
        send(topic, MORE_NOBLOCK, True)
        send(payload, NOBLOCK, True)


def forward_frame(xsub: Sock, xpub: Sock, n: int) -> None:
    recv, send = super(zmq.Socket, xsub).recv, super(zmq.Socket, xpub).send
    for _ in range(n):
        first = recv(0, False)
        if not first.more:
            continue
        payload = recv(0, True)
        send(first.bytes, MORE_NOBLOCK, True)
        send(payload, NOBLOCK, True)


def forward_user(xsub: Sock, xpub: Sock, n: int) -> None:
    recv, send = super(zmq.Socket, xsub).recv, super(zmq.Socket, xpub).send
    users: set[str] = set()
    for _ in range(n):
        first = recv(0, False)
        if not first.more:
            continue
        payload = recv(0, True)
        users.add(first.get(b"User-Id"))
        send(first.bytes, MORE_NOBLOCK, True)
        send(payload, NOBLOCK, True)


def forward_hub(xsub: Sock, xpub: Sock, n: int) -> None:
    recv, send = super(zmq.Socket, xsub).recv, super(zmq.Socket, xpub).send
    verdicts: dict[str, dict[bytes, bool]] = {}
    monotonic, next_look = time.monotonic, 0.0
    for _ in range(n):
        now = monotonic()
        if now >= next_look:
            next_look = now + 0.01
        first = recv(0, False)
        if not first.more:
            continue
        payload = recv(0, True)
        user = first.get(b"User-Id")
        topic = first.bytes
        table = verdicts.get(user)
        if table is None:
            table = verdicts[user] = {}
        owned = table.get(topic)
        if owned is None:
            owned = table[topic] = topic.startswith(b"tlm.")
        if owned:
            send(topic, MORE_NOBLOCK, True)
            send(payload, NOBLOCK, True)


def forward_rcvmore(xsub: Sock, xpub: Sock, n: int) -> None:
    recv, send = super(zmq.Socket, xsub).recv, super(zmq.Socket, xpub).send
    get, rcvmore = super(zmq.Socket, xsub).get, int(zmq.RCVMORE)
    users: set[str] = set()
    for _ in range(n):
        topic = recv(0, True)
        if not get(rcvmore):
            continue
        payload = recv(0, False)
        users.add(payload.get(b"User-Id"))
        send(topic, MORE_NOBLOCK, True)
        send(payload.bytes, NOBLOCK, True)


VARIANTS: dict[str, Callable[[Sock, Sock, int], None]] = {
    "bytes": forward_bytes,
    "frame": forward_frame,
    "user": forward_user,
    "hub": forward_hub,
    "rcvmore": forward_rcvmore,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", help=f"any of {', '.join(VARIANTS)} (all)")
    parser.add_argument("-n", type=int, default=100_000, help="messages per variant and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    unknown = [name for name in args.variants if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    args.variants = args.variants or list(VARIANTS)
    from ionpilot.bus.security import ServerKeys, ZapHandler

    folder = tempfile.mkdtemp(prefix="ionpilot-bench-keys-")
    bench.make_keys(folder)
    os.environ[bench.CURVE_ENV] = folder
    keys = ServerKeys.from_settings(bench.settings(0, 0).security)
    ctx = zmq.Context()
    xsub, xpub, sub = ctx.socket(zmq.XSUB), ctx.socket(zmq.XPUB), ctx.socket(zmq.SUB)
    ZapHandler.register(ctx, "bench-hub-loop", keys.allowed)
    keys.apply(xsub, "bench-hub-loop")
    for sock in (xsub, xpub, sub):
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.SNDHWM, 0)
    xsub.bind("tcp://127.0.0.1:*")
    xpub.bind("inproc://bench-hub-loop")
    sub.connect("inproc://bench-hub-loop")
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    xsub.send(xpub.recv())  # the subscription, up to the publisher
    total = args.n * args.repeats * len(args.variants)
    publisher = mp.get_context("spawn").Process(
        target=publish, args=(bench.bound_port(xsub), total, folder), daemon=True
    )
    publisher.start()
    cpu: dict[str, list[float]] = {name: [] for name in args.variants}
    try:
        for _ in range(args.repeats):  # variants interleaved: the same load for each
            for name in args.variants:
                before = time.thread_time_ns()
                VARIANTS[name](xsub, xpub, args.n)
                cpu[name].append((time.thread_time_ns() - before) / 1e3 / args.n)
                while sub.poll(0):
                    sub.recv()
    finally:
        publisher.terminate()
        publisher.join(5)
        for sock in (xsub, xpub, sub):
            sock.close()
        ZapHandler.unregister(ctx, "bench-hub-loop")
    out = {
        "thread_cpu_us_per_msg": {
            name: round(statistics.median(values), 3) for name, values in cpu.items()
        },
        "runs": {name: [round(v, 3) for v in values] for name, values in cpu.items()},
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
