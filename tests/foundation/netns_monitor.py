"""The script host of the namespace test: a keyed operator on its own "machine" that watches
the bus and talks to the daemon and the driver host, answering one JSON line per stdin line
(`status`, `set <dBm>`, `get`). Run as `python netns_monitor.py LAB`."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

from ionpilot.bus import CommandClient, Subscriber
from ionpilot.bus.codec import Telemetry
from ionpilot.bus.directory import Directory
from ionpilot.config import load_config


def main() -> int:
    config = load_config(sys.argv[1])
    directory = Directory.from_config(config.bus.host, config.processes, config.instruments)
    daemon = CommandClient(config.bus, directory.resolve("daemon"), name="netns-script")
    drivers = CommandClient(config.bus, directory.resolve("rf_drive"), name="netns-script")
    sub = Subscriber(config.bus, ["tlm.rf_drive.", "hb.", "hub."])
    lock = threading.Lock()
    seen: dict[str, Any] = {"tlm": 0, "last_tlm": 0.0, "max_silence_s": 0.0, "dropped": {}}

    def watch() -> None:
        while True:
            msg = sub.recv(timeout=0.2)
            now = time.monotonic()
            with lock:
                if isinstance(msg, Telemetry) and msg.topic.startswith("tlm."):
                    if seen["last_tlm"]:
                        silence = now - seen["last_tlm"]
                        seen["max_silence_s"] = max(seen["max_silence_s"], silence)
                    seen["tlm"] += 1
                    seen["last_tlm"] = now
                elif isinstance(msg, Telemetry) and msg.topic == "hub.dropped":
                    seen["dropped"] = msg.value

    threading.Thread(target=watch, daemon=True).start()
    for line in sys.stdin:
        verb, *rest = line.split()
        out: dict[str, Any] = {"verb": verb}
        if verb == "status":
            reply = daemon.request("daemon", "status", {}, timeout=2.0)
            out["daemon"] = reply.value if reply.ok else {"error": reply.code}
            with lock:
                out.update(seen)
                out["gaps"] = dict(sub.gaps)
                out["hb_age_drivers_s"] = sub.liveness.age("drivers")
        elif verb == "set":
            reply = drivers.request(
                "rf_drive", "set", {"name": "power", "value": float(rest[0])}, timeout=2.0
            )
            out.update(ok=reply.ok, code=reply.code)
        elif verb == "get":
            reply = drivers.request("rf_drive", "get", {"name": "power"}, timeout=2.0)
            out.update(ok=reply.ok, code=reply.code, message=reply.message)
            out["value"] = reply.value["value"] if reply.ok else None
        print(json.dumps(out, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
