"""Issue 19, finding 1: frames nested 1,100 deep to a command server and through the hub.

Prints the RSS growth of this process (server, hub and subscriber run in it) over N frames each;
the acceptance bound is 10 MB for 10,000.

    python bench/depth_bomb.py 10000
"""

from __future__ import annotations

import gc
import json
import os
import sys

import zmq

from ionpilot.bus import BusSettings, CommandServer, Hub, Publisher, Subscriber

DEEP = b"\x91" * 1100 + b"\xc0"


def rss() -> int:
    gc.collect()
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> int:
    frames = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    settings = BusSettings(publish_port=0, subscribe_port=0)
    server = CommandServer("victim", settings, context=ctx)
    server.bind("tcp://127.0.0.1:0")
    server.start()
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(server.endpoint)
    for _ in range(50):
        dealer.send(DEEP)
        dealer.recv()
    before = rss()
    for _ in range(frames):
        dealer.send(DEEP)
        dealer.recv()
    server_mb = (rss() - before) / 1e6
    hub = Hub(settings, ctx).start()
    ports = [int(e.rsplit(":", 1)[1]) for e in (hub.publish_endpoint, hub.subscribe_endpoint)]
    bus = BusSettings(publish_port=ports[0], subscribe_port=ports[1])
    sub = Subscriber(bus, ["tlm."], context=ctx)
    raw = ctx.socket(zmq.PUB)
    raw.connect(hub.publish_endpoint)
    pub = Publisher(bus, "probe", context=ctx)
    while sub.recv(timeout=0.05) is None:  # joined once a probe arrives
        pub.publish("tlm.probe.x", 1)
    before = rss()
    for sent in range(1, frames + 1):
        raw.send_multipart([b"tlm.forged.deep", DEEP])
        if sent % 500 == 0:
            sub.drain()
    while sub.recv(timeout=1.0) is not None:
        pass
    figures = {
        "frames": frames,
        "server_rss_growth_mb": round(server_mb, 2),
        "server_bad_frames": server.stats["bad_frames"],
        "hub_and_subscriber_rss_growth_mb": round((rss() - before) / 1e6, 2),
        "subscriber_bad_frames": sub.bad_frames,
    }
    print(json.dumps(figures))
    sys.stdout.flush()
    os._exit(0)  # sockets and threads go with the process


if __name__ == "__main__":
    sys.exit(main())
