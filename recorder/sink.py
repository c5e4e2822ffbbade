"""A copy of the numeric record to a time-series server, as Influx line protocol over HTTP.

Served by VictoriaMetrics (`/write`) and InfluxDB alike, so a lab that outgrows one machine gets
Grafana and PromQL on its data. The record stays the master copy: each batch of lines is first
written to a spool file on disk (temp file, fsync, rename), then sent, and the file is removed
only once the server has answered 2xx. Files are sent strictly in the order they were spooled,
one at a time, the oldest first; while the server is away the sender backs off (capped) and
retries the same file, so the server receives every batch once and in order. Points carry their
own bus timestamps: a batch that reached the server but whose answer was lost is written again
with the same series and times, which InfluxDB overwrites and VictoriaMetrics collapses when
deduplication is on (`-dedup.minScrapeInterval`).

The spool is bounded (`max_spool_bytes`): beyond it the oldest batch is dropped and counted in
`dropped_lines`, never silently.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import urllib.error
import urllib.request
from pathlib import Path

from ionpilot.bus.codec import Telemetry
from ionpilot.core.backoff import Backoff
from ionpilot.core.clock import Clock, SystemClock
from ionpilot.core.durable import temporary_prefix, write_atomically
from ionpilot.recorder.settings import InfluxSink

log = logging.getLogger(__name__)

MEASUREMENT = "ionpilot"
SUFFIX = ".lp"


def _tag(text: str) -> str:
    """A tag value in line protocol: commas, spaces and equals signs escaped."""
    return text.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ").replace("=", "\\=")


def _field_key(text: str) -> str:
    return _tag(text)


def _number(value: object) -> float | None:
    kind = type(value)
    if kind is float or kind is int or kind is bool:
        number = float(value)  # type: ignore[arg-type]
        return number if math.isfinite(number) else None
    return None


def line_of(msg: Telemetry) -> list[str]:
    """The line(s) of one reading: `ionpilot,topic=T,src=S[,unit=U] value=V <t_ns>`; a record's
    numeric fields as fields of one line. Text and non-finite numbers have no line."""
    tags = f"{MEASUREMENT},topic={_tag(msg.topic)},src={_tag(msg.src)}"
    if msg.unit:
        tags += f",unit={_tag(msg.unit)}"
    number = _number(msg.value)
    if number is not None:
        return [f"{tags} value={number!r} {msg.t}"]
    if type(msg.value) is dict:
        fields = []
        for key, item in msg.value.items():
            n = _number(item)
            if n is not None and isinstance(key, str):
                fields.append(f"{_field_key(key)}={n!r}")
        if fields:
            return [f"{tags} {','.join(fields)} {msg.t}"]
    return []


class LineSink:
    """Spools batches of lines durably and sends them in order from its own thread."""

    def __init__(
        self,
        settings: InfluxSink,
        spool_dir: str | Path,
        *,
        clock: Clock | None = None,
        post: object = None,
    ) -> None:
        if not settings.url:
            raise ValueError("the sink needs a url")
        self.settings = settings
        self.spool = Path(spool_dir)
        self.spool.mkdir(parents=True, exist_ok=True)
        for leftover in self.spool.glob(".*.tmp"):  # a write cut by a crash: never renamed
            leftover.unlink(missing_ok=True)
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._backoff = Backoff(settings.retry_initial, settings.retry_max)
        self._thread: threading.Thread | None = None
        files = self._files()
        self._next = int(files[-1].stem) + 1 if files else 1
        self.sent_lines = 0
        self.sent_batches = 0
        self.failures = 0
        self.dropped_lines = 0
        self.last_error = ""

    def _files(self) -> list[Path]:
        return sorted(p for p in self.spool.glob(f"*{SUFFIX}") if p.stem.isdigit())

    # ------------------------------------------------------------------------------ intake

    def put(self, lines: list[str]) -> None:
        """Spool `lines` (in batches of `max_batch_lines`) durably; the sender takes them."""
        size = self.settings.max_batch_lines
        with self._lock:
            for start in range(0, len(lines), size):
                chunk = lines[start : start + size]
                path = self.spool / f"{self._next:016d}{SUFFIX}"
                self._next += 1
                write_atomically(path, ("\n".join(chunk) + "\n").encode())
            self._bound()
        self._wake.set()

    def _bound(self) -> None:
        files = self._files()
        total = sum(p.stat().st_size for p in files)
        while files and total > self.settings.max_spool_bytes:
            oldest = files.pop(0)
            size = oldest.stat().st_size
            self.dropped_lines += oldest.read_bytes().count(b"\n")
            oldest.unlink(missing_ok=True)
            total -= size
            log.warning(
                "sink spool over %d bytes: dropped %s", self.settings.max_spool_bytes, oldest
            )

    def spooled(self) -> int:
        """Batches waiting on disk."""
        return len(self._files())

    # ------------------------------------------------------------------------------ sending

    def _post(self, body: bytes) -> None:
        request = urllib.request.Request(
            self.settings.url, data=body, method="POST", headers={"Content-Type": "text/plain"}
        )
        with urllib.request.urlopen(request, timeout=self.settings.timeout) as reply:
            if not 200 <= reply.status < 300:
                raise OSError(f"server answered {reply.status}")

    def pump(self) -> int:
        """Send spooled batches, oldest first, until none is left or one fails; batches sent."""
        sent = 0
        for path in self._files():
            try:
                body = path.read_bytes()
            except FileNotFoundError:  # dropped by the bound meanwhile
                continue
            try:
                self._post(body)
            except (OSError, urllib.error.URLError) as exc:
                self.failures += 1
                self.last_error = str(exc)
                return sent
            path.unlink(missing_ok=True)
            self.sent_batches += 1
            self.sent_lines += body.count(b"\n")
            sent += 1
            self._backoff.reset()
        return sent

    def start(self) -> LineSink:
        self._thread = threading.Thread(target=self._run, name="recorder-sink", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.pump()
            if self.spooled():  # the server is away: back off before the next try
                self._stop.wait(self._backoff.next_delay())
            else:
                self._wake.wait(self.settings.flush_interval)
                self._wake.clear()

    def stop(self) -> None:
        """Stop sending; what is spooled stays on disk for the next start."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.settings.timeout + 5.0)
            self._thread = None
        with contextlib.suppress(OSError):
            for leftover in self.spool.glob(temporary_prefix(Path("x")) + "*"):
                leftover.unlink(missing_ok=True)

    def stats(self) -> dict[str, object]:
        return {
            "spooled_batches": self.spooled(),
            "sent_batches": self.sent_batches,
            "sent_lines": self.sent_lines,
            "failures": self.failures,
            "dropped_lines": self.dropped_lines,
            "last_error": self.last_error,
        }
