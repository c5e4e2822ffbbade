"""The console's one link to the lab: a subscriber drained on the Qt thread and command clients.

Nothing here blocks the event loop: the subscriber's FD is watched by a `QSocketNotifier`
(`ionpilot.gui.busqt` drains it until empty on every edge), commands go through `QtCommandClient`
and answer through callbacks. The link is "connected" while messages arrive (every process beats
once a second); after `stale_after` seconds of silence it is "disconnected" and the subscriber
is rebuilt with capped back-off until the hub answers again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import zmq
from PyQt6.QtCore import QObject, QTimer, pyqtSignal

from ionpilot.bus.codec import BusError, ErrorCode, Reply, Value
from ionpilot.bus.directory import Directory
from ionpilot.bus.pubsub import Subscriber
from ionpilot.bus.settings import BusSettings
from ionpilot.core.backoff import Backoff
from ionpilot.gui.busqt import QtCommandClient, QtSubscriber
from ionpilot.gui.store import LabStore

ReplyCallback = Callable[[Reply], None]

CONNECTING = "connecting"
CONNECTED = "connected"
DISCONNECTED = "disconnected"


class BusConnection(QObject):
    """Feeds a `LabStore` from the hub and sends commands to the processes of a `Directory`."""

    state_changed = pyqtSignal(str)

    def __init__(
        self,
        settings: BusSettings,
        directory: Directory | None,
        store: LabStore,
        *,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        client_name: str = "gui",
        check_period_s: float = 0.25,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        self.directory = directory
        self.store = store
        self.stale_after = settings.stale_after
        self._context = context or zmq.Context.instance()
        self._client_name = client_name
        self._clients: dict[str, QtCommandClient] = {}
        self._subscriber: Subscriber | None = None
        self._watcher: QtSubscriber | None = None
        self.state = CONNECTING
        self.state_since = time.monotonic()
        self.reconnects = 0
        self._backoff = Backoff(initial=1.0, maximum=10.0)
        self._next_rebuild = math.inf
        self.rate = 0.0  # messages per second, smoothed
        self._rate_mark = (time.monotonic(), 0)
        self._timer = QTimer(self)
        self._timer.setInterval(max(10, round(check_period_s * 1000)))
        self._timer.timeout.connect(self._check)

    # ---------------------------------------------------------------------------- lifecycle

    def start(self) -> BusConnection:
        self._open_subscriber()
        self._timer.start()
        return self

    def _open_subscriber(self) -> None:
        self._close_subscriber()
        self._subscriber = Subscriber(self.settings, prefixes=("",), context=self._context)
        self._watcher = QtSubscriber(self._subscriber, self.store.ingest, parent=self)

    def _close_subscriber(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
            self._watcher.deleteLater()
            self._watcher = None
        if self._subscriber is not None:
            self._subscriber.close()
            self._subscriber = None

    def close(self) -> None:
        self._timer.stop()
        self._close_subscriber()
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    # ------------------------------------------------------------------------- connection

    def _check(self) -> None:
        now = time.monotonic()
        mark_t, mark_n = self._rate_mark
        if now - mark_t >= 1.0:
            self.rate = (self.store.messages - mark_n) / (now - mark_t)
            self._rate_mark = (now, self.store.messages)
        silent = self.store.silence() > self.stale_after
        if silent and self._watcher is not None and self._watcher.service():
            # the console's own thread was busy (a long repaint): the messages were waiting in
            # the socket, the bus was not silent; read them before judging it
            silent = self.store.silence() > self.stale_after
        started_long_ago = now - self.state_since > self.stale_after
        if not silent:
            if self.state != CONNECTED:
                self._backoff.reset()
                self._next_rebuild = math.inf
                self._set_state(CONNECTED)
        elif self.state == CONNECTED or (self.state == CONNECTING and started_long_ago):
            self._set_state(DISCONNECTED)
            self._next_rebuild = now + self._backoff.next_delay()
        elif self.state == DISCONNECTED and now >= self._next_rebuild:
            # ZeroMQ reconnects by itself; a fresh socket also covers a hub that came back
            # different (new process, stale peer state) at the same address
            self.reconnects += 1
            self._open_subscriber()
            self._next_rebuild = now + self._backoff.next_delay()

    def _set_state(self, state: str) -> None:
        self.state = state
        self.state_since = time.monotonic()
        self.state_changed.emit(state)

    def seconds_to_retry(self) -> float:
        return max(0.0, self._next_rebuild - time.monotonic())

    # ---------------------------------------------------------------------------- commands

    def targets(self) -> list[str]:
        return [] if self.directory is None else self.directory.targets()

    def instruments(self) -> list[str]:
        """Targets owned by a process (not processes themselves)."""
        if self.directory is None:
            return []
        d = self.directory
        return [t for t in d.targets() if d.process_of(t) != t]

    def serves(self, target: str) -> bool:
        return target in self.targets()

    def request(
        self,
        target: str,
        method: str,
        args: dict[str, Value] | None,
        callback: ReplyCallback,
        *,
        timeout: float | None = None,
    ) -> None:
        """Send a command; `callback(reply)` runs later on the GUI thread, also on failure."""
        try:
            if self.directory is None:
                raise BusError(ErrorCode.UNKNOWN_TARGET, f"{target!r}: the console has no lab file")
            endpoint = self.directory.resolve(target)
        except BusError as exc:
            failure = Reply.failure(None, exc.code, exc.message)
            QTimer.singleShot(0, lambda: callback(failure))
            return
        client = self._clients.get(endpoint)
        if client is None:
            client = self._clients[endpoint] = QtCommandClient(
                self.settings,
                endpoint,
                context=self._context,
                name=self._client_name,
                parent=self,
            )
        client.request(target, method, args, callback, timeout=timeout)


def describe_reply(reply: Reply) -> str:
    """A refusal exactly as the bus gave it: `code: message`."""
    return f"{reply.code}: {reply.message}"
