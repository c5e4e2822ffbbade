"""Asking the recorder for history over the bus: one call, pages merged, times parsed.

Shared by `ionpilot history`, `ionpilot adev` and the script API (`lab.history`); the console
asks the same `get history` through its own asynchronous link.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ionpilot.core.units import UnitError, parse_quantity

Call = Callable[..., Any]  # (target, method, args, timeout=...) -> reply value
PROCESS = "recorder"
MAX_PAGES = 1000  # 10 million points at the default page size: then the caller must narrow
MJD_UNIX_EPOCH = 40587.0  # MJD of 1970-01-01T00:00Z

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")


def parse_when(text: str, now_ns: int) -> int:
    """A time as ns since the epoch: `now`, a duration back from now (`1h`, `5min`, `2 d`), or
    an ISO 8601 UTC time (`2026-12-01T03:00`, `...Z`, `...+01:00`; no zone means UTC)."""
    text = text.strip()
    if text == "now":
        return now_ns
    if _ISO.match(text):
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return int(when.timestamp() * 1e9)
    try:
        span = parse_quantity(text, "s").value
    except UnitError as exc:
        raise ValueError(
            f"time {text!r}: write a duration back from now (1h, 5min, 2d), 'now', or an ISO "
            f"UTC time such as 2026-12-01T03:00Z ({exc})"
        ) from None
    if span < 0:
        raise ValueError(f"time {text!r}: a duration back from now is positive")
    return now_ns - int(span * 1e9)


def parse_every(text: str) -> float:
    """A bucket width in seconds (`1min`, `10 s`, `1h`)."""
    try:
        every = parse_quantity(text, "s").value
    except UnitError as exc:
        raise ValueError(f"--every {text!r}: a duration such as 10s, 1min, 1h ({exc})") from None
    if not every > 0:
        raise ValueError(f"--every {text!r}: must be positive")
    return every


def fetch_history(
    call: Call,
    series: str,
    since_ns: int,
    until_ns: int,
    every_s: float | None = None,
    *,
    raw: bool = False,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """The whole range from the recorder (its pages merged): a dict of lists and metadata.
    `raw`: every sample, whatever their number."""
    args: dict[str, Any] = {"name": "history", "series": series, "since_ns": since_ns}
    args["until_ns"] = until_ns
    if raw:
        args["raw"] = True
    if every_s is not None:
        args["every_s"] = every_s
    result: dict[str, Any] | None = None
    for _ in range(MAX_PAGES):
        page = call(PROCESS, "get", dict(args), timeout=timeout)
        if not isinstance(page, dict):
            raise ValueError(f"the recorder answered {type(page).__name__}, not a history")
        if result is None:
            result = page
        else:
            for key, column in page.items():
                if isinstance(column, list):
                    result.setdefault(key, []).extend(column)
            result["tier"], result["every_s"] = page["tier"], page["every_s"]
        nxt = page.get("next_ns")
        if nxt is None:
            result["next_ns"] = None
            return result
        args["since_ns"] = int(nxt)
        if page.get("every_s") is not None:
            args["every_s"] = page["every_s"]  # keep the resolution chosen for page one
    raise ValueError(f"{series}: more than {MAX_PAGES} pages; ask for a coarser --every")


def mjd(t_ns: int) -> float:
    """Modified Julian Date (UTC) of a time in ns since the epoch."""
    return MJD_UNIX_EPOCH + t_ns / 86_400e9


def utc_text(t_ns: int) -> str:
    """ISO 8601 UTC with microseconds (truncated, exact: no float rounding) and a Z."""
    seconds, ns = divmod(t_ns, 1_000_000_000)
    when = datetime.fromtimestamp(seconds, tz=UTC)
    return f"{when:%Y-%m-%dT%H:%M:%S}.{ns // 1000:06d}Z"
