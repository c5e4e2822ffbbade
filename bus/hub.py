"""The hub: an XSUB/XPUB forwarder, so publishers and subscribers each know one address.

Runs in a thread of any process (tests, the supervisor) or as `ionpilot hub`. Its queues are
bounded in messages by the high-water mark and in bytes by the largest message it forwards
(`BusSettings.pubsub_hwm`): a slow subscriber loses messages (and sees the gaps), it never
slows a publisher down nor grows the hub past `max_queued_bytes` per subscriber.

With topic owners (the lab's own keys, `BusSecurity.owners`) the hub forwards each message only
if its CURVE-authenticated sender owns the topic; anything else is dropped and counted per
sender (`dropped`), and the counts go out on `hub.dropped` (which no publisher may send). This
loop is Python (ZeroMQ's C proxy cannot look at a message's sender); without owners the C
proxy forwards as before.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Mapping

import zmq

from ionpilot.bus.codec import Codec
from ionpilot.bus.security import PUBLISHER_ROLES, SecurityError, ServerKeys, ZapHandler
from ionpilot.bus.settings import BusSettings, check_served_securely
from ionpilot.bus.wire import keep_alive

LOOK_S = 0.01  # how often the owner-checking loop looks at subscriptions and the stop request
IDLE_MS = 20  # and after this long without a message
MAX_VERDICTS = 100_000  # (sender, topic) verdicts kept; beyond, computed per message


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
        owners: Mapping[str, tuple[str, ...]] | None = None,
    ):
        if settings.high_water_mark <= 0:
            raise ValueError("high_water_mark must be positive (0 would mean unbounded queues)")
        check_served_securely(settings)
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
        owners = owners if owners is not None else settings.security.owners
        self._owners = {name: tuple(prefixes) for name, prefixes in owners.items()}
        self.dropped: dict[str, int] = {}  # sender -> messages on topics it does not own
        self.forwarded = 0
        self.malformed = 0  # messages that were not [topic, payload]: dropped

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
            keep_alive(xsub)
            keep_alive(xpub)
            # A publisher sending frames beyond the bound is cut off here, before any subscriber.
            xsub.setsockopt(zmq.MAXMSGSIZE, s.pubsub_bytes + 4096)
            hwm = s.pubsub_hwm  # at most max_queued_bytes per peer
            xsub.setsockopt(zmq.RCVHWM, hwm)
            xsub.setsockopt(zmq.SNDHWM, hwm)
            xpub.setsockopt(zmq.SNDHWM, hwm)
            xpub.setsockopt(zmq.RCVHWM, hwm)
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
            if self._owners and self._keys is not None:
                self._forward_owned(xsub, xpub, control)
            else:
                zmq.proxy_steerable(xsub, xpub, None, control)
        except zmq.ContextTerminated:
            pass
        finally:
            for sock in (xsub, xpub, control):
                sock.close()
            for domain in domains:
                ZapHandler.unregister(ctx, domain)

    def _owns(self, user: str, topic: bytes) -> bool:
        """Whether `user` may publish `topic`: a prefix ending in `.` owns what starts with it,
        any other names exactly one topic (`hb.drivers`, not `hb.drivers2`)."""
        name = topic.decode("ascii", "replace")
        for prefix in self._owners.get(user, ()):
            if name == prefix or (prefix.endswith(".") and name.startswith(prefix)):
                return True
        return False

    def _forward_owned(
        self, xsub: zmq.Socket[bytes], xpub: zmq.Socket[bytes], control: zmq.Socket[bytes]
    ) -> None:
        """Forward subscriptions up and owned messages down; drop and count the rest.

        The sender of every message is its connection's CURVE identity, which the ZAP handler
        authenticated once per connection and ZeroMQ stamps on each of its messages
        (`User-Id`). The verdict per (sender, topic) comes once from the owners' prefix table
        and is then looked up (`verdicts`: sender -> topic -> owned, bounded). Per message that
        leaves one Frame (the topic, for its `User-Id`), two dict lookups and two sends of
        bytes. The thread waits in `recv` itself (no poll, no raised `Again` per wake-up: each
        cost more than the forwarding); subscriptions, the stop request and the drop report
        are looked at every `LOOK_S`, and after `IDLE_MS` without a message.

        A message is [topic, payload]: a lone frame is dropped as malformed; frames after the
        second are read as the next message of the same connection (ZeroMQ never interleaves
        connections within a message), so each forwarded pair is checked on its own.
        """
        others = zmq.Poller()
        others.register(xpub, zmq.POLLIN)
        others.register(control, zmq.POLLIN)
        xsub.setsockopt(zmq.RCVTIMEO, IDLE_MS)
        verdicts: dict[str, dict[bytes, bool]] = {}  # sender -> topic -> owned
        cached = 0
        owns = self._owns
        dropped = self.dropped
        codec = Codec(self._settings.pubsub_bytes)
        report_seq, reported, next_report = 0, 0, time.monotonic() + 1.0
        noblock, more_noblock = int(zmq.NOBLOCK), int(zmq.SNDMORE | zmq.NOBLOCK)
        # the Cython methods themselves (zmq.Socket's Python wrappers add a call each)
        send = super(zmq.Socket, xpub).send
        recv = super(zmq.Socket, xsub).recv
        monotonic = time.monotonic
        user_id = b"User-Id"
        forwarded = dropped_malformed = 0
        next_look = 0.0
        while True:
            now = monotonic()
            if now >= next_look:
                next_look = now + LOOK_S
                self.forwarded = forwarded
                self.malformed = dropped_malformed
                events = dict(others.poll(0))
                if control in events and control.recv() == b"TERMINATE":
                    return
                if xpub in events:  # subscriptions, to every publisher
                    for _ in range(1000):
                        try:
                            xsub.send(xpub.recv(noblock))
                        except zmq.Again:
                            break
                if now >= next_report:
                    next_report = now + 1.0
                    total = sum(dropped.values())
                    if total != reported:
                        reported, report_seq = total, report_seq + 1
                        self._report_dropped(xpub, codec, report_seq)
            # the hot path: every call and lookup from here on is per message
            try:
                first = recv(0, False)  # a Frame: its connection's User-Id
            except zmq.Again:  # IDLE_MS without a message
                next_look = 0.0
                continue
            if not first.more:  # one frame: never a bus message
                dropped_malformed += 1
                continue
            payload = recv(0, True)  # the rest of a message is there with its first frame
            try:
                user = first.get(user_id)
            except zmq.ZMQError:  # no authenticated sender (never under ZAP): owns nothing
                user = "?"
            topic = first.bytes
            table = verdicts.get(user)
            if table is None:
                table = verdicts[user] = {}  # senders: the allow-list, bounded
            owned = table.get(topic)
            if owned is None:
                owned = owns(user, topic)
                if cached < MAX_VERDICTS:
                    table[topic] = owned
                    cached += 1
            if owned:
                try:
                    send(topic, more_noblock, True)
                    send(payload, noblock, True)
                except zmq.Again:
                    pass
                forwarded += 1
            elif user in dropped or len(dropped) < 1000:
                dropped[user] = dropped.get(user, 0) + 1

    def _report_dropped(self, xpub: zmq.Socket[bytes], codec: Codec, seq: int) -> None:
        """The counts of dropped messages per sender, on `hub.dropped`."""
        report = codec.pack(
            {
                "seq": seq,
                "t": time.time_ns(),
                "src": "hub",
                "value": dict(self.dropped),
                "unit": "",
                "status": "MAJOR",
            }
        )
        try:
            xpub.send(b"hub.dropped", zmq.SNDMORE | zmq.NOBLOCK)
            xpub.send(report, zmq.NOBLOCK)
        except zmq.Again:
            pass

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
