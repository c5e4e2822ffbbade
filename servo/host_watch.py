"""The driver host's liveness as its own heartbeats tell it: `hb.<process>` arriving on the bus.

The health monitor pulls `last_beat_at()` at every evaluation (`HealthMonitor.feed`), so the
heartbeat signal is as fresh as the last beat, whatever the lock thread was doing in between.
"""

from __future__ import annotations

import threading

from ionpilot.bus.pubsub import Subscriber
from ionpilot.bus.settings import BusSettings
from ionpilot.core.clock import Clock

RECV_TIMEOUT_S = 0.2  # how often the thread looks at its stop flag


class HostWatch:
    """Listens to `hb.<process>` from its own thread and socket."""

    def __init__(self, bus: BusSettings, process: str, clock: Clock) -> None:
        self.process = process
        self._clock = clock
        self._sub = Subscriber(bus, prefixes=[f"hb.{process}"], clock=clock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{process}", daemon=True)

    def start(self) -> HostWatch:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sub.recv(timeout=RECV_TIMEOUT_S)  # the subscriber beats its liveness table

    def last_beat_at(self) -> float | None:
        """Clock time of the process's last heartbeat (None: none yet)."""
        age = self._sub.liveness.age(self.process)
        return None if age == float("inf") else self._clock.now() - age

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        self._sub.close()
