"""The bus schema and its msgpack codec: the one place that says what may travel on the wire.

Every decoder checks sizes and types and raises only `DecodeError`, so socket loops turn any
bytes a peer sends into a structured error (commands) or a counted drop (pub/sub). Nothing is
evaluated; a method is a string from a fixed whitelist; values are plain data only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import msgpack

# A wire value: None, bool, int, float, str, bytes, and lists / str-keyed maps of those.
Value = Any

STATUSES: Final = ("OK", "MINOR", "MAJOR", "INVALID")  # EPICS-like severities, in order
_STATUS_SET: Final = frozenset(STATUSES)


class ErrorCode:
    """Stable error codes of command replies (clients switch on these strings)."""

    BAD_REQUEST: Final = "bad_request"
    UNKNOWN_TARGET: Final = "unknown_target"
    UNKNOWN_METHOD: Final = "unknown_method"
    OUT_OF_LIMITS: Final = "out_of_limits"
    FORBIDDEN: Final = "forbidden"
    TIMEOUT: Final = "timeout"  # no reply in time (client) / handler overran (server)
    BUSY: Final = "busy"  # the server already runs its maximum of requests
    INSTRUMENT_ERROR: Final = "instrument_error"
    INSTRUMENT_TIMEOUT: Final = "instrument_timeout"  # the instrument did not answer its driver
    INTERNAL: Final = "internal"


ERROR_CODES: Final = frozenset(
    value for name, value in vars(ErrorCode).items() if name.isupper() and isinstance(value, str)
)

# Whitelisted command methods; only the idempotent ones may be retried by a client.
METHODS: Final = frozenset(
    {"get", "set", "call", "describe", "ping", "ack", "list", "status", "start", "stop"}
)
IDEMPOTENT_METHODS: Final = frozenset({"get", "describe", "ping", "list", "status"})

MAX_ID: Final = 2**63 - 1
MAX_NAME_CHARS: Final = 128
MAX_TTL_S: Final = 86_400.0  # a request's own time to live (`ttl_s`): at most a day
MAX_MESSAGE_CHARS: Final = 4096
MAX_DEPTH: Final = 32
_NAME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,127}")
_TOPIC_RE: Final = re.compile(rb"[a-z][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)*")
MAX_TOPIC_BYTES: Final = 256
_TOPIC_CACHE_SIZE: Final = 4096
# Decoders call `unpackb` with its defaults (str for msgpack str, str/bytes map keys only) and
# no ext hook: an extension value comes back as `ExtType` or `Timestamp`, which no type check
# below lets through (each field is checked by exact type, values by `check_value`), so it is
# refused like any other foreign type, without the cost of a keyword argument on every call.
_msgpack_unpackb = msgpack.unpackb

# msgpack's C decoder leaks the objects it has built (~80 kB) each time it gives up on a frame
# nested past its own stack (1024 levels, `StackError`): 1 kB frames grow any reader without
# bound. So no frame reaches it that could nest that deep. A frame of fewer container-header-like
# bytes than `DEEP_SCAN_AT` cannot (each level needs one), and the translate that counts them
# costs ~0.1 us; any other frame is walked header by header first, in Python, and refused if it
# nests deeper than a bus message may (`MAX_FRAME_DEPTH`).
MAX_FRAME_DEPTH: Final = MAX_DEPTH + 2  # a request map, its args map, then a value's own levels
DEEP_SCAN_AT: Final = 512  # far below the C decoder's 1024
CONTAINER_HEADERS: Final = bytes([*range(0x80, 0xA0), *range(0xDC, 0xE0)])
# Bytes after the header byte of a fixed-size value, by header byte (ints, floats, nil, bools).
_FIXED: Final = {
    **{b: 0 for b in (0xC0, 0xC2, 0xC3)},
    0xCA: 4,
    0xCB: 8,
    0xCC: 1,
    0xCD: 2,
    0xCE: 4,
    0xCF: 8,
    0xD0: 1,
    0xD1: 2,
    0xD2: 4,
    0xD3: 8,
    0xD4: 2,
    0xD5: 3,
    0xD6: 5,
    0xD7: 9,
    0xD8: 17,  # fixext: type byte + data
}
# Length-prefixed values (str, bin, ext): bytes of the length field, extra bytes (ext type).
_SIZED: Final = {
    0xC4: (1, 0),
    0xC5: (2, 0),
    0xC6: (4, 0),
    0xC7: (1, 1),
    0xC8: (2, 1),
    0xC9: (4, 1),
    0xD9: (1, 0),
    0xDA: (2, 0),
    0xDB: (4, 0),
}


def check_depth(data: bytes, limit: int = MAX_FRAME_DEPTH) -> None:
    """Raise `DecodeError` if the msgpack frame `data` nests containers deeper than `limit`
    (or is cut short where a walk can tell), before any decoder builds a single object."""
    if len(data) < DEEP_SCAN_AT:  # too short to hold DEEP_SCAN_AT headers: nothing to count
        return
    if len(data) - len(data.translate(None, CONTAINER_HEADERS)) < DEEP_SCAN_AT:
        return
    _walk_depth(data, limit)


def _walk_depth(data: bytes, limit: int) -> None:
    pos, end = 0, len(data)
    pending: list[int] = []  # items still to read in each open container, innermost last
    todo = 1  # items still to read at the present level (the top level holds one)
    while True:
        while todo == 0:
            if not pending:
                return
            todo = pending.pop()
        if pos >= end:
            raise DecodeError("not msgpack: frame cut short")
        head = data[pos]
        pos += 1
        todo -= 1
        items = -1
        if head <= 0x7F or head >= 0xE0:
            continue
        if head <= 0x8F:
            items = 2 * (head & 0x0F)
        elif head <= 0x9F:
            items = head & 0x0F
        elif head <= 0xBF:
            pos += head & 0x1F
            continue
        elif head in _FIXED:
            pos += _FIXED[head]
            continue
        elif head in _SIZED:
            width, extra = _SIZED[head]
            pos += width + extra + int.from_bytes(data[pos : pos + width], "big")
            continue
        elif 0xDC <= head <= 0xDF:  # array16, array32, map16, map32
            width = 2 if head in (0xDC, 0xDE) else 4
            items = int.from_bytes(data[pos : pos + width], "big") * (2 if head >= 0xDE else 1)
            pos += width
        else:
            raise DecodeError("not msgpack: reserved byte 0xc1")
        if items > end - pos:
            raise DecodeError("not msgpack: container longer than the frame")
        if items:
            pending.append(todo)
            if len(pending) > limit:
                raise DecodeError(f"value nested more than {limit} levels deep")
            todo = items


def safe_unpackb(data: bytes) -> Any:
    """msgpack's `unpackb` behind the depth guard (raises `DecodeError` for deep frames). A
    frame shorter than `DEEP_SCAN_AT` bytes cannot hold that many container headers, so most
    bus messages skip even the count (~0.2 us of a subscriber's ~3 us a message)."""
    if (
        len(data) >= DEEP_SCAN_AT
        and len(data) - len(data.translate(None, CONTAINER_HEADERS)) >= DEEP_SCAN_AT
    ):
        _walk_depth(data, MAX_FRAME_DEPTH)
    return _msgpack_unpackb(data)


_unpackb = safe_unpackb

SCALAR_TYPES: Final = frozenset({type(None), bool, int, float, str, bytes})
_SCALARS = SCALAR_TYPES


class DecodeError(ValueError):
    """A frame that is not a valid bus message; `request_id` is set when it could be read."""

    code = ErrorCode.BAD_REQUEST

    def __init__(self, message: str, request_id: int | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class BusError(Exception):
    """A refused or failed command, with a stable `code`; handlers raise it to refuse."""

    def __init__(self, code: str, message: str) -> None:
        if code not in ERROR_CODES:
            message = f"{code}: {message}"
            code = ErrorCode.INTERNAL
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(slots=True)
class Telemetry:
    """One reading: `seq` counts per topic at the publisher, `t` is UTC ns since the epoch."""

    seq: int
    t: int
    src: str
    value: Value
    unit: str = ""
    status: str = "OK"
    topic: str = ""  # filled in on receipt; not part of the payload


@dataclass(slots=True)
class Event:
    """Something that happened (alarm raised, recovery step, lock acquired)."""

    seq: int
    t: int
    src: str
    kind: str
    message: str = ""
    severity: str = "OK"
    data: dict[str, Value] = field(default_factory=dict)
    topic: str = ""


@dataclass(slots=True)
class Heartbeat:
    """A process saying it is alive; `period` is how often it promises to say so (s)."""

    seq: int
    t: int
    src: str
    period: float
    status: str = "OK"
    topic: str = ""


Message = Telemetry | Event | Heartbeat


@dataclass(slots=True)
class Request:
    """A command: `method` on `target` with keyword `args`, from `client`, matched by `id`."""

    id: int
    method: str
    target: str
    args: dict[str, Value] = field(default_factory=dict)
    client: str = ""  # what the sender calls itself (not checked)
    user: str = ""  # who the sender is, as authenticated by CURVE (set by the server, not sent)
    # how long the sender waits for the reply (s); work still queued after that is not done,
    # since nobody would learn its outcome. None: the server's own bound applies.
    ttl_s: float | None = None


@dataclass(slots=True)
class Reply:
    """The answer to one request: `value` when `ok`, else a stable `code` and a `message`."""

    id: int | None
    ok: bool
    value: Value = None
    code: str = ""
    message: str = ""

    @classmethod
    def failure(cls, request_id: int | None, code: str, message: str) -> Reply:
        return cls(request_id, False, None, code, message[:MAX_MESSAGE_CHARS])

    def unwrap(self) -> Value:
        """The value, or `BusError` for a refused command."""
        if not self.ok:
            raise BusError(self.code, self.message)
        return self.value


# --------------------------------------------------------------------------------------- values


def _to_plain(obj: object) -> Value:
    """msgpack `default` hook: numpy scalars and arrays become plain data; nothing else passes."""
    if type(obj).__module__ == "numpy":
        tolist = getattr(obj, "tolist", None)
        if tolist is not None:
            return tolist()
    raise TypeError(f"{type(obj).__name__} cannot travel on the bus")


def check_ttl(ttl: object) -> float:
    """A request's `ttl_s`: seconds, positive, finite, at most `MAX_TTL_S`."""
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= MAX_TTL_S:
        raise DecodeError(f"ttl_s must be a number of seconds in (0, {MAX_TTL_S:g}], not {ttl!r}")
    return float(ttl)


def check_value(value: object, depth: int = 0) -> None:
    """Raise `DecodeError` unless `value` is plain wire data (bounded depth, str map keys)."""
    kind = type(value)
    if kind in _SCALARS:
        return
    if depth >= MAX_DEPTH:
        raise DecodeError("value nested too deeply")
    if kind is list or kind is tuple:
        for item in value:  # type: ignore[attr-defined]
            if type(item) not in _SCALARS:
                check_value(item, depth + 1)
        return
    if kind is dict:
        for key, item in value.items():  # type: ignore[attr-defined]
            if type(key) is not str:
                raise DecodeError("map keys must be strings")
            if type(item) not in _SCALARS:
                check_value(item, depth + 1)
        return
    if kind.__module__ == "numpy" and hasattr(value, "tolist"):
        return  # numpy scalars and arrays: the packer turns them into plain data
    raise DecodeError(f"{kind.__name__} is not a bus value")


def check_reading(value: object, status: str) -> None:
    """Raise `DecodeError` unless `value` can be a telemetry reading with `status`: plain wire
    data whose text is at most `MAX_MESSAGE_CHARS` anywhere, and no NaN or infinity as the
    reading itself unless its status says it is `INVALID` (fields of a map may be NaN: "none")."""
    kind = type(value)
    if kind is float:
        if status != "INVALID" and not math.isfinite(value):  # type: ignore[arg-type]
            raise DecodeError(f"a reading of {value} must have status INVALID")
        return
    if kind is str:
        if len(value) > MAX_MESSAGE_CHARS:  # type: ignore[arg-type]
            raise DecodeError(f"text readings hold at most {MAX_MESSAGE_CHARS} characters")
        return
    if kind in _SCALARS:
        return
    check_value(value)
    _check_texts(value)


def _check_texts(value: object) -> None:
    kind = type(value)
    if kind is str:
        if len(value) > MAX_MESSAGE_CHARS:  # type: ignore[arg-type]
            raise DecodeError(f"text in a reading holds at most {MAX_MESSAGE_CHARS} characters")
    elif kind is list or kind is tuple:
        for item in value:  # type: ignore[attr-defined]
            if type(item) is not float and type(item) is not int:
                _check_texts(item)
    elif kind is dict:
        for key, item in value.items():  # type: ignore[attr-defined]
            if len(key) > MAX_NAME_CHARS:
                raise DecodeError(f"field names hold at most {MAX_NAME_CHARS} characters")
            _check_texts(item)


class Codec:
    """Encoder and decoders bound to one size limit; reuses one msgpack packer (one thread)."""

    def __init__(self, max_message_bytes: int = 1_048_576) -> None:
        if max_message_bytes <= 0:
            raise ValueError("max_message_bytes must be positive")
        self.max_message_bytes = max_message_bytes
        self.packer = msgpack.Packer(default=_to_plain, use_bin_type=True)  # for hot paths
        self._packer = self.packer
        self._topic_cache: dict[bytes, tuple[str, Callable[[bytes, str], Message]]] = {}

    # ---------------------------------------------------------------------------- encoding

    def pack(self, obj: dict[str, Value]) -> bytes:
        """Pack a map; raises `BusError(bad_request)` for data that cannot travel."""
        try:
            data: bytes = self._packer.pack(obj)
        except (TypeError, ValueError, OverflowError) as exc:
            self._packer.reset()
            raise BusError(ErrorCode.BAD_REQUEST, str(exc)) from None
        if len(data) > self.max_message_bytes:
            raise BusError(
                ErrorCode.BAD_REQUEST,
                f"message of {len(data)} bytes exceeds {self.max_message_bytes}",
            )
        return data

    def encode_telemetry(self, msg: Telemetry) -> bytes:
        return self.pack(
            {
                "seq": msg.seq,
                "t": msg.t,
                "src": msg.src,
                "value": msg.value,
                "unit": msg.unit,
                "status": msg.status,
            }
        )

    def encode_event(self, msg: Event) -> bytes:
        return self.pack(
            {
                "seq": msg.seq,
                "t": msg.t,
                "src": msg.src,
                "kind": msg.kind,
                "message": msg.message,
                "severity": msg.severity,
                "data": msg.data,
            }
        )

    def encode_heartbeat(self, msg: Heartbeat) -> bytes:
        return self.pack(
            {"seq": msg.seq, "t": msg.t, "src": msg.src, "period": msg.period, "status": msg.status}
        )

    def encode_request(self, req: Request) -> bytes:
        return self.encode_call(
            req.id, req.method, req.target, req.args, req.client, ttl_s=req.ttl_s
        )

    def encode_call(
        self,
        rid: int,
        method: str,
        target: str,
        args: dict[str, Value],
        client: str,
        *,
        ttl_s: float | None = None,
    ) -> bytes:
        """`encode_request` without building a `Request` first (the client's hot path)."""
        if type(args) is not dict:
            raise DecodeError("args must be a map")
        for key, item in args.items():  # flat maps of scalars (most args) need no recursion
            if type(key) is not str or type(item) not in _SCALARS:
                check_value(args)
                break
        message: dict[str, Value] = {
            "id": rid,
            "method": method,
            "target": target,
            "args": args,
            "client": client,
        }
        if ttl_s is not None:
            message["ttl_s"] = check_ttl(ttl_s)
        return self.pack(message)

    def encode_result(self, rid: int | None, value: Value) -> bytes:
        """`encode_reply` of a successful reply without building a `Reply`."""
        return self.pack({"id": rid, "ok": True, "value": value})

    def encode_reply(self, reply: Reply) -> bytes:
        if reply.ok:
            return self.pack({"id": reply.id, "ok": True, "value": reply.value})
        return self.pack(
            {
                "id": reply.id,
                "ok": False,
                "error": {"code": reply.code, "message": reply.message[:MAX_MESSAGE_CHARS]},
            }
        )

    # ---------------------------------------------------------------------------- decoding

    def _unpack_map(self, data: bytes) -> dict[str, Value]:
        if type(data) is not bytes:
            data = bytes(data)
        if len(data) > self.max_message_bytes:
            raise DecodeError(f"frame of {len(data)} bytes exceeds {self.max_message_bytes}")
        try:
            obj = _unpackb(data)
        except DecodeError:
            raise
        except Exception as exc:  # msgpack raises many types on garbage; all mean the same
            raise DecodeError(f"not msgpack: {type(exc).__name__}") from None
        if type(obj) is not dict:
            raise DecodeError("payload is not a map")
        return obj

    @staticmethod
    def _header(obj: dict[str, Value]) -> tuple[int, int, str]:
        seq = obj.get("seq")
        t = obj.get("t")
        src = obj.get("src")
        if type(seq) is not int or seq < 0:
            raise DecodeError("seq must be a non-negative integer")
        if type(t) is not int:
            raise DecodeError("t must be an integer (ns since the epoch)")
        if type(src) is not str or not 0 < len(src) <= MAX_NAME_CHARS:
            raise DecodeError("src must be a non-empty string")
        return seq, t, src

    def decode_telemetry(self, data: bytes, topic: str = "") -> Telemetry:
        # The hot path of every subscriber: checks written out inline, measured.
        if len(data) > self.max_message_bytes:
            raise DecodeError(f"frame of {len(data)} bytes exceeds {self.max_message_bytes}")
        if len(data) >= DEEP_SCAN_AT:  # `safe_unpackb` written out: shorter frames skip it
            check_depth(data)
        try:
            obj = _msgpack_unpackb(data)
        except Exception as exc:
            raise DecodeError(f"not msgpack: {type(exc).__name__}") from None
        if type(obj) is not dict:
            raise DecodeError("payload is not a map")
        seq: Any
        t: Any
        src: Any
        value: Any
        unit: Any
        status: Any
        try:  # every field there, as publishers send them: indexing is cheaper than `get`
            seq, t, src = obj["seq"], obj["t"], obj["src"]
            value, unit, status = obj["value"], obj["unit"], obj["status"]
        except KeyError:
            get = obj.get
            seq, t, src, value = get("seq"), get("t"), get("src"), get("value")
            unit, status = get("unit", ""), get("status", "OK")
        if type(seq) is not int or seq < 0 or type(t) is not int or type(src) is not str:
            self._header(obj)  # raises with the precise complaint
        if not 0 < len(src) <= MAX_NAME_CHARS:
            raise DecodeError("src must be a non-empty string")
        if type(unit) is not str or len(unit) > MAX_NAME_CHARS:
            raise DecodeError("unit must be a string")
        if type(status) is not str or status not in _STATUS_SET:
            raise DecodeError("status must be one of OK, MINOR, MAJOR, INVALID")
        kind = type(value)
        if kind is float:
            if value - value != 0.0 and status != "INVALID":  # NaN or infinite
                raise DecodeError(f"a reading of {value} must have status INVALID")
        elif kind is not int and kind is not bool and value is not None:
            check_reading(value, status)
        return Telemetry(seq, t, src, value, unit, status, topic)

    def decode_event(self, data: bytes, topic: str = "") -> Event:
        obj = self._unpack_map(data)
        seq, t, src = self._header(obj)
        kind = obj.get("kind")
        message = obj.get("message", "")
        severity = obj.get("severity", "OK")
        data_map = obj.get("data", {})
        if type(kind) is not str or not 0 < len(kind) <= MAX_NAME_CHARS:
            raise DecodeError("kind must be a non-empty string")
        if type(message) is not str or len(message) > MAX_MESSAGE_CHARS:
            raise DecodeError("message must be a string")
        if type(severity) is not str or severity not in _STATUS_SET:
            raise DecodeError("severity must be one of OK, MINOR, MAJOR, INVALID")
        if type(data_map) is not dict:
            raise DecodeError("data must be a map")
        check_value(data_map)
        return Event(seq, t, src, kind, message, severity, data_map, topic)

    def decode_heartbeat(self, data: bytes, topic: str = "") -> Heartbeat:
        obj = self._unpack_map(data)
        seq, t, src = self._header(obj)
        period: Any = obj.get("period")
        status = obj.get("status", "OK")
        if type(period) not in (int, float) or not 0 < float(period) < 1e6:
            raise DecodeError("period must be a positive number of seconds")
        if type(status) is not str or status not in _STATUS_SET:
            raise DecodeError("status must be one of OK, MINOR, MAJOR, INVALID")
        return Heartbeat(seq, t, src, float(period), status, topic)

    def decode_message(self, topic: bytes, data: bytes) -> Message:
        """Decode a pub/sub message; the topic's first segment selects the schema."""
        known = self._topic_cache.get(topic)
        if known is None:
            name = decode_topic(topic)
            if name.startswith("hb."):
                decoder: Callable[[bytes, str], Message] = self.decode_heartbeat
            elif name.startswith("evt."):
                decoder = self.decode_event
            else:
                decoder = self.decode_telemetry
            known = (name, decoder)
            if len(self._topic_cache) < _TOPIC_CACHE_SIZE:
                self._topic_cache[topic] = known
        return known[1](data, known[0])

    def decode_request(self, data: bytes) -> Request:
        # The hot path of every command server: `_unpack_map` written out inline, measured.
        if len(data) > self.max_message_bytes:
            raise DecodeError(f"frame of {len(data)} bytes exceeds {self.max_message_bytes}")
        try:
            obj = _unpackb(data)
        except DecodeError:
            raise
        except Exception as exc:
            raise DecodeError(f"not msgpack: {type(exc).__name__}") from None
        if type(obj) is not dict:
            raise DecodeError("payload is not a map")
        rid = obj.get("id")
        if type(rid) is not int or not 0 <= rid <= MAX_ID:
            raise DecodeError("id must be an integer in [0, 2**63)")
        method = obj.get("method")
        target = obj.get("target")
        args = obj.get("args", {})
        client = obj.get("client", "")
        if type(method) is not str or not 0 < len(method) <= 32:
            raise DecodeError("method must be a short string", rid)
        if type(target) is not str or not 0 < len(target) <= MAX_NAME_CHARS:
            raise DecodeError("target must be a short name", rid)
        if type(args) is not dict:
            raise DecodeError("args must be a map", rid)
        if type(client) is not str or len(client) > MAX_NAME_CHARS:
            raise DecodeError("client must be a short string", rid)
        ttl = obj.get("ttl_s")
        if ttl is not None:
            try:
                ttl = check_ttl(ttl)
            except DecodeError as exc:
                raise DecodeError(str(exc), rid) from None
        for key, item in args.items():  # flat maps of scalars (most args) need no recursion
            if type(key) is not str or type(item) not in _SCALARS:
                try:
                    check_value(args)
                except DecodeError as exc:
                    raise DecodeError(str(exc), rid) from None
                break
        return Request(rid, method, target, args, client, ttl_s=ttl)

    def decode_reply(self, data: bytes) -> Reply:
        # The hot path of every client: `_unpack_map` written out inline, measured.
        if len(data) > self.max_message_bytes:
            raise DecodeError(f"frame of {len(data)} bytes exceeds {self.max_message_bytes}")
        try:
            obj = _unpackb(data)
        except DecodeError:
            raise
        except Exception as exc:
            raise DecodeError(f"not msgpack: {type(exc).__name__}") from None
        if type(obj) is not dict:
            raise DecodeError("payload is not a map")
        rid = obj.get("id")
        ok = obj.get("ok")
        if rid is not None and (type(rid) is not int or not 0 <= rid <= MAX_ID):
            raise DecodeError("reply id must be an integer or nil")
        if ok is True:
            value = obj.get("value")
            if type(value) not in _SCALARS:
                check_value(value)
            return Reply(rid, True, value)
        if ok is not False:
            raise DecodeError("ok must be a boolean")
        error = obj.get("error")
        if type(error) is not dict:
            raise DecodeError("a failed reply needs an error map")
        code = error.get("code")
        message = error.get("message", "")
        if type(code) is not str or code not in ERROR_CODES:
            raise DecodeError("unknown error code")
        if type(message) is not str:
            raise DecodeError("error message must be a string")
        return Reply(rid, False, None, code, message[:MAX_MESSAGE_CHARS])


def decode_topic(topic: bytes) -> str:
    """A dotted ASCII topic (`tlm.rf_drive.frequency`), or `DecodeError`."""
    if type(topic) is not bytes:
        topic = bytes(topic)
    if len(topic) > MAX_TOPIC_BYTES or _TOPIC_RE.fullmatch(topic) is None:
        raise DecodeError("topic must be dotted ASCII names")
    return topic.decode("ascii")


def check_topic(topic: str) -> bytes:
    """The wire form of a topic a publisher is about to use; `ValueError` if malformed."""
    raw = topic.encode("ascii", "replace")
    if len(raw) > MAX_TOPIC_BYTES or _TOPIC_RE.fullmatch(raw) is None:
        raise ValueError(f"bad topic {topic!r}: use dotted names like tlm.rf_drive.frequency")
    return raw


def check_name(name: str) -> str:
    """A target or process name (letters, digits, `_ . -`), or `ValueError`."""
    if _NAME_RE.fullmatch(name) is None:
        raise ValueError(f"bad name {name!r}: letters, digits, _ . - (starting with a letter)")
    return name
