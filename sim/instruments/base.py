"""What every simulated instrument is: a protocol object turning one request line into the
exact reply bytes (terminators, prompts and echoes included), separate from the socket plumbing
so protocol tests can call `handle` directly. The SCPI engine the SCPI models share is scpi.py."""

from __future__ import annotations

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
    #: requests may carry IEEE 488.2 definite-length blocks (`#<n><length><bytes>`), whose bytes
    #: can contain the separator: the server reads them whole and passes bytes as latin-1
    binary_blocks: bool = False

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


# The SCPI engine moved to scpi.py (one core for every SCPI model); its names stay importable here.
from .scpi import (  # noqa: E402
    ScpiError,
    ScpiProtocol,
    channel_number,
    command_error,
    compile_header,
    fmt_g,
    illegal_value,
    missing_parameter,
    out_of_range,
    parse_bool,
    parse_channel_list,
    parse_number,
)

__all__ = [
    "GARBAGE",
    "Protocol",
    "ScpiError",
    "ScpiProtocol",
    "channel_number",
    "command_error",
    "compile_header",
    "fmt_g",
    "illegal_value",
    "missing_parameter",
    "out_of_range",
    "parse_bool",
    "parse_channel_list",
    "parse_number",
]
