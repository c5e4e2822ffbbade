"""CURVE security for the bus: key pairs, who may connect (ZAP), and what each role may do.

Off by default (`bus.security.curve: false`), so a simulated lab on loopback runs as before. When
on, every command server and the hub encrypt and authenticate with ZeroMQ's CURVE: the servers
of a lab (command servers and hub) share one key pair, each client (the daemon, the GUI, an
operator's CLI) has its own, and a client whose public key is not on the allow-list never
completes the handshake, so it gets no reply and no telemetry at all. The name a key is listed
under is the client's authenticated identity (`Request.user`, checked by ZeroMQ, unlike the
self-declared `Request.client`) and its role decides the methods it may call; a call outside
them is refused with `forbidden`. Observers may subscribe to the hub but not publish to it.

Lab config (`bus:` section), made with `ionpilot bus keys create NAME`:

    security:
      curve: true
      server_public_key: "<Z85 of keys/server.key>"
      server_key_file: keys/server.key_secret    # read by processes that serve (and the hub)
      client_key_file: keys/lab.key_secret       # the identity of processes that call/publish
      clients:
        lab: {public_key: "<Z85>", role: operator}
        viewer: {public_key: "<Z85>", role: observer}

Key files are ZeroMQ certificates (`zmq.auth` format): `NAME.key` holds the public key,
`NAME.key_secret` both keys, readable by its owner only. Secret keys never appear in the lab
config, only the paths of their files.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Final

import zmq
import zmq.auth
import zmq.utils.z85

from ionpilot.bus.codec import METHODS, check_name
from ionpilot.bus.settings import BusSecurity

log = logging.getLogger(__name__)

READ_METHODS: Final = frozenset({"get", "describe", "ping", "list", "status"})
# What each role may call. `admin` will also own limit and configuration changes once the bus
# carries them; today it may do what an operator may.
ROLE_METHODS: Final[dict[str, frozenset[str]]] = {
    "observer": READ_METHODS,
    "operator": frozenset(METHODS),
    "admin": frozenset(METHODS),
}
PUBLISHER_ROLES: Final = frozenset({"operator", "admin"})  # who may publish through the hub
ZAP_ENDPOINT: Final = "inproc://zeromq.zap.01"  # fixed by RFC 27: one handler per context
USER_ID: Final = "User-Id"
MAX_LOGGED_REFUSALS: Final = 256  # the message property ZeroMQ fills from the ZAP reply


class SecurityError(ValueError):
    """Security is on but cannot be set up (missing or unreadable key file, bad key)."""


# ----------------------------------------------------------------------------------- key files


def create_keypair(directory: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """Write `NAME.key` (public) and `NAME.key_secret` (owner-only) into `directory`; refuses
    to overwrite an existing pair. Returns both paths."""
    check_name(name)
    folder = Path(directory)
    public_file, secret_file = folder / f"{name}.key", folder / f"{name}.key_secret"
    for path in (public_file, secret_file):
        if path.exists():
            raise FileExistsError(f"{path} exists already; remove it first to replace the key")
    folder.mkdir(parents=True, exist_ok=True)
    old_umask = os.umask(0o077)  # the secret file is never readable by others, not even briefly
    try:
        zmq.auth.create_certificates(folder, name)
    finally:
        os.umask(old_umask)
    os.chmod(public_file, 0o644)
    os.chmod(secret_file, 0o600)
    return public_file, secret_file


def read_public_key(path: str | os.PathLike[str]) -> str:
    """The Z85 public key of a certificate file (public or secret)."""
    public, _ = _load(path)
    return public.decode("ascii")


def read_keypair(path: str | os.PathLike[str]) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys from a secret certificate file, which must not be readable by
    group or others."""
    public, secret = _load(path)
    if secret is None:
        raise SecurityError(f"{path} holds no secret key (use the NAME.key_secret file)")
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecurityError(f"{path} is readable by others; chmod 600 it")
    return public, secret


def _load(path: str | os.PathLike[str]) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except OSError as exc:
        raise SecurityError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    except (ValueError, KeyError, IndexError) as exc:
        raise SecurityError(f"{path} is not a ZeroMQ certificate: {exc}") from None
    if not valid_key(public):
        raise SecurityError(f"{path} holds no valid public key")
    if secret is not None and (not valid_key(secret) or zmq.curve_public(secret) != public):
        raise SecurityError(f"{path}: the secret key does not match the public key")
    return public, secret


def valid_key(key: str | bytes) -> bool:
    """A Z85-encoded 32-byte CURVE key (40 characters)."""
    raw = key.encode("ascii", "replace") if isinstance(key, str) else key
    if len(raw) != 40:
        return False
    try:
        return len(zmq.utils.z85.decode(raw)) == 32
    except (ValueError, KeyError, TypeError):
        return False


# ------------------------------------------------------------------------- socket-side settings


@dataclass(frozen=True)
class ServerKeys:
    """What a command server needs: its key pair and the allow-list (public key -> name, role)."""

    public: bytes
    secret: bytes
    allowed: dict[bytes, tuple[str, str]]

    @classmethod
    def from_settings(cls, security: BusSecurity) -> ServerKeys:
        if not security.server_key_file:
            raise SecurityError("bus.security.server_key_file is needed to serve commands")
        public, secret = read_keypair(security.server_key_file)
        if security.server_public_key and security.server_public_key.encode() != public:
            raise SecurityError(
                f"{security.server_key_file} does not match bus.security.server_public_key"
            )
        allowed: dict[bytes, tuple[str, str]] = {
            entry.public_key.encode("ascii"): (name, entry.role)
            for name, entry in security.clients.items()
        }
        return cls(public, secret, allowed)

    @property
    def roles(self) -> dict[str, frozenset[str]]:
        """Authenticated name -> the methods it may call."""
        return {name: ROLE_METHODS[role] for name, role in self.allowed.values()}

    def apply(self, sock: zmq.Socket[bytes], domain: str) -> None:
        """Make `sock` (before it binds) a CURVE server checked by the ZAP handler."""
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.ZAP_DOMAIN, domain.encode("ascii"))
        sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)  # no handler running: nobody gets in


@dataclass(frozen=True)
class ClientKeys:
    """What a client needs: the servers' public key and its own key pair."""

    server_public: bytes
    public: bytes
    secret: bytes

    @classmethod
    def from_settings(
        cls, security: BusSecurity, key_file: str | os.PathLike[str] | None = None
    ) -> ClientKeys:
        """`key_file` (e.g. an operator's own, from the command line) overrides the config's
        `client_key_file`."""
        path = key_file or security.client_key_file
        if not path:
            raise SecurityError("bus.security.client_key_file is needed to send commands")
        if not security.server_public_key:
            raise SecurityError("bus.security.server_public_key is needed to send commands")
        public, secret = read_keypair(path)
        return cls(security.server_public_key.encode("ascii"), public, secret)

    def apply(self, sock: zmq.Socket[bytes]) -> None:
        """Make `sock` (before it connects) a CURVE client of the lab's servers."""
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.server_public)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)


# --------------------------------------------------------------------------------- ZAP handler


class ZapHandler:
    """The ZAP (RFC 27) handler of one ZeroMQ context: answers "who is this key?" for every
    CURVE handshake on that context's sockets, from the allow-lists of the servers registered
    with it (one ZAP domain each). Runs while at least one server is registered."""

    _lock: ClassVar = threading.Lock()
    _handlers: ClassVar[dict[int, ZapHandler]] = {}  # id(context) -> its running handler

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]]) -> None:
        self._context = context
        self._domains: dict[bytes, dict[bytes, tuple[str, str]]] = {}
        self._control = f"inproc://ionpilot-zap-control-{id(self):x}"
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.stats = {"allowed": 0, "denied": 0, "malformed": 0}
        self._logged: set[tuple[bytes, bytes]] = set()  # refusals already logged

    @classmethod
    def register(
        cls,
        context: zmq.Context[zmq.Socket[bytes]],
        domain: str,
        allowed: dict[bytes, tuple[str, str]],
    ) -> ZapHandler:
        """Start answering for `domain` (starting the handler if needed)."""
        with cls._lock:
            handler = cls._handlers.get(id(context))
            if handler is None or handler._context is not context:
                handler = cls(context)
                handler._start()
                cls._handlers[id(context)] = handler
            handler._domains[domain.encode("ascii")] = dict(allowed)
            return handler

    @classmethod
    def unregister(cls, context: zmq.Context[zmq.Socket[bytes]], domain: str) -> None:
        """Stop answering for `domain`; the last one stops the handler (before the context
        ends: ZeroMQ sockets must be closed by the thread that uses them)."""
        with cls._lock:
            handler = cls._handlers.get(id(context))
            if handler is None or handler._context is not context:
                return
            handler._domains.pop(domain.encode("ascii"), None)
            if not handler._domains:
                del cls._handlers[id(context)]
                handler._stop()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ionpilot-zap", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def _stop(self) -> None:
        if self._thread is None:
            return
        control = self._context.socket(zmq.PAIR)
        control.setsockopt(zmq.LINGER, 1000)
        try:
            control.connect(self._control)
            control.send(b"stop")
            self._thread.join(5.0)
        finally:
            control.close()

    def _run(self) -> None:
        rep = self._context.socket(zmq.REP)
        control = self._context.socket(zmq.PAIR)
        try:
            rep.setsockopt(zmq.LINGER, 0)
            control.setsockopt(zmq.LINGER, 0)
            rep.bind(ZAP_ENDPOINT)
            control.bind(self._control)
        except zmq.ZMQError as exc:
            self._error = SecurityError(f"cannot start the ZAP handler: {exc}")
            rep.close()
            control.close()
            self._ready.set()
            return
        self._ready.set()
        poller = zmq.Poller()
        poller.register(rep, zmq.POLLIN)
        poller.register(control, zmq.POLLIN)
        try:
            while True:
                events = dict(poller.poll())
                if control in events:
                    return
                if rep in events:
                    rep.send_multipart(self.answer(rep.recv_multipart()))
        except zmq.ContextTerminated:
            return
        finally:
            rep.close()
            control.close()

    def answer(self, frames: list[bytes]) -> list[bytes]:
        """The ZAP reply to one request: 200 with the client's name as user id, or 400."""
        if len(frames) < 6 or frames[0] != b"1.0":
            self.stats["malformed"] += 1
            request_id = frames[1] if len(frames) > 1 else b""
            return [b"1.0", request_id, b"400", b"malformed ZAP request", b"", b""]
        _version, request_id, domain, _address, _identity, mechanism, *credentials = frames
        allowed = self._domains.get(domain)
        entry = None
        if allowed is not None and mechanism == b"CURVE" and len(credentials) == 1:
            entry = allowed.get(zmq.utils.z85.encode(credentials[0]))
        if entry is None:
            self.stats["denied"] += 1
            who = (domain, credentials[0] if len(credentials) == 1 else b"")
            if who not in self._logged and len(self._logged) < MAX_LOGGED_REFUSALS:
                self._logged.add(who)  # once per key: a refused peer retries every 100 ms
                log.warning(
                    "refused %s client %s on %s",
                    mechanism.decode("ascii", "replace"),
                    zmq.utils.z85.encode(who[1]).decode() if len(who[1]) == 32 else "?",
                    domain.decode("ascii", "replace"),
                )
            return [b"1.0", request_id, b"400", b"unknown key", b"", b""]
        self.stats["allowed"] += 1
        return [b"1.0", request_id, b"200", b"OK", entry[0].encode("ascii"), b""]
