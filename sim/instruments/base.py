"""What every simulated instrument is: a protocol object turning one request line into the
exact reply bytes (terminators, prompts and echoes included), separate from the socket plumbing
so protocol tests can call `handle` directly. Plus the SCPI engine the SCPI models share."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..world import World

GARBAGE = "#\x7f%&?!@"


class Protocol:
    """Base of all simulated instruments. Subclasses set framing and implement `handle`."""

    #: bytes that end one request on the wire
    separator: bytes = b"\n"
    #: at most this many simultaneous connections (None: unlimited); extra ones are closed
    max_clients: int | None = None
    #: "line" (socket servers) or "http" (XML-RPC)
    transport: str = "line"

    def __init__(self, world: World, name: str) -> None:
        self.world = world
        self.name = name

    def session(self) -> Protocol:
        """The protocol object that serves one connection: this shared one, unless the model
        keeps per-connection state (a DLC pro's user level and echo)."""
        return self

    def banner(self) -> bytes:
        return b""

    def handle(self, line: str) -> bytes | None:
        """One request (without its terminator) -> reply bytes, or None for no reply."""
        raise NotImplementedError

    def garbage(self) -> bytes:
        """A reply that does not parse, framed like a real one (garbage_reply fault)."""
        return (GARBAGE + "\n").encode("latin-1")


class ScpiError(Exception):
    """An SCPI error: goes to the error queue, and the command or query replies nothing."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f'{code},"{message}"')
        self.code = code
        self.message = message


def command_error() -> ScpiError:
    return ScpiError(-100, "Command error")


def missing_parameter() -> ScpiError:
    return ScpiError(-109, "Missing parameter")


def illegal_value() -> ScpiError:
    return ScpiError(-224, "Illegal parameter value")


def out_of_range() -> ScpiError:
    return ScpiError(-222, "Data out of range")


_NODE = re.compile(r"(\[?)(:?)([A-Za-z*]+)(#?)(\]?)")
_SUFFIX_SCALE = {
    "": 1.0,
    "HZ": 1.0,
    "KHZ": 1e3,
    "MHZ": 1e6,
    "GHZ": 1e9,
    "V": 1.0,
    "MV": 1e-3,
    "A": 1.0,
    "MA": 1e-3,
    "S": 1.0,
    "MS": 1e-3,
    "US": 1e-6,
    "DBM": 1.0,
}
_NUMBER = re.compile(r"^([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z]*)$")


def compile_header(pattern: str) -> re.Pattern[str]:
    """'[SOURce]:FREQuency[:CW]' -> a regex accepting short/long forms, optional nodes, and
    a numeric suffix where the pattern has '#' (captured)."""
    parts = []
    skip_sep = True
    for optional, _colon, word, suffix, _close in _NODE.findall(pattern):
        short = "".join(c for c in word if c.isupper() or c == "*")
        long = word.upper()
        alts = re.escape(long) if short == long else f"(?:{re.escape(long)}|{re.escape(short)})"
        node = alts + (r"(\d*)" if suffix else "")
        if skip_sep and optional:
            parts.append(f"(?:{node}:)?")
            continue  # the next node follows without its own colon
        sep = "" if skip_sep else ":"
        skip_sep = False
        parts.append(f"(?:{sep}{node})?" if optional else sep + node)
    body = "".join(parts)
    return re.compile(rf"^:?{body}$", re.IGNORECASE)


def parse_number(arg: str, allowed_suffixes: tuple[str, ...] = ()) -> float:
    if not arg:
        raise missing_parameter()
    m = _NUMBER.match(arg.strip())
    if not m:
        raise illegal_value()
    suffix = m.group(2).upper()
    if suffix and suffix not in allowed_suffixes:
        raise illegal_value()
    return float(m.group(1)) * _SUFFIX_SCALE.get(suffix, 1.0)


def parse_bool(arg: str) -> bool:
    word = arg.strip().upper()
    if not word:
        raise missing_parameter()
    if word in ("1", "ON"):
        return True
    if word in ("0", "OFF"):
        return False
    raise illegal_value()


def fmt_g(value: float) -> str:
    return f"{value:.12g}"


Handler = Callable[[str, tuple[str, ...]], str | None]


@dataclass
class _Command:
    regex: re.Pattern[str]
    query: bool
    handler: Handler


class ScpiProtocol(Protocol):
    """An SCPI instrument: header table, compound commands, one shared error queue."""

    idn = "ionpilot,sim,0,0"
    terminator = "\n"
    no_error = '0,"No error"'
    queue_size = 10

    def __init__(self, world: World, name: str) -> None:
        super().__init__(world, name)
        self.errors: deque[str] = deque()
        self._commands: list[_Command] = []
        self.add("*IDN", True, lambda a, s: self.idn)
        self.add("*OPC", True, lambda a, s: "1")
        self.add("*CLS", False, lambda a, s: self.errors.clear())
        self.add("*RST", False, lambda a, s: self.reset())
        self.add("SYSTem:ERRor[:NEXT]", True, lambda a, s: self.pop_error())
        self.setup()

    def setup(self) -> None:
        """Subclasses register their headers here."""

    def reset(self) -> None:
        """*RST: back to the power-on state (subclasses)."""

    def add(self, pattern: str, query: bool, handler: Handler) -> None:
        self._commands.append(_Command(compile_header(pattern), query, handler))

    def push_error(self, err: ScpiError) -> None:
        if len(self.errors) >= self.queue_size:
            self.errors[-1] = '-350,"Queue overflow"'
            return
        self.errors.append(f'{err.code},"{err.message}"')

    def pop_error(self) -> str:
        return self.errors.popleft() if self.errors else self.no_error

    def garbage(self) -> bytes:
        return (GARBAGE + self.terminator).encode("latin-1")

    def handle(self, line: str) -> bytes | None:
        replies: list[str] = []
        previous: str | None = None
        for raw in line.strip().split(";"):
            part = raw.strip()
            if not part:
                continue
            header, _, args = part.partition(" ")
            try:
                reply, previous = self._dispatch(header, args.strip(), previous)
            except ScpiError as err:
                self.push_error(err)
                return None  # the real ones abandon the rest of the line and answer nothing
            if reply is not None:
                replies.append(reply)
        if not replies:
            return None
        return (";".join(replies) + self.terminator).encode("ascii")

    def _dispatch(self, header: str, args: str, previous: str | None) -> tuple[str | None, str]:
        query = header.endswith("?")
        bare = header[:-1] if query else header
        candidates = [bare]
        if previous and not bare.startswith((":", "*")) and ":" in previous:
            candidates.append(previous.rsplit(":", 1)[0] + ":" + bare)
        for text in candidates:
            for cmd in self._commands:
                if cmd.query != query:
                    continue
                m = cmd.regex.match(text)
                if m:
                    suffixes = tuple(g or "" for g in m.groups())
                    return cmd.handler(args, suffixes), text
        raise command_error()


def channel_number(suffixes: tuple[str, ...], count: int, default: int = 1) -> int:
    """The numeric suffix of a header node (SOUR3 -> 3), checked against the channel count."""
    text = next((s for s in suffixes if s), "")
    ch = int(text) if text else default
    if not 1 <= ch <= count:
        raise command_error()
    return ch


def parse_channel_list(arg: str) -> int:
    """'(@1)' -> 1; empty -> 1."""
    arg = arg.strip()
    if not arg:
        return 1
    m = re.fullmatch(r"\(@(\d+)\)", arg)
    if not m:
        raise illegal_value()
    return int(m.group(1))
