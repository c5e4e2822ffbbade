"""The driver hosts' liveness as their own heartbeats tell it: `hb.<process>` arriving on the bus.

One subscriber and thread for every driver host the lab file declares. The health monitor pulls
`last_beat_at(host)` at every evaluation (`HealthMonitor.feed`), so each host's heartbeat signal
is as fresh as its last beat, whatever the lock thread was doing in between.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from ionpilot.bus.pubsub import Subscriber
from ionpilot.bus.settings import BusSettings
from ionpilot.core.clock import Clock

RECV_TIMEOUT_S = 0.2  # how often the thread looks at its stop flag


class HostWatch:
    """Listens to `hb.<process>` of each process in `processes` from its own thread and socket."""

    def __init__(self, bus: BusSettings, processes: str | Iterable[str], clock: Clock) -> None:
        names = [processes] if isinstance(processes, str) else list(dict.fromkeys(processes))
        if not names:
            raise ValueError("HostWatch needs at least one process to watch")
        self.processes = tuple(names)
        self._clock = clock
        # `hb.drivers` would also match `hb.drivers2`: the liveness table keys by exact source
        self._sub = Subscriber(bus, prefixes=[f"hb.{name}" for name in names], clock=clock)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"watch-{'+'.join(names)}"[:64], daemon=True
        )

    @property
    def process(self) -> str:
        """The first (the daemon's own) driver host."""
        return self.processes[0]

    def start(self) -> HostWatch:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sub.recv(timeout=RECV_TIMEOUT_S)  # the subscriber beats its liveness table

    def last_beat_at(self, process: str | None = None) -> float | None:
        """Clock time of the process's last heartbeat (None: none yet); default: the first."""
        age = self._sub.liveness.age(process or self.processes[0])
        return None if age == float("inf") else self._clock.now() - age

    def feed_of(self, process: str) -> Callable[[], float | None]:
        """`last_beat_at` of one process, for `HealthMonitor.feed`."""
        if process not in self.processes:
            raise ValueError(f"{process} is not watched (watching {', '.join(self.processes)})")
        return lambda: self.last_beat_at(process)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        self._sub.close()
