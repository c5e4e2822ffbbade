"""The bus inside a Qt event loop: replies and messages delivered to callbacks on the GUI thread.

Imported only by the GUI (importing `ionpilot.bus` never imports Qt). ZeroMQ's FD is watched by
a `QSocketNotifier`; it is edge-triggered, so every notification (and every send) is followed
by servicing the socket until it reports nothing more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import zmq
from PyQt6 import sip
from PyQt6.QtCore import QObject, QSocketNotifier, QTimer

from ionpilot.bus.client import ClientCore
from ionpilot.bus.codec import BusError, Message, Reply, Value
from ionpilot.bus.pubsub import Subscriber
from ionpilot.bus.security import ClientKeys
from ionpilot.bus.settings import BusSettings

ReplyCallback = Callable[[Reply], None]


@dataclass
class _Pending:
    callback: ReplyCallback
    timer: QTimer
    payload: bytes
    attempts_left: int
    timeout: float
    attempts: int


class QtCommandClient(QObject):
    """Commands from the GUI thread without blocking it: `request(..., callback)`."""

    def __init__(
        self,
        settings: BusSettings,
        endpoint: str,
        *,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        name: str = "",
        parent: QObject | None = None,
        keys: ClientKeys | None = None,
    ) -> None:
        super().__init__(parent)
        self._settings = settings
        self._core = ClientCore(settings, endpoint, context=context, name=name, keys=keys)
        self._pending: dict[int, _Pending] = {}
        self._notifier = QSocketNotifier(
            sip.voidptr(self._core.fd), QSocketNotifier.Type.Read, self
        )
        self._notifier.activated.connect(self._service)

    def request(
        self,
        target: str,
        method: str,
        args: dict[str, Value] | None,
        callback: ReplyCallback,
        *,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> int | None:
        """Send a command; `callback(reply)` runs on this thread later (also on failure)."""
        core = self._core
        timeout = self._settings.request_timeout if timeout is None else timeout
        attempts = core.attempts(method, retries)
        try:
            rid, payload = core.new_request(target, method, args, timeout)
            core.submit(rid, payload)
        except BusError as exc:
            failure = Reply.failure(None, exc.code, exc.message)
            QTimer.singleShot(0, lambda: callback(failure))
            return None
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.timeout.connect(lambda: self._expire(rid))
        self._pending[rid] = _Pending(callback, timer, payload, attempts - 1, timeout, attempts)
        timer.start(max(1, round(timeout * 1000)))
        QTimer.singleShot(0, self._service)  # edge-triggered FD: look once after sending
        return rid

    def _service(self, *_: object) -> None:
        for reply in self._core.service():
            pending = self._pending.pop(reply.id, None) if reply.id is not None else None
            if pending is not None:
                pending.timer.stop()
                pending.timer.deleteLater()
                pending.callback(reply)

    def _expire(self, rid: int) -> None:
        pending = self._pending.get(rid)
        if pending is None:
            return
        self._core.cancel(rid)
        if pending.attempts_left > 0:
            pending.attempts_left -= 1
            try:
                self._core.submit(rid, pending.payload)
            except BusError:
                pass
            else:
                pending.timer.start()
                self._service()
                return
        del self._pending[rid]
        pending.timer.deleteLater()
        pending.callback(self._core.timeout_reply(rid, pending.timeout, pending.attempts))

    @property
    def pending(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        self._notifier.setEnabled(False)
        for pending in self._pending.values():
            pending.timer.stop()
        self._pending.clear()
        self._core.close()


class QtSubscriber(QObject):
    """Delivers a `Subscriber`'s messages to `callback` on the GUI thread, as they arrive."""

    def __init__(
        self,
        subscriber: Subscriber,
        callback: Callable[[Message], None],
        *,
        batch: int = 2000,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.subscriber = subscriber
        self._callback = callback
        self._batch = batch
        self._notifier = QSocketNotifier(
            sip.voidptr(subscriber.fd), QSocketNotifier.Type.Read, self
        )
        self._notifier.activated.connect(self._service)
        QTimer.singleShot(0, self._service)

    def _service(self, *_: object) -> None:
        self.service()

    def service(self) -> int:
        """Deliver what is waiting now (up to one batch); how many were delivered."""
        messages = self.subscriber.drain(self._batch)
        for msg in messages:
            self._callback(msg)
        if len(messages) >= self._batch:  # more waiting: let the GUI paint, then continue
            QTimer.singleShot(0, self._service)
        return len(messages)

    def close(self) -> None:
        self._notifier.setEnabled(False)
