"""The one SCPI core every simulated SCPI instrument shares: the parser (long/short forms, any case,
`;`-separated program message units with the SCPI relative path, `:`-rooted headers, quoted
strings), the IEEE 488.2 mandatory common commands and status model, and the SCPI error queue.
Each model only registers its command tree (`setup`) and its reset state (`reset`).

References: IEEE 488.2-1992 §10 (common commands) and §11 (status reporting: ESR bits, ESE,
STB, SRE, ESB/RQS); SCPI-1999 Vol. 1 "Syntax and Style" (program headers, short/long form, the
relative path after `;`, parameters, channel lists) and Vol. 2 "Command Reference" (STATus,
SYSTem:ERRor and its error list). PROTOCOLS.md §0.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..world import World
from .base import GARBAGE, Protocol


class ScpiError(Exception):
    """An SCPI error: goes to the error queue; the failing unit and the rest of its line do nothing."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f'{code},"{message}"')
        self.code = code
        self.message = message


# The SCPI-1999 error numbers and texts (Vol. 2, SYSTem:ERRor), as the R&S, Keysight, QDevil and Bristol
# manuals list them in their error-message chapters.
def command_error() -> ScpiError:
    return ScpiError(-100, "Command error")


def syntax_error() -> ScpiError:
    return ScpiError(-102, "Syntax error")


def parameter_not_allowed() -> ScpiError:
    return ScpiError(-108, "Parameter not allowed")


def missing_parameter() -> ScpiError:
    return ScpiError(-109, "Missing parameter")


def undefined_header() -> ScpiError:
    return ScpiError(-113, "Undefined header")


def suffix_out_of_range() -> ScpiError:
    return ScpiError(-114, "Header suffix out of range")


def settings_conflict() -> ScpiError:
    return ScpiError(-221, "Settings conflict")


def out_of_range() -> ScpiError:
    return ScpiError(-222, "Data out of range")


def illegal_value() -> ScpiError:
    return ScpiError(-224, "Illegal parameter value")


def data_stale() -> ScpiError:
    return ScpiError(-230, "Data corrupt or stale")


# --- IEEE 488.2 status bits --------------------------------------------------------------------
ESR_OPC = 0x01  # operation complete
ESR_QYE = 0x04  # query error (-4xx)
ESR_DDE = 0x08  # device-dependent error (-3xx)
ESR_EXE = 0x10  # execution error (-2xx)
ESR_CME = 0x20  # command error (-1xx)
ESR_PON = 0x80  # power on
STB_EAV = 0x04  # error/event queue not empty (SCPI-1999 status reporting)
STB_QUES = 0x08  # questionable status summary
STB_MAV = 0x10  # message available
STB_ESB = 0x20  # event status summary (ESR & ESE)
STB_RQS = 0x40  # request service / master summary status
STB_OPER = 0x80  # operation status summary


def _error_bit(code: int) -> int:
    if -199 <= code <= -100:
        return ESR_CME
    if -299 <= code <= -200:
        return ESR_EXE
    if -499 <= code <= -400:
        return ESR_QYE
    return ESR_DDE


# --- headers and parameters --------------------------------------------------------------------
_NODE = re.compile(r"(\[?)(:?)([A-Za-z*]+)(#?)(\]?)")
_SUFFIX_SCALE = {
    "": 1.0,
    "HZ": 1.0,
    "KHZ": 1e3,
    "MHZ": 1e6,
    "MAHZ": 1e6,  # SCPI: MAHZ is another spelling of MHz (mega)
    "GHZ": 1e9,
    "V": 1.0,
    "MV": 1e-3,
    "UV": 1e-6,
    "A": 1.0,
    "MA": 1e-3,
    "UA": 1e-6,
    "S": 1.0,
    "MS": 1e-3,
    "US": 1e-6,
    "NS": 1e-9,
    "DBM": 1.0,
    "DEG": 1.0,
    "OHM": 1.0,
    "W": 1.0,
    "MW": 1e-3,
    "PCT": 1.0,
    "DB": 1.0,
}
_NUMBER = re.compile(r"^([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE]\s*[-+]?\d+)?)\s*([A-Za-z]*)$")
_UNIT_HEADER = re.compile(
    r"^(\*[A-Za-z]+\??|:?[A-Za-z][A-Za-z0-9_]*(?::[A-Za-z][A-Za-z0-9_]*)*\??)(?:\s+(.*))?$",
    re.DOTALL,
)
_LOOKS_LIKE_HEADER = re.compile(r"^[:*]?[A-Za-z][A-Za-z0-9_:]*\??$")


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


def _block_end(text: str, i: int) -> int:
    """End index of the IEEE 488.2 definite-length block starting at text[i] == '#', or i + 1
    when it is not one."""
    if i + 1 >= len(text) or not "1" <= text[i + 1] <= "9":
        return i + 1
    digits = int(text[i + 1])
    length = text[i + 2 : i + 2 + digits]
    if len(length) < digits or not length.isdigit():
        raise syntax_error()
    end = i + 2 + digits + int(length)
    if end > len(text):
        raise syntax_error()
    return end


def _split(text: str, separator: str, nest: bool) -> list[str]:
    """Split at `separator` outside quoted strings, definite-length blocks and (with `nest`)
    parentheses such as a `(@1,2)` channel list; -102 for an unclosed quote or a short block."""
    parts: list[str] = []
    depth, quote, start, i = 0, "", 0, 0
    while i < len(text):
        c = text[i]
        if quote:
            quote = "" if c == quote else quote
        elif c in "\"'":
            quote = c
        elif c == "#":
            i = _block_end(text, i)
            continue
        elif nest and c == "(":
            depth += 1
        elif nest and c == ")":
            depth -= 1
        elif c == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if quote:
        raise syntax_error()
    parts.append(text[start:])
    return parts


def split_units(line: str) -> list[str]:
    """Program message units of one line: split at `;` outside strings and blocks."""
    return _split(line, ";", nest=False)


def split_args(args: str) -> list[str]:
    """Comma-separated parameters; commas inside strings, blocks or `(@...)` lists kept."""
    out = [a.strip() for a in _split(args, ",", nest=True)]
    return out if any(out) else []


def parse_block(arg: str) -> bytes:
    """The bytes of a definite-length block parameter `#<n><length><bytes>`."""
    text = arg.strip()
    if not text.startswith("#") or _block_end(text, 0) != len(text):
        raise illegal_value()
    digits = int(text[1])
    return text[2 + digits :].encode("latin-1")


def parse_number(
    arg: str,
    allowed_suffixes: tuple[str, ...] = (),
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    default: float | None = None,
) -> float:
    """A decimal numeric parameter, optionally with a unit suffix that scales, or one of the
    keywords MINimum/MAXimum/DEFault where the command defines them. Wrong kind: -224; out of
    [minimum, maximum] when both are given: -222."""
    text = arg.strip()
    if not text:
        raise missing_parameter()
    word = text.upper()
    keywords = {"MIN": minimum, "MINIMUM": minimum, "MAX": maximum, "MAXIMUM": maximum}
    keywords.update({"DEF": default, "DEFAULT": default})
    if word in keywords:
        value = keywords[word]
        if value is None:
            raise illegal_value()
        return value
    m = _NUMBER.match(text)
    if not m:
        raise illegal_value()
    suffix = m.group(2).upper()
    if suffix and suffix not in allowed_suffixes:
        raise illegal_value()
    value = float(m.group(1).replace(" ", "")) * _SUFFIX_SCALE.get(suffix, 1.0)
    if minimum is not None and maximum is not None and not minimum <= value <= maximum:
        raise out_of_range()
    return value


def parse_bool(arg: str) -> bool:
    """SCPI boolean: ON|OFF|1|0 (a numeric value is rounded; non-zero is ON: SCPI-1999 Vol. 1)."""
    word = arg.strip().upper()
    if not word:
        raise missing_parameter()
    if word == "ON":
        return True
    if word == "OFF":
        return False
    m = _NUMBER.match(word)
    if not m or m.group(2):
        raise illegal_value()
    return round(float(m.group(1))) != 0


def parse_choice(arg: str, choices: dict[str, str]) -> str:
    """A character parameter among `choices` (pattern like 'SWEep' -> its canonical reply),
    short or long form, any case."""
    word = arg.strip().upper()
    if not word:
        raise missing_parameter()
    for pattern, canonical in choices.items():
        short = "".join(c for c in pattern if c.isupper() or c.isdigit())
        if word in (pattern.upper(), short):
            return canonical
    raise illegal_value()


def fmt_g(value: float) -> str:
    return f"{value:.12g}"


def channel_number(suffixes: tuple[str, ...], count: int, default: int = 1) -> int:
    """The numeric suffix of a header node (SOUR3 -> 3), checked against the channel count."""
    text = next((s for s in suffixes if s), "")
    ch = int(text) if text else default
    if not 1 <= ch <= count:
        raise suffix_out_of_range()
    return ch


def parse_channel_list(arg: str) -> int:
    """'(@1)' -> 1; empty -> 1."""
    arg = arg.strip()
    if not arg:
        return 1
    m = re.fullmatch(r"\(@\s*(\d+)\s*\)", arg)
    if not m:
        raise illegal_value()
    return int(m.group(1))


def parse_channel_set(arg: str) -> list[int]:
    """'(@1,3:5)' -> [1, 3, 4, 5] (SCPI-1999 Vol. 1 channel list)."""
    m = re.fullmatch(r"\(@\s*([\d\s,:!]+)\)", arg.strip())
    if not m:
        raise illegal_value()
    out: list[int] = []
    for item in m.group(1).split(","):
        lo, _, hi = item.strip().replace("!", ":").partition(":")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise illegal_value()
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


Handler = Callable[[str, tuple[str, ...]], str | None]


@dataclass
class _Command:
    regex: re.Pattern[str]
    query: bool
    handler: Handler
    takes_args: bool
    max_suffix: int | None


class ScpiProtocol(Protocol):
    """An SCPI instrument: header table, compound lines, IEEE 488.2 status model, error queue."""

    idn = "ionpilot,sim,0,0"
    terminator = "\n"
    binary_blocks = True
    no_error = '0,"No error"'
    #: how an error queue entry is written (QDevil puts a space after the comma)
    error_format = '{code},"{message}"'
    queue_size = 10
    #: *OPT? reply (IEEE 488.2 §10: "0" when no option is installed)
    options = "0"

    def __init__(self, world: World, name: str) -> None:
        super().__init__(world, name)
        self.errors: deque[str] = deque()
        self._commands: list[_Command] = []
        self.esr = ESR_PON  # IEEE 488.2 §11: PON set when power comes on
        self.ese = 0
        self.sre = 0
        self.operation_enable = 0
        self.questionable_enable = 0
        self._common()
        self.setup()

    # ---- what a model provides ---------------------------------------------------------------

    def setup(self) -> None:
        """Subclasses register their headers here."""

    def reset(self) -> None:
        """*RST: the manual's reset state (subclasses). Sources must end with their output off."""

    def add(
        self,
        pattern: str,
        query: bool,
        handler: Handler,
        *,
        args: bool | None = None,
        max_suffix: int | None = None,
    ) -> None:
        """Register a header. `args`: whether parameters are accepted (default: commands yes,
        queries no, -108 otherwise). `max_suffix`: numeric header suffixes allowed 1..n (-114),
        None when the handler checks them itself."""
        takes = (not query) if args is None else args
        self._commands.append(_Command(compile_header(pattern), query, handler, takes, max_suffix))

    # ---- common commands and the SCPI-mandated subsystems -----------------------------------

    def _common(self) -> None:
        none: dict[str, bool] = {"args": False}
        self.add("*IDN", True, lambda a, s: self.idn)
        self.add("*OPT", True, lambda a, s: self.options)
        self.add("*RST", False, lambda a, s: self.reset(), **none)
        self.add("*CLS", False, lambda a, s: self.clear_status(), **none)
        self.add("*ESR", True, lambda a, s: str(self._read_esr()))
        self.add("*ESE", False, self._set_ese)
        self.add("*ESE", True, lambda a, s: str(self.ese))
        self.add("*SRE", False, self._set_sre)
        self.add("*SRE", True, lambda a, s: str(self.sre))
        self.add("*STB", True, lambda a, s: str(self.status_byte()))
        self.add("*OPC", False, lambda a, s: self._set_opc(), **none)
        self.add("*OPC", True, lambda a, s: self._opc_query())
        self.add("*WAI", False, lambda a, s: self.complete_pending(), **none)
        self.add("*TST", True, lambda a, s: "0")  # self-test passed
        self.add("SYSTem:ERRor[:NEXT]", True, lambda a, s: self.pop_error())
        self.add("SYSTem:ERRor:ALL", True, lambda a, s: self._all_errors())
        self.add("SYSTem:ERRor:COUNt", True, lambda a, s: str(len(self.errors)))
        self.add("SYSTem:ERRor:CODE[:NEXT]", True, lambda a, s: self._pop_code())
        self.add("SYSTem:VERSion", True, lambda a, s: "1999.0")
        self.add("STATus:PRESet", False, lambda a, s: self._status_preset(), **none)
        for reg in ("OPERation", "QUEStionable"):
            self.add(f"STATus:{reg}[:EVENt]", True, lambda a, s: "0")
            self.add(f"STATus:{reg}:CONDition", True, lambda a, s: "0")
            self.add(f"STATus:{reg}:ENABle", False, self._status_enable(reg))
            self.add(f"STATus:{reg}:ENABle", True, self._status_enable_query(reg))

    def _register_arg(self, arg: str) -> int:
        value = parse_number(arg)
        if value != int(value) or not 0 <= value <= 255:
            raise out_of_range()
        return int(value)

    def _set_ese(self, arg: str, _s: tuple[str, ...]) -> None:
        self.ese = self._register_arg(arg)

    def _set_sre(self, arg: str, _s: tuple[str, ...]) -> None:
        self.sre = self._register_arg(arg) & ~STB_RQS  # bit 6 cannot be enabled (IEEE 488.2 §11)

    def complete_pending(self) -> None:
        """Finish the overlapped operations still running (a counter's measurement): *WAI,
        *OPC and *OPC? return when they are done (IEEE 488.2 §12). Nothing by default."""

    def _set_opc(self) -> None:
        self.complete_pending()
        self.esr |= ESR_OPC

    def _opc_query(self) -> str:
        self.complete_pending()
        return "1"

    def _read_esr(self) -> int:
        value, self.esr = self.esr, 0
        return value

    def status_byte(self) -> int:
        """IEEE 488.2 §11: EAV, ESB, RQS/MSS computed from the registers."""
        stb = 0
        if self.errors:
            stb |= STB_EAV
        if self.esr & self.ese:
            stb |= STB_ESB
        if stb & self.sre:
            stb |= STB_RQS
        return stb

    def clear_status(self) -> None:
        """*CLS: event registers and the error queue cleared (enable registers kept)."""
        self.esr = 0
        self.errors.clear()

    def _status_preset(self) -> None:
        self.operation_enable = 0
        self.questionable_enable = 0

    def _status_enable(self, reg: str) -> Handler:
        def handler(arg: str, _s: tuple[str, ...]) -> None:
            value = parse_number(arg)
            if value != int(value) or not 0 <= value <= 32767:
                raise out_of_range()
            setattr(self, f"{reg.lower()}_enable", int(value))

        return handler

    def _status_enable_query(self, reg: str) -> Handler:
        return lambda a, s: str(getattr(self, f"{reg.lower()}_enable"))

    # ---- error queue ---------------------------------------------------------------------------

    def push_error(self, err: ScpiError) -> None:
        self.esr |= _error_bit(err.code)
        if len(self.errors) >= self.queue_size:
            self.errors[-1] = self.error_format.format(code=-350, message="Queue overflow")
            return
        self.errors.append(self.error_format.format(code=err.code, message=err.message))

    def pop_error(self) -> str:
        return self.errors.popleft() if self.errors else self.no_error

    def _pop_code(self) -> str:
        return self.pop_error().split(",", 1)[0]

    def _all_errors(self) -> str:
        if not self.errors:
            return self.no_error
        out = ",".join(self.errors)
        self.errors.clear()
        return out

    def garbage(self) -> bytes:
        return (GARBAGE + self.terminator).encode("latin-1")

    # ---- the parser ----------------------------------------------------------------------------

    def handle(self, line: str) -> bytes | None:
        """One program message. Units run in order; the first error stops the rest of the line
        (IEEE 488.2 message exchange); replies of the queries before it are still sent."""
        replies: list[str] = []
        previous: str | None = None
        try:
            units = split_units(line.strip())
            for unit in units:
                part = unit.strip()
                if not part:
                    if len(units) > 1:
                        continue  # "A;;B" and a trailing ";" are tolerated as empty units
                    break
                m = _UNIT_HEADER.match(part)
                if not m:
                    head = part.split(None, 1)[0]
                    raise undefined_header() if _LOOKS_LIKE_HEADER.match(head) else syntax_error()
                reply, previous = self._dispatch(m.group(1), (m.group(2) or "").strip(), previous)
                if reply is not None:
                    replies.append(reply)
        except ScpiError as err:
            self.push_error(err)
        if not replies:
            return None
        return (";".join(replies) + self.terminator).encode("latin-1")

    def _dispatch(self, header: str, args: str, previous: str | None) -> tuple[str | None, str]:
        query = header.endswith("?")
        bare = header[:-1] if query else header
        candidates = [bare]
        if previous and not bare.startswith((":", "*")) and ":" in previous:
            candidates.append(previous.rsplit(":", 1)[0] + ":" + bare)
        known_header = False
        for text in candidates:
            for cmd in self._commands:
                m = cmd.regex.match(text)
                if not m:
                    continue
                if cmd.query != query:
                    known_header = True
                    continue
                suffixes = tuple(g or "" for g in m.groups())
                if cmd.max_suffix is not None:
                    for suffix in suffixes:
                        if suffix and not 1 <= int(suffix) <= cmd.max_suffix:
                            raise suffix_out_of_range()
                if args and not cmd.takes_args:
                    raise parameter_not_allowed()
                path = previous if text.startswith("*") and previous else text
                return cmd.handler(args, suffixes), path
        if known_header:
            raise undefined_header()  # a query-only header set (or the reverse) is undefined
        raise undefined_header()
