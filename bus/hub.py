"""The hub: ZeroMQ's own XSUB/XPUB proxy, so publishers and subscribers each know one address.

Runs in a thread of any process (tests, the supervisor) or as `ionpilot hub`. Its queues are
bounded by the high-water mark: a slow subscriber loses messages (and sees the gaps), it never
slows a publisher down.
"""

from __future__ import annotations

import secrets
import threading

import zmq

from ionpilot.bus.security import PUBLISHER_ROLES, SecurityError, ServerKeys, ZapHandler
from ionpilot.bus.settings import BusSettings


def endpoint(host: str, port: int) -> str:
    """`tcp://host:port`; port 0 means "any free port" when binding."""
    return f"tcp://{host}:{port if port else '*'}"


def hard_frame_limit(max_message_bytes: int) -> int:
    """Frame size at which ZeroMQ cuts a peer off: far above the decoders' bound, which answers
    (or counts) oversized frames, but a ceiling on the memory a hostile peer can make us hold."""
    return 16 * max_message_bytes + 65_536


class Hub:
    """An XSUB (publishers connect) / XPUB (subscribers connect) forwarder in a thread.

    With `settings.security.curve` on (or `keys` given) both sides take CURVE clients on the
    allow-list only: anyone listed may subscribe, operators and admins may publish.
    """

    def __init__(
        self,
        settings: BusSettings,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        *,
        keys: ServerKeys | None = None,
    ):
        if settings.high_water_mark <= 0:
            raise ValueError("high_water_mark must be positive (0 would mean unbounded queues)")
        if keys is None and settings.security.curve:
            keys = ServerKeys.from_settings(settings.security)
        self._keys = keys
        self._settings = settings
        self._context = context or zmq.Context.instance()
        self._control_endpoint = f"inproc://ionpilot-hub-{id(self):x}"
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.publish_endpoint = ""  # where publishers connect (resolved after start)
        self.subscribe_endpoint = ""  # where subscribers connect

    def start(self) -> Hub:
        """Bind both sockets and start forwarding; raises if a port cannot be bound."""
        self._thread = threading.Thread(target=self._run, name="ionpilot-hub", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        ctx = self._context
        s = self._settings
        xsub = ctx.socket(zmq.XSUB)
        xpub = ctx.socket(zmq.XPUB)
        control = ctx.socket(zmq.PAIR)
        domains: list[str] = []
        try:
            if self._keys is not None:
                token = secrets.token_hex(4)
                publishers = {
                    key: who for key, who in self._keys.allowed.items() if who[1] in PUBLISHER_ROLES
                }
                for sock, side, allowed in (
                    (xsub, "publish", publishers),
                    (xpub, "subscribe", self._keys.allowed),
                ):
                    domain = f"ionpilot-hub-{side}-{token}"
                    ZapHandler.register(ctx, domain, allowed)
                    domains.append(domain)
                    self._keys.apply(sock, domain)
            for sock in (xsub, xpub, control):
                sock.setsockopt(zmq.LINGER, 0)
            # A publisher sending frames beyond the bound is cut off here, before any subscriber.
            xsub.setsockopt(zmq.MAXMSGSIZE, s.max_message_bytes + 4096)
            xsub.setsockopt(zmq.RCVHWM, s.high_water_mark)
            xsub.setsockopt(zmq.SNDHWM, s.high_water_mark)
            xpub.setsockopt(zmq.SNDHWM, s.high_water_mark)
            xpub.setsockopt(zmq.RCVHWM, s.high_water_mark)
            xsub.bind(endpoint(s.host, s.publish_port))
            xpub.bind(endpoint(s.host, s.subscribe_port))
            control.bind(self._control_endpoint)
            self.publish_endpoint = xsub.getsockopt_string(zmq.LAST_ENDPOINT)
            self.subscribe_endpoint = xpub.getsockopt_string(zmq.LAST_ENDPOINT)
        except (zmq.ZMQError, SecurityError) as exc:
            self._error = (
                exc
                if isinstance(exc, SecurityError)
                else OSError(f"hub cannot bind on {s.host}: {exc}")
            )
            for sock in (xsub, xpub, control):
                sock.close()
            for domain in domains:
                ZapHandler.unregister(ctx, domain)
            self._ready.set()
            return
        self._ready.set()
        try:
            zmq.proxy_steerable(xsub, xpub, None, control)
        except zmq.ContextTerminated:
            pass
        finally:
            for sock in (xsub, xpub, control):
                sock.close()
            for domain in domains:
                ZapHandler.unregister(ctx, domain)

    def stop(self) -> None:
        """Stop forwarding and release the ports."""
        if self._thread is None or not self._thread.is_alive():
            return
        control = self._context.socket(zmq.PAIR)
        control.setsockopt(zmq.LINGER, 1000)
        control.connect(self._control_endpoint)
        control.send(b"TERMINATE")
        self._thread.join(5.0)
        control.close()

    def __enter__(self) -> Hub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
