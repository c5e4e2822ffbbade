"""Pulse schedules: timed events on the pulse controller's channels, in integer machine units.

A schedule is what reaches the trap: every pulse has a channel, a start and a duration in machine
units (1 mu = `DeviceSettings.time_unit`, 1 ns by default, on a grid of `grid_mu`), an amplitude,
an AOM frequency and a phase, and the qubit frames it drives. Single-qubit gates are carrier
pulses on an ion's addressed beam (or one pulse of the global beam when every ion gets the same
rotation); an MS gate is a pair of simultaneous bichromatic pulses on the two ions' addressed
beams; measurement and reset are detection and optical-pumping windows. `validate_schedule`
checks everything the hardware would refuse (ARTIQ-style: grid, minimum durations, collisions on
a channel, a frame driven twice at once, amplitude and frequency within the channel's bounds,
total length, event-rate budget) and names the offending events; nothing runs unless it passes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ionpilot.sequencer.compiler import NativeCircuit
from ionpilot.sequencer.errors import ScheduleError, SequencerError
from ionpilot.sequencer.settings import ChannelSettings, DeviceSettings

SCHEDULE_FORMAT = "ionpilot.schedule/1"
EVENT_KINDS = ("pulse", "ttl", "pump", "detect")
_KIND_CHANNELS = {
    "pulse": ("beam_global", "beam_addressed"),
    "ttl": ("ttl", "shutter"),
    "pump": ("ttl",),
    "detect": ("detection",),
}


@dataclass(frozen=True)
class PulseEvent:
    """One timed event on a channel; `sideband_hz` > 0 marks a bichromatic (MS) pulse."""

    name: str
    channel: str
    start_mu: int
    duration_mu: int
    kind: str = "pulse"
    amplitude: float = 0.0
    frequency_hz: float = 0.0
    phase_rad: float = 0.0
    sideband_hz: float = 0.0
    frames: tuple[str, ...] = ()
    qubits: tuple[int, ...] = ()
    clbits: tuple[int, ...] = ()
    window: str = ""  # a cooling event that also counts photons, under this window name
    condition: tuple[tuple[int, ...], tuple[int, ...]] | None = None

    @property
    def end_mu(self) -> int:
        """First machine unit after the event."""
        return self.start_mu + self.duration_mu


@dataclass
class Schedule:
    """Events plus what is needed to read results (qubit and bit counts, bit registers)."""

    num_qubits: int
    num_clbits: int
    events: list[PulseEvent] = field(default_factory=list)
    cregs: list[tuple[str, int]] = field(default_factory=list)
    final_frame: list[float] = field(default_factory=list)
    time_unit_s: float = 1e-9
    # records the controller computes during a shot from earlier ones: (record, input records,
    # accepted assignments), in definition order (`classical.Registers`)
    derived: list[tuple[int, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def duration_mu(self) -> int:
        """End of the last event."""
        return max((e.end_mu for e in self.events), default=0)

    def to_json(self) -> dict[str, Any]:
        """Plain-data form (the format the trap backend will send over the bus)."""
        return {
            "format": SCHEDULE_FORMAT,
            "time_unit_s": self.time_unit_s,
            "num_qubits": self.num_qubits,
            "num_clbits": self.num_clbits,
            "cregs": [[name, size] for name, size in self.cregs],
            "final_frame": list(self.final_frame),
            "events": [_event_json(e) for e in self.events],
            "derived": [[r, list(inputs), list(acc)] for r, inputs, acc in self.derived],
        }

    def dumps(self) -> str:
        """JSON text."""
        return json.dumps(self.to_json())

    @staticmethod
    def from_json(data: dict[str, Any]) -> Schedule:
        """Inverse of `to_json`; raises `SequencerError` on a malformed document."""
        try:
            if data.get("format") != SCHEDULE_FORMAT:
                raise SequencerError(f"not an {SCHEDULE_FORMAT} document")
            events = [
                PulseEvent(
                    name=str(e["name"]),
                    channel=str(e["channel"]),
                    start_mu=int(e["start_mu"]),
                    duration_mu=int(e["duration_mu"]),
                    kind=str(e.get("kind", "pulse")),
                    amplitude=float(e.get("amplitude", 0.0)),
                    frequency_hz=float(e.get("frequency_hz", 0.0)),
                    phase_rad=float(e.get("phase_rad", 0.0)),
                    sideband_hz=float(e.get("sideband_hz", 0.0)),
                    frames=tuple(str(f) for f in e.get("frames", ())),
                    qubits=tuple(int(q) for q in e.get("qubits", ())),
                    clbits=tuple(int(c) for c in e.get("clbits", ())),
                    window=str(e.get("window", "")),
                    condition=None
                    if e.get("condition") is None
                    else (
                        tuple(int(r) for r in e["condition"][0]),
                        tuple(int(a) for a in e["condition"][1]),
                    ),
                )
                for e in data["events"]
            ]
            return Schedule(
                num_qubits=int(data["num_qubits"]),
                num_clbits=int(data["num_clbits"]),
                events=events,
                cregs=[(str(n), int(s)) for n, s in data.get("cregs", [])],
                final_frame=[float(x) for x in data.get("final_frame", [])],
                time_unit_s=float(data.get("time_unit_s", 1e-9)),
                derived=[
                    (int(r), tuple(int(x) for x in inputs), tuple(int(a) for a in acc))
                    for r, inputs, acc in data.get("derived", [])
                ],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SequencerError(f"malformed schedule: {exc}") from None

    @staticmethod
    def loads(text: str) -> Schedule:
        """Parse JSON text."""
        return Schedule.from_json(json.loads(text))


def _event_json(e: PulseEvent) -> dict[str, Any]:
    out = {
        **asdict(e),
        "frames": list(e.frames),
        "qubits": list(e.qubits),
        "clbits": list(e.clbits),
        "condition": None if e.condition is None else [list(e.condition[0]), list(e.condition[1])],
    }
    if not e.window:
        del out["window"]  # only counting cooling events carry one
    return out


# --- from native gates to pulses -----------------------------------------------------------


def _to_grid(seconds: float, device: DeviceSettings) -> int:
    """Seconds to machine units, rounded up to the grid."""
    grid = device.grid_mu
    mu = math.ceil(seconds / device.time_unit - 1e-6)
    return max(grid, -(-mu // grid) * grid)


def addressed_channels(device: DeviceSettings) -> dict[int, str]:
    """Ion index -> name of its addressed beam channel."""
    out: dict[int, str] = {}
    for name, ch in device.channels.items():
        if ch.kind == "beam_addressed" and ch.ion is not None:
            out[ch.ion] = name
    return out


def _channel(device: DeviceSettings, name: str) -> ChannelSettings:
    ch = device.channels.get(name)
    if ch is None:
        raise SequencerError(f"device has no channel '{name}'")
    return ch


def ms_sideband_hz(device: DeviceSettings) -> float:
    """Offset of the MS tones from the carrier: motional frequency plus the loop-closing detuning."""
    return device.motional_frequency + 1.0 / device.ms_gate.duration


def build_schedule(
    native: NativeCircuit, device: DeviceSettings, ready_out: list[int] | None = None
) -> Schedule:
    """Time every native operation as-soon-as-possible on its channels (`ready_out`, if given,
    receives the time at which each qubit is free at the end)."""
    n = native.num_qubits
    if n > device.ions:
        raise SequencerError(f"program needs {n} qubits, the device has {device.ions} ions")
    addr = addressed_channels(device)
    missing = [q for q in range(n) if q not in addr]
    if missing:
        raise SequencerError(f"device has no addressed beam for ion(s) {missing}")
    unit = device.time_unit
    events: list[PulseEvent] = []
    cool = _to_grid(device.cooling_duration, device)
    pump = _to_grid(device.pumping_duration, device)
    events.append(PulseEvent("cool", device.cooling_channel, 0, cool, kind="ttl"))
    events.append(
        PulseEvent(
            "prepare", device.pumping_channel, cool, pump, kind="pump", qubits=tuple(range(n))
        )
    )
    start = cool + pump
    ready = [start] * n
    ms_free = start  # MS gates share the motional bus: one at a time
    ms_mu = _to_grid(device.ms_gate.duration, device)
    sideband = ms_sideband_hz(device)
    ops = native.ops
    i = 0
    index = 0
    detect_mu = _to_grid(device.detection_duration, device)
    latency_mu = _to_grid(device.feedback_latency, device) if device.feedback_latency > 0 else 0
    record_ready: dict[int, int] = {}
    while i < len(ops):
        op = ops[i]
        index += 1
        cond = op.condition
        if cond is not None:
            floor = max((record_ready.get(r, 0) for r in cond[0]), default=0)
            for q in op.qubits if op.kind != "measure" else range(n):
                ready[q] = max(ready[q], floor)
        if op.kind == "delay":
            mu = round(op.theta / unit / device.grid_mu) * device.grid_mu
            for q in op.qubits:
                ready[q] += mu
            i += 1
            continue
        if op.kind == "cal":
            t_end = _calibration_events(op, device, ready, events, index)
            for q in op.qubits:
                ready[q] = t_end
            i += 1
            continue
        if op.kind == "r":
            group = _global_group(ops, i, n)
            if group:
                ch_name = device.global_channel
                ch = _channel(device, ch_name)
                dur, amp = _carrier_timing(op.theta, ch, device)
                t0 = max(ready)
                events.append(
                    PulseEvent(
                        f"g{index:05d}.r.all",
                        ch_name,
                        t0,
                        dur,
                        amplitude=amp,
                        frequency_hz=ch.aom_center_frequency,
                        phase_rad=op.phases[0],
                        frames=tuple(f"q{q}" for q in range(n)),
                        condition=cond,
                    )
                )
                ready = [t0 + dur] * n
                i += n
                continue
            q = op.qubits[0]
            ch_name = addr[q]
            ch = _channel(device, ch_name)
            dur, amp = _carrier_timing(op.theta, ch, device)
            events.append(
                PulseEvent(
                    f"g{index:05d}.r.q{q}",
                    ch_name,
                    ready[q],
                    dur,
                    amplitude=amp,
                    frequency_hz=ch.aom_center_frequency,
                    phase_rad=op.phases[0],
                    frames=(f"q{q}",),
                    condition=cond,
                )
            )
            ready[q] += dur
        elif op.kind == "ms":
            a, b = op.qubits
            t0 = max(ready[a], ready[b], ms_free)
            amp = math.sqrt(op.theta / (math.pi / 2))
            for q, phase, tag in ((a, op.phases[0], "a"), (b, op.phases[1], "b")):
                ch = _channel(device, addr[q])
                events.append(
                    PulseEvent(
                        f"g{index:05d}.ms.q{a}q{b}.{tag}",
                        addr[q],
                        t0,
                        ms_mu,
                        amplitude=amp,
                        frequency_hz=ch.aom_center_frequency,
                        phase_rad=phase,
                        sideband_hz=sideband,
                        frames=(f"q{q}",),
                        condition=cond,
                    )
                )
            ready[a] = ready[b] = ms_free = t0 + ms_mu
        elif op.kind == "barrier":
            t0 = max(ready[q] for q in op.qubits)
            for q in op.qubits:
                ready[q] = t0
        elif op.kind in ("measure", "reset"):
            kind = op.kind
            qubits: list[int] = []
            clbits: list[int] = []
            while (
                i < len(ops)
                and ops[i].kind == kind
                and ops[i].condition == cond
                and ops[i].theta == op.theta
                and ops[i].qubits[0] not in qubits
            ):
                qubits.append(ops[i].qubits[0])
                clbits.extend(ops[i].clbits or (-1,))
                i += 1
            t0 = max(ready)
            if kind == "measure":
                dur = _to_grid(op.theta, device) if op.theta > 0 else detect_mu
                events.append(
                    PulseEvent(
                        f"g{index:05d}.detect",
                        device.detection_channel,
                        t0,
                        dur,
                        kind="detect",
                        qubits=tuple(qubits),
                        clbits=tuple(clbits),
                        condition=cond,
                    )
                )
                for c in clbits:
                    if c >= 0:
                        record_ready[c] = t0 + dur + latency_mu
            else:
                dur = pump
                events.append(
                    PulseEvent(
                        f"g{index:05d}.reset",
                        device.pumping_channel,
                        t0,
                        dur,
                        kind="pump",
                        qubits=tuple(qubits),
                        condition=cond,
                    )
                )
            ready = [t0 + dur] * n
            continue
        i += 1
    if ready_out is not None:
        ready_out[:] = ready
    return Schedule(
        num_qubits=n,
        num_clbits=native.num_clbits,
        events=events,
        cregs=list(native.cregs),
        final_frame=list(native.final_rz),
        time_unit_s=unit,
        derived=list(native.derived),
    )


def _global_group(ops: list[Any], i: int, n: int) -> bool:
    """Whether ops[i:i+n] are the same R on every one of the n ions (n >= 2)."""
    if n < 2 or i + n > len(ops):
        return False
    first = ops[i]
    seen = set()
    for op in ops[i : i + n]:
        if (
            op.kind != "r"
            or op.condition != first.condition
            or abs(op.theta - first.theta) > 1e-12
            or abs(op.phases[0] - first.phases[0]) > 1e-12
        ):
            return False
        seen.add(op.qubits[0])
    return len(seen) == n


def _calibration_events(
    op: Any, device: DeviceSettings, ready: list[int], events: list[PulseEvent], index: int
) -> int:
    """A defcal's instructions as events, each port's instructions one after the other."""
    t0 = max(ready[q] for q in op.qubits)
    cursor: dict[str, int] = {}
    n = len(ready)
    for k, item in enumerate(op.payload):
        kind, port = item[0], item[1]
        at = cursor.get(port, t0)
        if kind == "delay":
            cursor[port] = at + round(item[2] / device.time_unit / device.grid_mu) * device.grid_mu
        elif kind == "play":
            _, _, freq, phase, duration, amplitude, ion = item
            dur = _to_grid(duration, device)
            frames = (f"q{ion}",) if ion is not None else tuple(f"q{q}" for q in range(n))
            events.append(
                PulseEvent(
                    f"g{index:05d}.cal{k}.{port}",
                    port,
                    at,
                    dur,
                    amplitude=amplitude,
                    frequency_hz=freq,
                    phase_rad=phase % (2 * math.pi),
                    frames=frames,
                )
            )
            cursor[port] = at + dur
    return max(cursor.values(), default=t0)


def _carrier_timing(theta: float, ch: ChannelSettings, device: DeviceSettings) -> tuple[int, float]:
    """(duration in mu, amplitude) for a carrier rotation θ at close to full amplitude."""
    rate = 2 * math.pi * ch.rabi_frequency * ch.max_amplitude  # rad/s at full amplitude
    dur = max(_to_grid(theta / rate, device), _to_grid(ch.min_duration, device))
    amplitude = min(
        theta / (2 * math.pi * ch.rabi_frequency * dur * device.time_unit), ch.max_amplitude
    )
    return dur, amplitude


# --- the clock interrogation as a pulse program -------------------------------------------


def clock_interrogation(
    device: DeviceSettings,
    kind: str = "rabi",
    probe_time_s: float = 80e-3,
    detuning_hz: float = 0.0,
    *,
    ramsey_pulse_s: float = 1e-3,
    ramsey_phase_rad: float = 0.0,
    cooling_window: str = "",
    shot_s: float | None = None,
) -> Schedule:
    """Cool, prepare, probe the clock transition (Rabi π pulse of `probe_time_s`, or Ramsey with
    π/2 pulses of `ramsey_pulse_s` around a free evolution of `probe_time_s`) detuned by
    `detuning_hz` from the clock AOM's centre, then detect: one ion, one bit (1 = excited).
    With `cooling_window`, the cooling pulse counts photons under that name: every shot then
    says whether an ion was there (the daemon's ion watch). With `shot_s`, the cooling beam
    stays on after detection until the shot has lasted that long (the servo's probe cycle:
    readout dead time spent pre-cooling the next shot)."""
    ch_name = device.clock_channel
    ch = _channel(device, ch_name)
    unit = device.time_unit
    cool = _to_grid(device.cooling_duration, device)
    pump = _to_grid(device.pumping_duration, device)
    freq = ch.aom_center_frequency + detuning_hz
    events = [
        PulseEvent("cool", device.cooling_channel, 0, cool, kind="ttl", window=cooling_window),
        PulseEvent("prepare", device.pumping_channel, cool, pump, kind="pump", qubits=(0,)),
    ]
    t = cool + pump
    if kind == "rabi":
        dur = _to_grid(probe_time_s, device)
        amp = 1.0 / (2 * ch.rabi_frequency * dur * unit)
        events.append(
            PulseEvent(
                "probe", ch_name, t, dur, amplitude=amp, frequency_hz=freq, frames=("clock",)
            )
        )
        t += dur
    elif kind == "ramsey":
        dur = _to_grid(ramsey_pulse_s, device)
        free = _to_grid(probe_time_s, device)
        amp = 1.0 / (4 * ch.rabi_frequency * dur * unit)
        events.append(
            PulseEvent(
                "ramsey_1", ch_name, t, dur, amplitude=amp, frequency_hz=freq, frames=("clock",)
            )
        )
        t += dur + free
        events.append(
            PulseEvent(
                "ramsey_2",
                ch_name,
                t,
                dur,
                amplitude=amp,
                frequency_hz=freq,
                phase_rad=ramsey_phase_rad,
                frames=("clock",),
            )
        )
        t += dur
    else:
        raise SequencerError(f"unknown interrogation kind '{kind}' (rabi or ramsey)")
    detect = _to_grid(device.detection_duration, device)
    events.append(
        PulseEvent(
            "detect", device.detection_channel, t, detect, kind="detect", qubits=(0,), clbits=(0,)
        )
    )
    t += detect
    if shot_s is not None:
        end = _to_grid(shot_s, device)
        if end < t:
            raise SequencerError(
                f"a {shot_s * 1e3:g} ms shot is shorter than its pulses ({t * unit * 1e3:g} ms)"
            )
        if end > t:
            events.append(PulseEvent("recool", device.cooling_channel, t, end - t, kind="ttl"))
    return Schedule(1, 1, events, cregs=[("clock", 1)], final_frame=[0.0], time_unit_s=unit)


# --- validation ----------------------------------------------------------------------------


def validate_schedule(schedule: Schedule, device: DeviceSettings) -> None:
    """Raise `ScheduleError` naming every offending event; return quietly if all is well."""
    problems: list[tuple[str, str]] = []
    grid = device.grid_mu
    unit = device.time_unit
    if not abs(schedule.time_unit_s - unit) <= 1e-18:  # NaN too
        problems.append(
            ("<schedule>", f"time unit {schedule.time_unit_s} s is not the device's {unit} s")
        )
    names: set[str] = set()
    for e in schedule.events:
        if e.name in names:
            problems.append((e.name, "duplicate event name"))
        names.add(e.name)
        ch = device.channels.get(e.channel)
        if ch is None:
            problems.append((e.name, f"unknown channel '{e.channel}'"))
            continue
        if e.kind not in EVENT_KINDS:
            problems.append((e.name, f"unknown event kind '{e.kind}'"))
            continue
        if ch.kind not in _KIND_CHANNELS[e.kind]:
            problems.append(
                (e.name, f"a '{e.kind}' event cannot play on {ch.kind} channel '{e.channel}'")
            )
        if e.start_mu < 0 or e.duration_mu <= 0:
            problems.append(
                (e.name, f"start {e.start_mu} mu / duration {e.duration_mu} mu not positive")
            )
        if e.start_mu % grid or e.duration_mu % grid:
            problems.append(
                (
                    e.name,
                    f"off the {grid} mu grid (start {e.start_mu} mu, duration {e.duration_mu} mu)",
                )
            )
        min_mu = math.ceil(ch.min_duration / unit - 1e-6)
        if e.duration_mu < min_mu:
            problems.append(
                (e.name, f"duration {e.duration_mu} mu below the channel minimum {min_mu} mu")
            )
        for q in e.qubits:
            if not 0 <= q < schedule.num_qubits:
                problems.append((e.name, f"qubit {q} out of range"))
        for c in e.clbits:
            if not -1 <= c < schedule.num_clbits:
                problems.append((e.name, f"bit {c} out of range"))
        if e.window and (e.kind != "ttl" or e.channel != device.cooling_channel):
            problems.append(
                (
                    e.name,
                    f"counting window '{e.window}' on a {e.kind} event of '{e.channel}'; only "
                    f"the cooling channel '{device.cooling_channel}' counts besides detection",
                )
            )
        if e.kind == "pulse":
            if not 0.0 <= e.amplitude <= ch.max_amplitude or math.isnan(e.amplitude):
                problems.append(
                    (
                        e.name,
                        f"amplitude {e.amplitude:.6g} outside [0, {ch.max_amplitude:g}] of '{e.channel}'",
                    )
                )
            if not math.isfinite(e.phase_rad):
                problems.append((e.name, f"phase {e.phase_rad} rad is not a finite number"))
            lo = ch.aom_center_frequency - ch.aom_bandwidth / 2
            hi = ch.aom_center_frequency + ch.aom_bandwidth / 2
            tones = [e.frequency_hz - e.sideband_hz, e.frequency_hz + e.sideband_hz]
            if any(not lo <= f <= hi for f in tones):
                problems.append(
                    (
                        e.name,
                        f"frequency {e.frequency_hz / 1e6:.6f} MHz (sideband {e.sideband_hz / 1e6:.6f} MHz)"
                        f" outside the AOM band {lo / 1e6:.3f}-{hi / 1e6:.3f} MHz of '{e.channel}'",
                    )
                )
            if ch.kind == "beam_addressed" and ch.ion is not None and ch.ion >= schedule.num_qubits:
                problems.append(
                    (e.name, f"channel '{e.channel}' addresses ion {ch.ion}, not in the program")
                )
    problems.extend(_feedback(schedule.events, device, schedule.derived))
    # both branches of every conditional segment: all taken (the union of events) and none taken
    branches = [schedule.events]
    if any(e.condition is not None for e in schedule.events):
        branches.append([e for e in schedule.events if e.condition is None])
    seen_problems: set[tuple[str, str]] = set()
    for events in branches:
        found = _overlaps(events, lambda e: (e.channel,), "channel")
        found += _overlaps(events, lambda e: e.frames, "frame")
        found += _bichromatic_pairs(events)
        for p in found:
            if p not in seen_problems:
                seen_problems.add(p)
                problems.append(p)
    total_s = schedule.duration_mu * unit
    if total_s > device.max_schedule_duration:
        last = max(schedule.events, key=lambda e: e.end_mu)
        problems.append(
            (
                last.name,
                f"schedule lasts {total_s:.6g} s, over the {device.max_schedule_duration:g} s limit",
            )
        )
    problems.extend(_rate_budget(schedule.events, device))
    if problems:
        raise ScheduleError(problems)


def _feedback(
    events: list[PulseEvent],
    device: DeviceSettings,
    derived: Sequence[tuple[int, tuple[int, ...], tuple[int, ...]]] = (),
) -> list[tuple[str, str]]:
    """A conditional event may start only once the detections it depends on (through the
    derived records it reads, too) have ended and the controller's feedback latency has
    passed; a derived record reads only records measured or derived before it."""
    latency_mu = math.ceil(device.feedback_latency / device.time_unit - 1e-6)
    written: dict[int, list[PulseEvent]] = {}
    for e in events:
        if e.kind == "detect":
            for c in e.clbits:
                written.setdefault(c, []).append(e)
    out = []
    beneath: dict[int, frozenset[int]] = {}  # derived record -> the measured records under it
    for record, inputs, _ in derived:
        under: set[int] = set()
        for r in inputs:
            if r in beneath:
                under |= beneath[r]
            elif r in written:
                under.add(r)
            else:
                out.append(
                    (
                        f"derived record {record}",
                        f"reads record {r}, which no detection nor earlier derived record writes",
                    )
                )
        if record in written or record in beneath:
            out.append((f"derived record {record}", "is written twice"))
        beneath[record] = frozenset(under)
    for e in events:
        if e.condition is None:
            continue
        measured: set[int] = set()
        for r in e.condition[0]:
            measured |= beneath.get(r, {r})
        for r in sorted(measured):
            sources = [d for d in written.get(r, []) if d.end_mu <= e.start_mu]
            if not sources:
                out.append((e.name, f"depends on record {r}, which no earlier detection writes"))
                continue
            last = max(sources, key=lambda d: d.end_mu)
            gap = e.start_mu - last.end_mu
            if gap < latency_mu:
                out.append(
                    (
                        e.name,
                        f"starts {gap} mu after detection '{last.name}' ends; the controller "
                        f"needs its feedback latency of {latency_mu} mu to branch on it",
                    )
                )
    return out


def _overlaps(events: list[PulseEvent], keys: Any, what: str) -> list[tuple[str, str]]:
    by_key: dict[str, list[PulseEvent]] = {}
    for e in events:
        for key in keys(e):
            by_key.setdefault(key, []).append(e)
    out = []
    for key, group in by_key.items():
        group.sort(key=lambda e: e.start_mu)
        busy: PulseEvent | None = None
        for e in group:
            if busy is not None and e.start_mu < busy.end_mu:
                out.append((e.name, f"overlaps '{busy.name}' on {what} '{key}'"))
            if busy is None or e.end_mu > busy.end_mu:
                busy = e
    return out


def _bichromatic_pairs(events: list[PulseEvent]) -> list[tuple[str, str]]:
    """MS pulses come in exact pairs, and one pair at a time (they share the motional mode)."""
    ms = sorted(
        (e for e in events if e.kind == "pulse" and e.sideband_hz > 0), key=lambda e: e.start_mu
    )
    out = []
    groups: dict[tuple[int, int], list[PulseEvent]] = {}
    for e in ms:
        groups.setdefault((e.start_mu, e.duration_mu), []).append(e)
    busy_until = -1
    busy_name = ""
    for (start, dur), group in sorted(groups.items()):
        if len(group) != 2:
            for e in group:
                out.append(
                    (e.name, f"bichromatic pulses must come in pairs ({len(group)} start together)")
                )
        if start < busy_until:
            out.append((group[0].name, f"MS gate overlaps the MS gate of '{busy_name}'"))
        if start + dur > busy_until:
            busy_until, busy_name = start + dur, group[0].name
    return out


def _rate_budget(events: list[PulseEvent], device: DeviceSettings) -> list[tuple[str, str]]:
    """Leaky bucket over edges (each event is two timeline edges): the FIFO must not overflow."""
    edges = sorted([(e.start_mu, e.name) for e in events] + [(e.end_mu, e.name) for e in events])
    drain_per_mu = device.max_event_rate * device.time_unit
    level = 0.0
    last = 0
    for t, name in edges:
        level = max(0.0, level - (t - last) * drain_per_mu) + 1.0
        last = t
        if level > device.event_fifo_depth:
            return [
                (
                    name,
                    f"event rate over budget: more than {device.event_fifo_depth} queued edges "
                    f"at {device.max_event_rate:.3g} events/s (RTIO underflow)",
                )
            ]
    return []


# --- OpenQASM 3 calibrations -----------------------------------------------------------------


def native_defcals(device: DeviceSettings) -> str:
    """The native gates as OpenPulse `defcal`s for this device (ports, frames, R, MS, RZ)."""
    addr = addressed_channels(device)
    unit_ns = device.time_unit * 1e9
    lines = ["OPENQASM 3.0;", 'defcalgrammar "openpulse";', "cal {"]
    for ion, ch_name in sorted(addr.items()):
        ch = device.channels[ch_name]
        lines.append(f"  port {ch_name};")
        lines.append(f"  frame q{ion} = newframe({ch_name}, {ch.aom_center_frequency:.1f}, 0);")
    lines.append("}")
    sideband = ms_sideband_hz(device)
    ms_ns = _to_grid(device.ms_gate.duration, device) * unit_ns
    for ion, ch_name in sorted(addr.items()):
        ch = device.channels[ch_name]
        pi_ns = _to_grid(1 / (2 * ch.rabi_frequency * ch.max_amplitude), device) * unit_ns
        lines.append(f"defcal rz(angle[32] lam) ${ion} {{ shift_phase(q{ion}, -lam); }}")
        lines.append(
            f"defcal r(angle[32] theta, angle[32] phi) ${ion} {{ shift_phase(q{ion}, phi); "
            f"play(q{ion}, constant({pi_ns:.0f}ns, theta / pi)); shift_phase(q{ion}, -phi); }}"
        )
    for a in sorted(addr):
        for b in sorted(addr):
            if a < b:
                lines.append(
                    f"defcal ms(angle[32] theta, angle[32] pa, angle[32] pb) ${a}, ${b} {{ "
                    f"shift_phase(q{a}, pa); shift_phase(q{b}, pb); "
                    f"play(q{a}, bichromatic({ms_ns:.0f}ns, sqrt(2 * theta / pi), {sideband:.1f})); "
                    f"play(q{b}, bichromatic({ms_ns:.0f}ns, sqrt(2 * theta / pi), {sideband:.1f})); "
                    f"shift_phase(q{a}, -pa); shift_phase(q{b}, -pb); }}"
                )
    return "\n".join(lines) + "\n"
