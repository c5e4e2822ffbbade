"""ionpilot pulse controller: DDS set-points, photon counting and pulse programs.

Protocol (sim/PROTOCOLS.md §9): newline-delimited JSON over TCP, one request per line with an
`id` and an `op`; replies `{"id", "ok": true, "result"}` or `{"id", "ok": false, "error":
{code, message}}`. Requests are answered in order; the driver sends one at a time and checks
the echoed id. A refused request has applied nothing.
"""

from __future__ import annotations

import itertools
import json
import math
import socket
from typing import Any, ClassVar
from urllib.parse import urlsplit

from qcodes.instrument import Instrument
from qcodes.parameters import Parameter
from qcodes.validators import Numbers

from ionpilot.drivers.base import GuardedParameter, IonpilotDriver, hardware_range
from ionpilot.drivers.errors import (
    InstrumentCommandError,
    InstrumentReplyError,
    InstrumentTimeoutError,
    OutOfLimitsError,
)

MODEL = "ionpilot_pulser"
PROTOCOL_VERSION = 1
MAX_LINE_BYTES = 1 << 20
MAX_COUNT_S = 10.0
MAX_RUN_S = 60.0  # the longest run (all shots) the driver starts, whoever asks
MAX_SHOTS = 10_000
PULSE_CHANNELS = ("cool", "detect", "repump", "clock", "raman", "ms")
SEQUENCER = "sequencer"  # the sequencer service's principal (its process name in the lab file)


def parse_tcp_address(address: str) -> tuple[str, int]:
    """`tcp://host:port` -> (host, port)."""
    parts = urlsplit(address)
    if parts.scheme != "tcp" or not parts.hostname or parts.port is None:
        raise ValueError(f"pulser address must be tcp://host:port, not {address!r}")
    return parts.hostname, parts.port


def _number(result: dict[str, Any], key: str) -> float:
    value = result.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InstrumentReplyError(result, f"{key} is not a finite number")
    return float(value)


def _finite(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _check_in(
    guard: GuardedParameter | None,
    what: str,
    value: Any,
    hardware: tuple[float, float] = (-math.inf, math.inf),
) -> None:
    """`value` within the guard's allowed range (limits within hardware), else refused."""
    if not _finite(value):
        raise ValueError(f"{what} must be a finite number, not {value!r}")
    allowed = hardware if guard is None else guard.allowed_range()
    if not allowed[0] <= value <= allowed[1]:
        name = what if guard is None else f"{guard.full_name} ({what})"
        unit = "" if guard is None else guard.unit
        raise OutOfLimitsError(name, value, allowed, unit)


class PulserCommandError(InstrumentCommandError):
    """The pulse controller refused a request; `remote_code` is its error code."""

    def __init__(self, message: str, remote_code: str) -> None:
        super().__init__(message)
        self.remote_code = remote_code


class IonpilotPulser(Instrument, IonpilotDriver):
    """Pulse controller: one DDS channel's frequency/amplitude/phase, photon counts, `run`."""

    model_name: ClassVar[str] = MODEL
    bus_methods: ClassVar[tuple[str, ...]] = ("ping", "describe", "run")
    # every pulse goes through the sequencer's queue (held during recoveries, shared with the
    # clock servo): over the bus, only the sequencer service's identity may play a schedule
    bus_callers: ClassVar[dict[str, tuple[str, ...]]] = {"run": (SEQUENCER,)}

    def __init__(
        self,
        name: str,
        address: str,
        *,
        dds_channel: str = "clock_aom",
        timeout_s: float = 5.0,
        max_run_s: float = MAX_RUN_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, **kwargs)
        host, port = parse_tcp_address(address)
        if not 0 < max_run_s <= 600.0:
            raise ValueError(f"max_run_s must be in (0, 600] s, not {max_run_s!r}")
        self._timeout_s = timeout_s
        self.max_run_s = max_run_s
        self._run_timeout_s = max_run_s + timeout_s
        self._ids = itertools.count(1)
        self._sock: socket.socket | None = None
        self._buffer = b""
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout_s)
        except OSError as exc:
            self.close()
            raise InstrumentTimeoutError(f"{name}: cannot connect to {address}: {exc}") from exc
        self._dds_channel = dds_channel

        description = self.describe()
        if description.get("model") != MODEL or description.get("protocol") != PROTOCOL_VERSION:
            self.close()
            raise InstrumentReplyError(description, "not an ionpilot_pulser, protocol 1")
        channels = description.get("dds_channels")
        if not isinstance(channels, list) or dds_channel not in channels:
            self.close()
            raise InstrumentReplyError(description, f"no DDS channel {dds_channel!r}")

        self.dds_frequency: GuardedParameter = self.add_parameter(
            "dds_frequency",
            parameter_class=GuardedParameter,
            hardware=hardware_range(MODEL, "dds_frequency"),
            label=f"{dds_channel} frequency",
            get_cmd=lambda: _number(self._get_dds(), "frequency_hz"),
            set_cmd=lambda hz: self._set_dds(frequency_hz=float(hz)),
            docstring="DDS output frequency (Hz), e.g. the clock AOM drive.",
        )
        """DDS output frequency (Hz), e.g. the clock AOM drive."""

        self.dds_amplitude: GuardedParameter = self.add_parameter(
            "dds_amplitude",
            parameter_class=GuardedParameter,
            hardware=hardware_range(MODEL, "dds_amplitude"),
            label=f"{dds_channel} amplitude",
            get_cmd=lambda: _number(self._get_dds(), "amplitude"),
            set_cmd=lambda a: self._set_dds(amplitude=float(a)),
            docstring="DDS amplitude, fraction of full scale (0..1).",
        )
        """DDS amplitude, fraction of full scale (0..1)."""

        self.dds_phase: Parameter = self.add_parameter(
            "dds_phase",
            label=f"{dds_channel} phase",
            unit="rad",
            get_cmd=lambda: _number(self._get_dds(), "phase_rad"),
            set_cmd=lambda rad: self._set_dds(phase_rad=float(rad)),
            vals=Numbers(-2 * math.pi, 2 * math.pi),
            docstring="DDS phase offset (rad).",
        )
        """DDS phase offset (rad)."""

        self.count_duration: Parameter = self.add_parameter(
            "count_duration",
            label="Counting window",
            unit="s",
            get_cmd=None,
            set_cmd=None,
            initial_value=0.1,
            vals=Numbers(1e-6, MAX_COUNT_S),
            docstring="Window used by `counts` (s).",
        )
        """Window used by `counts` (s)."""

        self.counts: Parameter = self.add_parameter(
            "counts",
            label="Fluorescence counts",
            get_cmd=self._count,
            docstring="Photons counted in `count_duration` with the cooling beams on.",
        )
        """Photons counted in `count_duration` with the cooling beams on."""

        self.ion_threshold_rate: Parameter = self.add_parameter(
            "ion_threshold_rate",
            label="Per-ion presence threshold",
            unit="1/s",
            get_cmd=None,
            set_cmd=None,
            initial_value=3000.0,
            vals=Numbers(0.0, 1e9),
            docstring="An ion's own pixel above this rate while cooled: the ion is there (1/s).",
        )
        """An ion's own pixel above this rate while cooled: the ion is there (1/s)."""

        self.ions_fluorescing: Parameter = self.add_parameter(
            "ions_fluorescing",
            label="Ions fluorescing",
            get_cmd=self._ions_fluorescing,
            docstring="Ions of the chain whose own pixel counts above `ion_threshold_rate` "
            "in `count_duration` with the cooling beams on.",
        )
        """Ions of the chain whose own pixel counts above `ion_threshold_rate`."""

        self.connect_message()

    # --- protocol -----------------------------------------------------------------------------

    def request(self, op: str, *, timeout_s: float | None = None, **fields: Any) -> dict[str, Any]:
        """Send one request and return its `result`; a refusal raises PulserCommandError."""
        sock = self._sock
        if sock is None:
            raise InstrumentTimeoutError(f"{self.name}: closed")
        request_id = next(self._ids)
        line = json.dumps({"id": request_id, "op": op, **fields}, allow_nan=False) + "\n"
        sock.settimeout(self._timeout_s if timeout_s is None else timeout_s)
        try:
            sock.sendall(line.encode("utf-8"))
            raw = self._read_line(sock)
        except (TimeoutError, OSError) as exc:
            self._drop()
            raise InstrumentTimeoutError(f"{self.name}: {op}: {exc or 'timed out'}") from exc
        try:
            reply = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InstrumentReplyError(raw, "not JSON") from exc
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            raise InstrumentReplyError(raw, "not a reply object")
        if reply.get("id") != request_id:
            self._drop()  # out of step: nothing after this can be trusted
            raise InstrumentReplyError(raw, f"reply id is not {request_id}")
        if not reply["ok"]:
            error = reply.get("error")
            if not isinstance(error, dict):
                raise InstrumentReplyError(raw, "failure without an error object")
            code = str(error.get("code", "unknown"))
            raise PulserCommandError(
                f"{self.name}: {op} refused: {code}: {error.get('message')}", code
            )
        result = reply.get("result")
        if not isinstance(result, dict):
            raise InstrumentReplyError(raw, "result is not an object")
        return result

    def _read_line(self, sock: socket.socket) -> bytes:
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_LINE_BYTES:
                raise OSError("reply line longer than 1 MiB")
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the pulser")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _drop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._buffer = b""

    # --- operations ----------------------------------------------------------------------------

    def ping(self) -> None:
        """Round trip with no effect."""
        self.request("ping")

    def describe(self) -> dict[str, Any]:
        """Model, protocol, channels and limits as the controller reports them."""
        return self.request("describe")

    def run(self, shots: int, schedule: list[dict[str, Any]]) -> dict[str, Any]:
        """Run a pulse schedule `shots` times; returns windows and per-shot counts.

        Every pulse is checked here, whoever calls: a clock pulse's `frequency_hz` and
        `amplitude` against the DDS parameters' allowed ranges (the lab file's limits within
        the hardware range), every amplitude against the hardware's [0, 1], and the whole run
        against `max_run_s`. A refused run plays nothing (`OutOfLimitsError`, `ValueError`).
        A pulse may carry a `condition` ({"bits": [[window, ion], ...], "accept": [...],
        "threshold": n}): a conditional segment, played only in shots whose detection windows
        read so."""
        if isinstance(shots, bool) or not isinstance(shots, int) or not 1 <= shots <= MAX_SHOTS:
            raise ValueError(f"shots must be an int in 1..{MAX_SHOTS}, not {shots!r}")
        if not isinstance(schedule, list) or not schedule:
            raise TypeError("schedule must be a non-empty list of pulses")
        shot_ns = max(self._check_pulse(index, pulse) for index, pulse in enumerate(schedule))
        run_s = shots * shot_ns * 1e-9
        if run_s > self.max_run_s:
            raise ValueError(
                f"{self.name}: run of {shots} shots x {shot_ns * 1e-9:g} s lasts {run_s:g} s; "
                f"at most {self.max_run_s:g} s per run"
            )
        result = self.request("run", timeout_s=self._run_timeout_s, shots=shots, schedule=schedule)
        counts = result.get("counts")
        if not isinstance(counts, list) or len(counts) != shots:
            raise InstrumentReplyError(result, f"counts is not a list of {shots} shots")
        return result

    def _check_pulse(self, index: int, pulse: Any) -> int:
        """Check one pulse against the limits; returns the time its shot lasts at least (ns)."""
        if not isinstance(pulse, dict):
            raise TypeError(f"pulse {index} is not a map")
        if "register" in pulse and "channel" not in pulse:  # a classical register (PROTOCOLS §9)
            t_ns, cond = pulse.get("t_ns"), pulse.get("condition")
            if not isinstance(pulse["register"], str) or not pulse["register"]:
                raise ValueError(f"entry {index}: a register's name must be a non-empty string")
            if isinstance(t_ns, bool) or not isinstance(t_ns, int) or t_ns < 0:
                raise ValueError(f"entry {index}: t_ns must be a non-negative int, not {t_ns!r}")
            if not isinstance(cond, dict) or not isinstance(cond.get("bits"), list):
                raise ValueError(f"entry {index}: a register needs a condition with 'bits'")
            return t_ns
        channel = pulse.get("channel")
        if channel not in PULSE_CHANNELS:
            raise ValueError(f"pulse {index}: channel {channel!r} is not one of {PULSE_CHANNELS}")
        t_ns, duration_ns = pulse.get("t_ns"), pulse.get("duration_ns")
        for key, value in (("t_ns", t_ns), ("duration_ns", duration_ns)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"pulse {index}: {key} must be a non-negative int, not {value!r}")
        assert isinstance(t_ns, int) and isinstance(duration_ns, int)
        if duration_ns == 0:
            raise ValueError(f"pulse {index}: duration_ns must be positive")
        frequency = pulse.get("frequency_hz")
        if frequency is not None:
            _check_in(self.dds_frequency, f"pulse {index} ({channel}) frequency_hz", frequency)
        amplitude = pulse.get("amplitude")
        if amplitude is not None:
            guard = self.dds_amplitude if channel == "clock" else None
            _check_in(guard, f"pulse {index} ({channel}) amplitude", amplitude, (0.0, 1.0))
        for key in ("phase_rad", "phase_a_rad", "phase_b_rad"):
            phase = pulse.get(key)
            if phase is not None and not _finite(phase):
                raise ValueError(f"pulse {index}: {key} must be a finite number, not {phase!r}")
        cond = pulse.get("condition")
        if cond is not None and (
            not isinstance(cond, dict)
            or not isinstance(cond.get("bits"), list)
            or not isinstance(cond.get("accept"), list)
        ):
            raise ValueError(f"pulse {index}: condition needs 'bits' and 'accept' lists")
        return t_ns + duration_ns

    def _get_dds(self) -> dict[str, Any]:
        return self.request("get_dds", channel=self._dds_channel)

    def _set_dds(self, **values: float) -> None:
        result = self.request("set_dds", channel=self._dds_channel, **values)
        for key, wanted in values.items():
            if not math.isclose(_number(result, key), wanted, rel_tol=1e-9, abs_tol=1e-12):
                raise InstrumentReplyError(result, f"{key} reads back {result.get(key)!r}")

    def _count(self) -> int:
        duration = float(self.count_duration.get())
        result = self.request("count", timeout_s=self._timeout_s + duration, duration_s=duration)
        counts = result.get("counts")
        if isinstance(counts, bool) or not isinstance(counts, int) or counts < 0:
            raise InstrumentReplyError(result, "counts is not a non-negative integer")
        return counts

    def _ions_fluorescing(self) -> int:
        duration = float(self.count_duration.get())
        result = self.request(
            "count", timeout_s=self._timeout_s + duration, duration_s=duration, per_ion=True
        )
        per_ion = result.get("per_ion")
        if not isinstance(per_ion, list) or not all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in per_ion
        ):
            raise InstrumentReplyError(result, "per_ion is not a list of non-negative integers")
        limit = float(self.ion_threshold_rate.get()) * duration
        return sum(c > limit for c in per_ion)

    def get_idn(self) -> dict[str, str | None]:
        """Model and protocol from `describe` (no serial number)."""
        return {
            "vendor": "ionpilot",
            "model": MODEL,
            "serial": None,
            "firmware": f"protocol {PROTOCOL_VERSION}",
        }

    def close(self) -> None:
        """Close the TCP connection."""
        self._drop()
        super().close()
