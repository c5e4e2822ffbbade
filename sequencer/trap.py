"""The trap backend: validated schedules played on the lab's pulse controller through its driver
on the bus (sim/PROTOCOLS.md §9), and the per-ion photon counts read back as bits.

Each event is mapped by its channel's role and kind: the cooling channel -> `cool`; the pumping
channel -> `repump` (on the ions it resets, `ions`, when that is not every qubit); the detection
channel -> `detect` with per-ion counts, one named window per event, on the ions it reads (`ions`,
when not every qubit: the controller hides the others, PROTOCOLS §10); the clock channel ->
`clock` (amplitude, phase, AOM frequency); any other global beam -> `raman` without a target; an
addressed beam -> `raman` on its ion; a bichromatic pair on two addressed beams -> one `ms` pulse.
Raman and clock amplitudes carry over unchanged: the device config's Rabi frequencies are the
controller's calibration (configs/sim-lab.yaml matches the simulated lab). The MS amplitude is
re-expressed for the controller's linear law, θ = 2π·rate·a·t with rate = 1/(4·t_MS) (a full-power
gate of the calibrated duration is π/2). What the controller cannot do — detuned Raman pulses,
other TTLs and shutters, times that are not whole nanoseconds, overlapping pulses that touch the
same ion (it would play them one after the other) — is refused with `TrapTranslationError` before
anything is sent.

A qubit reads 0 (bright, S½) when its ion's count in the window reaches the device's
`detection_threshold`, else 1 (dark, D3/2).

On the trap backend every cooling pulse also counts each ion's fluorescence (a per-ion window `chain:<event>`): an
ion of the chain that scatters fewer than `CHAIN_MIN_COUNTS` photons while it is Doppler cooled
(~20 expected in 1 ms, whatever its qubit state) is gone, dark or hot, and the run is refused
with `ChainIncomplete` — no result comes from a partial chain (PROTOCOLS §10).
"""

from __future__ import annotations

import contextlib
import math
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from ionpilot.bus.client import CommandClient
from ionpilot.bus.codec import BusError, ErrorCode
from ionpilot.bus.settings import BusSettings
from ionpilot.sequencer.classical import derived_values
from ionpilot.sequencer.errors import BackendUnavailable, SequencerError, TrapTranslationError
from ionpilot.sequencer.schedule import PulseEvent, Schedule, validate_schedule
from ionpilot.sequencer.settings import DeviceSettings
from ionpilot.sequencer.simulator import SimulationResult

DEFAULT_DDS_RANGE_HZ = (1e6, 400e6)
CHAIN_MIN_COUNTS = 2  # cooling photons per ion and window below which the ion is not there
CHAIN_WINDOW_PREFIX = "chain:"
DEFAULT_MAX_SHOTS = 10_000
_UNAVAILABLE_CODES = frozenset(
    {
        ErrorCode.TIMEOUT,
        ErrorCode.UNKNOWN_TARGET,
        ErrorCode.INSTRUMENT_ERROR,
        ErrorCode.INSTRUMENT_TIMEOUT,
        ErrorCode.BUSY,
    }
)


class ChainIncomplete(BackendUnavailable):
    """The chain broke during a run (an ion lost, dark or melted): its shots are discarded."""


@dataclass(frozen=True)
class Readout:
    """One detection window and which classical bit each of its qubits goes to (-1: none)."""

    window: str
    qubits: tuple[int, ...]
    clbits: tuple[int, ...]
    # a conditional detection: played only in shots whose records read one of the accepted
    # assignments (elsewhere its bits read 0, as the simulator's)
    condition: tuple[tuple[int, ...], tuple[int, ...]] | None = None


@dataclass
class PulserProgram:
    """A schedule in the controller's terms: JSON pulses, readouts, and the length of one shot."""

    pulses: list[dict[str, Any]]
    readouts: list[Readout]
    num_qubits: int
    num_clbits: int
    shot_s: float
    chain_windows: tuple[str, ...] = ()  # per-ion cooling counts that say the chain is whole
    # records the controller computes during the shot (its registers): record, inputs, accepted
    derived: tuple[tuple[int, tuple[int, ...], tuple[int, ...]], ...] = ()


@dataclass
class _Placed:
    name: str
    start_ns: int
    end_ns: int
    ions: frozenset[int] | None  # None: every ion of the chain
    coherent: bool
    pulse: dict[str, Any] = field(default_factory=dict)


def translate_schedule(
    schedule: Schedule,
    device: DeviceSettings,
    dds_range_hz: tuple[float, float] = DEFAULT_DDS_RANGE_HZ,
    chain_check: bool = False,
) -> PulserProgram:
    """The controller's pulses for `schedule` (already validated against `device`); with
    `chain_check`, every cooling pulse also counts each ion (`check_chain`)."""
    problems: list[tuple[str, str]] = []
    ns_per_mu = schedule.time_unit_s / 1e-9
    n = schedule.num_qubits
    every = frozenset(range(n))
    placed: list[_Placed] = []
    readouts: list[Readout] = []
    pending_ms: dict[tuple[int, int], list[PulseEvent]] = {}
    chain_windows: list[str] = []
    grid = device.grid_mu
    ms_t = math.ceil(device.ms_gate.duration / schedule.time_unit_s / grid - 1e-6) * grid

    def to_ns(e: PulseEvent) -> tuple[int, int]:
        start, length = e.start_mu * ns_per_mu, e.duration_mu * ns_per_mu
        if abs(start - round(start)) > 1e-6 or abs(length - round(length)) > 1e-6:
            problems.append((e.name, "start or duration is not a whole number of nanoseconds"))
        return round(start), round(start) + max(1, round(length))

    records: dict[int, tuple[str, int]] = {}
    ready_ns: dict[int, int] = {}  # record -> when the controller may branch on it
    latency_ns = math.ceil(device.feedback_latency / 1e-9 - 1e-6)
    for e in schedule.events:
        if e.kind == "detect":
            for q, c in zip(e.qubits, e.clbits, strict=False):
                if c >= 0:
                    records[c] = (e.name, q)
                    ready_ns[c] = round(e.end_mu * ns_per_mu) + latency_ns
    registers: dict[int, str] = {}  # derived record -> the controller register holding it
    register_entries: list[dict[str, Any]] = []

    def bit(r: int, name: str) -> Any:
        if r in registers:
            return registers[r]
        if r not in records:
            problems.append((name, f"branches on record {r}, which no detection writes"))
            return None
        return list(records[r])

    def condition(e: PulseEvent) -> dict[str, Any] | None:
        if e.condition is None:
            return None
        bits = [bit(r, e.name) for r in e.condition[0]]
        if any(b is None for b in bits):
            return None
        return {
            "bits": bits,
            "accept": list(e.condition[1]),
            "threshold": device.detection_threshold,
        }

    for record, inputs, accepted in schedule.derived:
        name = f"register:{record}"
        bits = [bit(r, name) for r in inputs]
        at = max((ready_ns.get(r, 0) for r in inputs), default=0)
        registers[record] = name
        ready_ns[record] = at
        register_entries.append(
            {
                "register": name,
                "t_ns": at,
                "condition": {
                    "bits": bits,
                    "accept": list(accepted),
                    "threshold": device.detection_threshold,
                },
            }
        )

    def place(e: PulseEvent, touches: frozenset[int] | None, coherent: bool, **pulse: Any) -> None:
        start, end = to_ns(e)
        if e.condition is not None:
            if not coherent and e.kind not in ("detect", "pump"):
                problems.append(
                    (e.name, "the controller branches coherent pulses, detection and pumping")
                )
            cond = condition(e)
            if cond is not None:
                pulse["condition"] = cond
        if coherent and pulse["amplitude"] > 1.0 + 1e-12:
            problems.append(
                (e.name, f"amplitude {pulse['amplitude']:.6g} above the controller's 1")
            )
        body = {"t_ns": start, "duration_ns": end - start, **pulse}
        placed.append(_Placed(e.name, start, end, touches, coherent, body))

    for e in sorted(schedule.events, key=lambda e: (e.start_mu, e.channel)):
        ch = device.channels.get(e.channel)
        if ch is None:
            problems.append((e.name, f"unknown channel '{e.channel}'"))
            continue
        if e.kind in ("ttl", "pump"):
            if e.channel == device.cooling_channel and e.kind == "ttl":
                if chain_check:
                    window = e.window or f"{CHAIN_WINDOW_PREFIX}{e.name}"
                    chain_windows.append(window)
                    place(e, None, False, channel="cool", window=window, per_ion=True)
                else:  # a counting cooling window counts each ion (whether the chain is whole)
                    counting = {"window": e.window, "per_ion": True} if e.window else {}
                    place(e, None, False, channel="cool", **counting)
            elif e.channel == device.pumping_channel:
                if e.kind == "pump" and set(e.qubits) != every:
                    place(e, None, False, channel="repump", ions=sorted(e.qubits))
                else:
                    place(e, None, False, channel="repump")
            else:
                problems.append(
                    (
                        e.name,
                        f"{ch.kind} channel '{e.channel}' has no counterpart on the pulse "
                        f"controller (cooling plays on '{device.cooling_channel}', optical "
                        f"pumping on '{device.pumping_channel}')",
                    )
                )
        elif e.kind == "detect":
            if e.channel != device.detection_channel:
                problems.append((e.name, f"detection on '{e.channel}', not on the PMT"))
                continue
            readouts.append(Readout(e.name, e.qubits, e.clbits, e.condition))
            some = {"ions": sorted(e.qubits)} if set(e.qubits) != every else {}
            place(e, None, False, channel="detect", window=e.name, per_ion=True, **some)
        elif e.kind == "pulse" and e.channel == device.clock_channel:
            if e.sideband_hz:
                problems.append((e.name, "bichromatic pulses on the clock beam are not supported"))
            if not dds_range_hz[0] <= e.frequency_hz <= dds_range_hz[1]:
                problems.append(
                    (
                        e.name,
                        f"clock AOM frequency {e.frequency_hz / 1e6:.6f} MHz outside the "
                        f"controller's DDS range {dds_range_hz[0] / 1e6:g}-"
                        f"{dds_range_hz[1] / 1e6:g} MHz",
                    )
                )
            place(
                e,
                every,
                True,
                channel="clock",
                amplitude=e.amplitude,
                phase_rad=e.phase_rad,
                frequency_hz=e.frequency_hz,
            )
        elif e.kind == "pulse":
            offset = e.frequency_hz - ch.aom_center_frequency
            if abs(offset) > 1e-3:
                problems.append(
                    (
                        e.name,
                        f"detuned by {offset:.6g} Hz from the AOM centre of '{e.channel}'; the "
                        "controller's Raman pulses are resonant only",
                    )
                )
            if e.sideband_hz > 0:
                if ch.kind != "beam_addressed" or ch.ion is None:
                    problems.append((e.name, "an MS tone must play on an addressed beam"))
                    continue
                pair = pending_ms.setdefault((e.start_mu, e.duration_mu), [])
                pair.append(e)
                if len(pair) == 2:
                    del pending_ms[(e.start_mu, e.duration_mu)]
                    _place_ms(pair, device, ms_t, problems, place)
                continue
            if ch.kind == "beam_addressed" and ch.ion is not None:
                place(
                    e,
                    frozenset({ch.ion}),
                    True,
                    channel="raman",
                    amplitude=e.amplitude,
                    phase_rad=e.phase_rad,
                    target=ch.ion,
                )
            else:
                place(e, every, True, channel="raman", amplitude=e.amplitude, phase_rad=e.phase_rad)
        else:
            problems.append((e.name, f"'{e.kind}' events have no counterpart on the controller"))
    for pair in pending_ms.values():
        problems.extend((e.name, "bichromatic pulse without its partner") for e in pair)
    placed.sort(key=lambda p: p.start_ns)
    problems.extend(_collisions(placed, every))
    if problems:
        raise TrapTranslationError(problems)
    shot_ns = max((p.end_ns for p in placed), default=0)
    return PulserProgram(
        pulses=[*register_entries, *(p.pulse for p in placed)],
        readouts=readouts,
        num_qubits=n,
        num_clbits=schedule.num_clbits,
        shot_s=shot_ns * 1e-9,
        chain_windows=tuple(chain_windows),
        derived=tuple(schedule.derived),
    )


def _place_ms(
    pair: list[PulseEvent],
    device: DeviceSettings,
    ms_t: int,
    problems: list[tuple[str, str]],
    place: Any,
) -> None:
    """Two simultaneous bichromatic tones -> one `ms` pulse with the same angle and phases."""
    ea, eb = pair
    qa, qb = device.channels[ea.channel].ion, device.channels[eb.channel].ion
    if qa is None or qb is None or qa == qb:
        problems.append((ea.name, "an MS pair must drive two different ions"))
        return
    # the simulator's law θ = (π/2)·a_a·a_b·t/t_grid, where t_grid is the calibrated gate time
    # on the grid; the controller's θ = 2π·a·t/(4·t_MS): a = a_a·a_b·t_MS/t_grid
    amplitude = ea.amplitude * eb.amplitude * device.ms_gate.duration / (ms_t * device.time_unit)
    place(
        ea,
        frozenset({qa, qb}),
        True,
        channel="ms",
        targets=[qa, qb],
        amplitude=amplitude,
        phase_a_rad=ea.phase_rad,
        phase_b_rad=eb.phase_rad,
    )


def _collisions(placed: list[_Placed], every: frozenset[int]) -> list[tuple[str, str]]:
    """Pulses that overlap in time on a shared ion."""
    out: list[tuple[str, str]] = []
    active: list[_Placed] = []
    for p in placed:
        active = [a for a in active if a.end_ns > p.start_ns]
        ions = every if p.ions is None else p.ions
        for a in active:
            shared = ions & (every if a.ions is None else a.ions)
            if shared or p.ions is None or a.ions is None:
                out.append(
                    (
                        p.name,
                        f"overlaps '{a.name}' on ion(s) {sorted(shared) or 'all'}; the "
                        "controller plays overlapping pulses one after the other",
                    )
                )
                break
        active.append(p)
    return out


def decode_counts(
    program: PulserProgram, reply: dict[str, Any], shots: int, threshold: int
) -> Counter[int]:
    """Per-shot per-ion window counts -> how often each classical-bit value occurred."""
    windows = reply.get("windows")
    counts = reply.get("counts")
    if not isinstance(windows, list) or not isinstance(counts, list) or len(counts) != shots:
        raise SequencerError(
            f"trap backend: malformed reply from the pulse controller: {reply!r}"[:300]
        )
    index = {name: i for i, name in enumerate(windows)}
    missing = [r.window for r in program.readouts if r.window not in index]
    if missing:
        raise SequencerError(f"trap backend: the controller returned no window {missing[0]!r}")
    out: Counter[int] = Counter()
    derived = list(program.derived)
    for shot in counts:
        value = 0
        for r in program.readouts:
            per_ion = shot[index[r.window]] if isinstance(shot, list) else None
            if not isinstance(per_ion, list) or len(per_ion) < program.num_qubits:
                raise SequencerError(f"trap backend: window {r.window!r} has no per-ion counts")
            played = r.condition is None or _holds(r.condition, derived_values(value, derived))
            for q, c in zip(r.qubits, r.clbits, strict=True):
                if c < 0:
                    continue
                dark = played and per_ion[q] < threshold
                value = (value & ~(1 << c)) | (int(dark) << c)
        out[derived_values(value, derived) if derived else value] += 1
    return out


def _holds(condition: tuple[tuple[int, ...], tuple[int, ...]], value: int) -> bool:
    """Whether records `value` read one of the condition's accepted assignments."""
    records, accepted = condition
    assignment = 0
    for j, r in enumerate(records):
        assignment |= ((value >> r) & 1) << j
    return assignment in accepted


def check_chain(program: PulserProgram, reply: dict[str, Any]) -> None:
    """Raise `ChainIncomplete` if any shot's cooling found an ion of the chain not fluorescing."""
    windows = reply.get("windows")
    counts = reply.get("counts")
    if not program.chain_windows or not isinstance(windows, list) or not isinstance(counts, list):
        return
    index = {name: i for i, name in enumerate(windows)}
    at = [index[w] for w in program.chain_windows if w in index]
    missing: Counter[int] = Counter()
    for shot in counts:
        for i in at:
            per_ion = shot[i] if isinstance(shot, list) and i < len(shot) else None
            if not isinstance(per_ion, list):
                raise SequencerError("trap backend: a cooling window has no per-ion counts")
            for ion, c in enumerate(per_ion):
                if not isinstance(c, int) or c < CHAIN_MIN_COUNTS:
                    missing[ion] += 1
    if missing:
        ions = ", ".join(f"ion {ion} in {n} shot(s)" for ion, n in sorted(missing.items()))
        raise ChainIncomplete(
            f"trap backend: the chain is incomplete ({ions} of {len(counts)} did not fluoresce "
            f"while cooled, < {CHAIN_MIN_COUNTS} photons): an ion is lost, dark or the crystal "
            "melted; the run's shots are discarded (no result from a partial chain)"
        )


class PulserLink(Protocol):
    """How the trap backend reaches the pulse controller (the bus, or a fake in tests)."""

    def describe(self) -> dict[str, Any]:
        """The controller's `describe` (ions, channels, limits)."""
        ...

    def run(self, shots: int, pulses: list[dict[str, Any]], timeout_s: float) -> dict[str, Any]:
        """Play `pulses` `shots` times; the controller's reply (windows, counts)."""
        ...


class BusPulserLink:
    """The controller's driver, served by its driver host on the bus."""

    def __init__(
        self, bus: BusSettings, endpoint: str, target: str = "pulser", *, client: str = ""
    ) -> None:
        self.bus = bus
        self.endpoint = endpoint
        self.target = target
        self._client_name = client
        self._client: CommandClient | None = None

    def _call(self, method: str, args: dict[str, Any], timeout_s: float) -> Any:
        if self._client is None:
            _probe(self.endpoint, self.target)
            self._client = CommandClient(self.bus, self.endpoint, name=self._client_name)
        try:
            return self._client.call(self.target, method, args, timeout=timeout_s, retries=0)
        except BusError as exc:
            if exc.code == ErrorCode.TIMEOUT:
                raise BackendUnavailable(
                    f"trap backend: no reply from the driver host of '{self.target}' at "
                    f"{self.endpoint} within {timeout_s:g} s; is the lab running (`ionpilot up`)?"
                ) from None
            if exc.code in _UNAVAILABLE_CODES:
                raise BackendUnavailable(f"trap backend: {self.target}: {exc.message}") from None
            raise SequencerError(
                f"trap backend: the pulse controller refused: {exc.code}: {exc.message}"
            ) from None

    def describe(self) -> dict[str, Any]:
        state = self._call("describe", {}, self.bus.request_timeout)
        if isinstance(state, dict) and state.get("state") not in (None, "connected"):
            raise BackendUnavailable(
                f"trap backend: {self.target} is {state.get('state')}"
                f" ({state.get('last_error') or 'no connection yet'})"
            )
        value = self._call("call", {"name": "describe", "args": []}, self.bus.request_timeout * 3)
        if not isinstance(value, dict):
            raise SequencerError(f"trap backend: {self.target} describe returned {value!r}")
        return value

    def run(self, shots: int, pulses: list[dict[str, Any]], timeout_s: float) -> dict[str, Any]:
        value = self._call("call", {"name": "run", "args": [shots, pulses]}, timeout_s)
        if not isinstance(value, dict):
            raise SequencerError(f"trap backend: {self.target} run returned {value!r}"[:300])
        return value

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _probe(endpoint: str, target: str) -> None:
    """Fail at once (not after a timeout) when nothing listens at the driver host's port."""
    parts = urlsplit(endpoint)
    if parts.hostname is None or parts.port is None:
        raise BackendUnavailable(f"trap backend: bad endpoint {endpoint!r} for '{target}'")
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=1.0):
            pass
    except OSError:
        raise BackendUnavailable(
            f"trap backend: nothing listens at {endpoint}, the driver host that owns "
            f"'{target}'; start the lab with `ionpilot up`"
        ) from None


class TrapBackend:
    """The lab's pulse controller, reached through `link` (normally its driver on the bus).

    Long runs are split into calls of at most `max_call_s` of controller time each, so no single
    request outlives the driver host's command budget (3 x the instrument timeout + 1 s) and the
    daemon's clock probes, which share the controller, never wait long behind a user job."""

    name = "trap"

    def __init__(
        self, device: DeviceSettings, link: PulserLink | None = None, max_call_s: float = 2.0
    ) -> None:
        self.device = device
        self.link = link
        self.max_call_s = max_call_s
        # called between two calls of one long run: the sequencer service runs the clock's
        # interrogations there, so a user job never keeps the servo waiting beyond one call
        self.between_calls: Callable[[], None] | None = None
        self._described: dict[str, Any] | None = None  # the controller's `describe`, kept

    def describe(self) -> dict[str, Any]:
        """The controller's `describe` (its ions, limits), asked once and kept: asking on every
        job cost a request that waits behind the clock servo's run on the controller (0.49 s of
        a 1,000-shot Bell job's 2.0 s, bench/trap.py). Asked again after any failed call (a
        restarted driver host, a chain reloaded) and when a run's per-ion counts show another
        number of ions than described."""
        if self.link is None:
            raise BackendUnavailable(
                "the trap backend needs the lab's bus (a lab file with the pulse controller); "
                "it is not configured"
            )
        if self._described is None:
            self._described = self.link.describe()
        return self._described

    def _limits(self) -> dict[str, Any]:
        limits = self.describe().get("limits")
        return limits if isinstance(limits, dict) else {}

    def _dds_range(self) -> tuple[float, float]:
        dds = self._limits().get("dds_frequency_hz", DEFAULT_DDS_RANGE_HZ)
        return (float(dds[0]), float(dds[1]))

    def _check_ions(self, program: PulserProgram, reply: dict[str, Any]) -> None:
        """Forget the kept description when the reply's chain windows count other ions."""
        windows, counts = reply.get("windows"), reply.get("counts")
        if not program.chain_windows or not isinstance(windows, list) or not counts:
            return
        first = counts[0] if isinstance(counts, list) else None
        name = program.chain_windows[0]
        if isinstance(first, list) and name in windows and windows.index(name) < len(first):
            per_ion = first[windows.index(name)]
            described = (self._described or {}).get("n_ions")
            if isinstance(per_ion, list) and described != len(per_ion):
                self._described = None

    def play(self, schedule: Schedule, shots: int) -> dict[str, Any]:
        """Validate, translate and play `schedule` in one controller call; the controller's raw
        reply (`windows`, per-shot `counts`): a clock job, whose caller (the servo) reads its own
        windows; with classical bits, also `outcomes` (bit string -> shots). The controller's
        description is the kept one (`describe`)."""
        validate_schedule(schedule, self.device)
        if not 1 <= shots <= DEFAULT_MAX_SHOTS:
            raise SequencerError(f"shots must be 1..{DEFAULT_MAX_SHOTS} for one clock job")
        try:
            program = translate_schedule(schedule, self.device, self._dds_range())
            timeout = shots * program.shot_s + 10.0
            reply = self._play_call(shots, program, timeout)
        except SequencerError:
            self._described = None
            raise
        if program.num_clbits and isinstance(reply, dict):
            # what the classical bits read, as a user job's counts are keyed: for a caller
            # (an experiment) that wants outcomes rather than the windows
            # (a controller that gives no per-ion counts: the windows alone, as before)
            with contextlib.suppress(SequencerError):
                found = decode_counts(program, reply, shots, self.device.detection_threshold)
                width = program.num_clbits
                reply["outcomes"] = {format(v, f"0{width}b"): n for v, n in sorted(found.items())}
        return reply

    def run(self, schedule: Schedule, shots: int, seed: int | None = None) -> SimulationResult:
        """Validate, translate and play `schedule`; `seed` is meaningless on a real trap."""
        validate_schedule(schedule, self.device)
        if self.link is None:
            raise BackendUnavailable(
                "the trap backend needs the lab's bus (a lab file with the pulse controller); "
                "it is not configured"
            )
        if shots < 1:
            raise SequencerError("shots must be at least 1")
        try:
            counts = self._run_shots(schedule, shots)
        except SequencerError:
            self._described = None  # asked again for the next job
            raise
        return SimulationResult(
            counts=dict(counts),
            probabilities={k: v / shots for k, v in counts.items()},
            shots=shots,
            exact=False,
        )

    def _play_call(self, shots: int, program: PulserProgram, timeout_s: float) -> dict[str, Any]:
        """One `run` call on the link (`describe` has found it there)."""
        assert self.link is not None
        return self.link.run(shots, program.pulses, timeout_s)

    def _run_shots(self, schedule: Schedule, shots: int) -> Counter[int]:
        info = self.describe()
        limits = self._limits()
        program = translate_schedule(schedule, self.device, self._dds_range(), chain_check=True)
        latency_ns = limits.get("feedback_latency_ns")
        if (
            any(e.condition is not None for e in schedule.events)
            and isinstance(latency_ns, int | float)
            and latency_ns * 1e-9 > self.device.feedback_latency + 1e-12
        ):
            raise SequencerError(
                f"trap backend: the pulse controller needs {latency_ns:g} ns to branch on a "
                f"detection; the device settings promise {self.device.feedback_latency * 1e9:g} ns"
            )
        ions = info.get("n_ions")
        if isinstance(ions, int) and ions < schedule.num_qubits:
            raise SequencerError(
                f"trap backend: the trap holds {ions} ion(s); the program needs "
                f"{schedule.num_qubits} qubits"
            )
        max_shots = int(limits.get("max_shots", DEFAULT_MAX_SHOTS))
        per_call = max(1, min(max_shots, int(self.max_call_s / max(program.shot_s, 1e-9))))
        counts: Counter[int] = Counter()
        done = 0
        while done < shots:
            batch = min(per_call, shots - done)
            timeout = batch * program.shot_s + 10.0 + 3 * self.device.max_schedule_duration
            reply = self._play_call(batch, program, timeout)
            self._check_ions(program, reply)
            check_chain(program, reply)
            counts += decode_counts(program, reply, batch, self.device.detection_threshold)
            done += batch
            if done < shots and self.between_calls is not None:
                self.between_calls()
        return counts
