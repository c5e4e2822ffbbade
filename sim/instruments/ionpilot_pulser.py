"""The ionpilot pulse controller: newline-delimited JSON over TCP (PROTOCOLS.md §9)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..world import Pulse
from .base import Protocol

PROTOCOL_VERSION = 1
DDS_FREQUENCY_RANGE_HZ = (1e6, 400e6)
MAX_SHOTS = 10_000
MAX_RUN_S = 600.0
MAX_COUNT_S = 10.0
MAX_LINE_BYTES = 1 << 20
FEEDBACK_LATENCY_NS = 1000  # from the end of a detection window to a pulse that branches on it
MAX_CONDITION_BITS = 12
MAX_REGISTERS = 1024  # classical registers a schedule may define (computed during each shot)
CHANNELS = ("cool", "detect", "repump", "clock", "raman", "ms")


class RequestError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _bad(message: str) -> RequestError:
    return RequestError("bad_request", message)


def _number(obj: dict[str, Any], key: str, default: float | None = None) -> float:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(f"'{key}' must be a finite number")
    return float(value)


def _integer(obj: dict[str, Any], key: str, default: int | None = None) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"'{key}' must be an integer")
    return value


class Pulser(Protocol):
    def garbage(self) -> bytes:
        return b'{"id": \x7f#garbage\n'

    def handle(self, line: str) -> bytes | None:
        request_id: Any = None
        try:
            try:
                request = json.loads(line)
            except ValueError as exc:
                raise RequestError("parse_error", f"not JSON: {exc}") from None
            if not isinstance(request, dict):
                raise RequestError("parse_error", "a request is a JSON object")
            request_id = request.get("id")
            if isinstance(request_id, dict | list):
                request_id = None
                raise _bad("'id' must be a scalar")
            result = self._dispatch(request)
            reply: dict[str, Any] = {"id": request_id, "ok": True, "result": result}
        except RequestError as err:
            reply = {
                "id": request_id,
                "ok": False,
                "error": {"code": err.code, "message": err.message},
            }
        return (json.dumps(reply, separators=(",", ":")) + "\n").encode("utf-8")

    def _dispatch(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "ping":
            return {}
        if op == "describe":
            return {
                "model": "ionpilot_pulser",
                "protocol": PROTOCOL_VERSION,
                "n_ions": self.world.settings.n_ions,
                "dds_channels": sorted(self.world.dds),
                "pulse_channels": list(CHANNELS),
                "limits": {
                    "dds_frequency_hz": list(DDS_FREQUENCY_RANGE_HZ),
                    "dds_amplitude": [0.0, 1.0],
                    "max_shots": MAX_SHOTS,
                    "max_run_s": MAX_RUN_S,
                    "feedback_latency_ns": FEEDBACK_LATENCY_NS,
                    "max_condition_bits": MAX_CONDITION_BITS,
                    "max_registers": MAX_REGISTERS,
                },
            }
        if op == "set_dds":
            return self._set_dds(req)
        if op == "get_dds":
            return {"channel": self._dds_channel(req), **self.world.dds[self._dds_channel(req)]}
        if op == "count":
            duration = _number(req, "duration_s", 0.1)
            if not 0 < duration <= MAX_COUNT_S:
                raise RequestError("out_of_range", f"duration_s must be in (0, {MAX_COUNT_S}]")
            if req.get("per_ion"):
                total, per_ion = self.world.count_photons_per_ion(duration)
                return {"counts": total, "per_ion": per_ion, "duration_s": duration}
            return {"counts": self.world.count_photons(duration), "duration_s": duration}
        if op == "run":
            return self._run(req)
        raise RequestError("unknown_op", f"unknown op {op!r}")

    def _dds_channel(self, req: dict[str, Any]) -> str:
        channel = req.get("channel")
        if channel not in self.world.dds:
            raise _bad(f"unknown DDS channel {channel!r} (known: {sorted(self.world.dds)})")
        return str(channel)

    def _set_dds(self, req: dict[str, Any]) -> dict[str, Any]:
        channel = self._dds_channel(req)
        values: dict[str, float] = {}
        if "frequency_hz" in req:
            f = _number(req, "frequency_hz")
            if not DDS_FREQUENCY_RANGE_HZ[0] <= f <= DDS_FREQUENCY_RANGE_HZ[1]:
                raise RequestError("out_of_range", f"frequency_hz {f} outside the DDS range")
            values["frequency_hz"] = f
        if "amplitude" in req:
            a = _number(req, "amplitude")
            if not 0 <= a <= 1:
                raise RequestError("out_of_range", "amplitude must be in [0, 1]")
            values["amplitude"] = a
        if "phase_rad" in req:
            values["phase_rad"] = _number(req, "phase_rad")
        return {"channel": channel, **self.world.set_dds(channel, **values)}

    def _run(self, req: dict[str, Any]) -> dict[str, Any]:
        shots = _integer(req, "shots", 1)
        if not 1 <= shots <= MAX_SHOTS:
            raise RequestError("out_of_range", f"shots must be 1..{MAX_SHOTS}")
        raw = req.get("schedule")
        if not isinstance(raw, list) or not raw:
            raise _bad("'schedule' must be a non-empty list of pulses")
        pulses, windows, shot_s = self._program(raw)
        if shot_s * shots > MAX_RUN_S:
            raise RequestError("out_of_range", f"run lasts {shot_s * shots:g} s > {MAX_RUN_S} s")
        start = self.world.now()
        counts = self.world.run_schedule(pulses, shots)
        return {
            "windows": windows,
            "counts": counts,
            "t_start_s": start,
            "duration_s": self.world.now() - start,
        }

    def _program(self, raw: list[Any]) -> tuple[list[Pulse], list[str], float]:
        """A schedule's pulses parsed and checked, its counting windows in time order and the
        length of one shot (s)."""
        entries = [(i, p) for i, p in enumerate(raw) if not _is_register(p)]
        if not entries:
            raise _bad("'schedule' has registers but no pulse")
        pulses = [self._pulse(p, i) for i, p in entries]
        ends = {
            p.window: p.t_ns + p.duration_ns for p in pulses if p.window and p.channel == "detect"
        }
        registers = self._registers(raw, ends)
        pulses = self._conditions([raw[i] for i, _ in entries], pulses, ends, registers)
        shot_s = max(p.t_ns + p.duration_ns for p in pulses) * 1e-9
        windows = [p.window for p in sorted(pulses, key=lambda p: p.t_ns) if p.window]
        # registers first: at equal times they are computed before the pulses that read them
        return [*registers.values(), *pulses], windows, shot_s

    def _registers(self, raw: list[Any], ends: dict[str, int]) -> dict[str, Pulse]:
        """Classical registers, computed in each shot at `t_ns` from detection bits and earlier
        registers: {"register": name, "t_ns": t, "condition": {...}} sets the register to 1 when
        its condition holds, else 0 (a repeat-until-success loop's "still running")."""
        out: dict[str, Pulse] = {}
        for index, body in enumerate(raw):
            if not _is_register(body):
                continue
            name = body["register"]
            if not isinstance(name, str) or not name or name in ends or name in out:
                raise _bad(
                    f"entry {index}: register name {name!r} must be a new string, not a window's"
                )
            if len(out) >= MAX_REGISTERS:
                raise RequestError("out_of_range", f"more than {MAX_REGISTERS} registers")
            t_ns = _integer(body, "t_ns")
            if t_ns < 0:
                raise _bad(f"entry {index}: t_ns must be >= 0")
            cond = body.get("condition")
            if not isinstance(cond, dict):
                raise _bad(f"entry {index}: a register needs a condition object")
            test = self._test(f"register {name!r}", cond, t_ns, ends, out)
            out[name] = Pulse(t_ns=t_ns, duration_ns=0, channel="register", window=name)
            out[name] = replace(out[name], condition=test)
        return out

    def _conditions(
        self,
        raw: list[Any],
        pulses: list[Pulse],
        ends: dict[str, int],
        registers: dict[str, Pulse],
    ) -> list[Pulse]:
        """Conditional segments: `condition` = {"bits": [[window, ion] or register, ...],
        "accept": [ints], "threshold": counts}. Bit j reads 1 (dark) when ion's count in
        window is below the threshold (or is the register's value); the pulse plays if the
        bits read one of `accept`. Every window must end at least FEEDBACK_LATENCY_NS before
        the pulse starts, every register be computed by then. Coherent pulses, detections and
        pumping (repump) can be conditional; cooling cannot."""
        out = []
        for index, (body, pulse) in enumerate(zip(raw, pulses, strict=True)):
            cond = body.get("condition")
            if cond is None:
                out.append(pulse)
                continue
            if pulse.channel == "cool":
                raise _bad(f"pulse {index}: cooling cannot be conditional")
            test = self._test(f"pulse {index}", cond, pulse.t_ns, ends, registers)
            out.append(replace(pulse, condition=test))
        return out

    def _test(
        self,
        where: str,
        cond: Any,
        t_ns: int,
        ends: dict[str, int],
        registers: dict[str, Pulse],
    ) -> Callable[[dict[str, Any]], bool]:
        """A condition object checked (bits, accept, threshold, timing) and made a test."""
        n = self.world.settings.n_ions
        if not isinstance(cond, dict):
            raise _bad(f"{where}: condition must be an object")
        bits = cond.get("bits")
        accept = cond.get("accept")
        threshold = cond.get("threshold", 1)
        if (
            not isinstance(bits, list)
            or not 1 <= len(bits) <= MAX_CONDITION_BITS
            or not isinstance(accept, list)
            or not all(isinstance(a, int) and 0 <= a < (1 << len(bits)) for a in accept)
            or isinstance(threshold, bool)
            or not isinstance(threshold, int)
        ):
            raise _bad(
                f"{where}: condition needs bits (1..{MAX_CONDITION_BITS} [window, ion]"
                " pairs or register names), accept (assignments) and an integer threshold"
            )
        refs: list[tuple[str, int | None]] = []
        for bit in bits:
            if isinstance(bit, str):
                if bit not in registers:
                    raise _bad(f"{where}: condition bit {bit!r} names no earlier register")
                if registers[bit].t_ns > t_ns:
                    raise RequestError(
                        "out_of_range",
                        f"{where}: at {t_ns} ns reads register {bit!r}, computed only at "
                        f"{registers[bit].t_ns} ns",
                    )
                refs.append((bit, None))
                continue
            if (
                not isinstance(bit, list)
                or len(bit) != 2
                or bit[0] not in ends
                or not isinstance(bit[1], int)
                or not 0 <= bit[1] < n
            ):
                raise _bad(f"{where}: condition bit {bit!r} names no detect window/ion")
            if ends[bit[0]] + FEEDBACK_LATENCY_NS > t_ns:
                raise RequestError(
                    "out_of_range",
                    f"{where}: starts {t_ns - ends[bit[0]]} ns after window "
                    f"{bit[0]!r} ends; the feedback latency is {FEEDBACK_LATENCY_NS} ns",
                )
            refs.append((bit[0], bit[1]))
        return _branch(refs, frozenset(accept), threshold)

    def _pulse(self, raw: object, index: int) -> Pulse:
        if not isinstance(raw, dict):
            raise _bad(f"pulse {index} is not an object")
        channel = raw.get("channel")
        if channel not in CHANNELS:
            raise _bad(f"pulse {index}: unknown channel {channel!r} (known: {list(CHANNELS)})")
        t_ns = _integer(raw, "t_ns")
        duration_ns = _integer(raw, "duration_ns")
        if t_ns < 0 or duration_ns <= 0:
            raise _bad(f"pulse {index}: t_ns must be >= 0 and duration_ns > 0")
        amplitude = _number(raw, "amplitude", 1.0)
        if not 0 <= amplitude <= 1:
            raise RequestError("out_of_range", f"pulse {index}: amplitude must be in [0, 1]")
        window = raw.get("window")
        if window is not None and not isinstance(window, str):
            raise _bad(f"pulse {index}: window must be a string")
        if channel == "detect" and window is None:
            raise _bad(f"pulse {index}: a detect pulse needs a window name")
        if window is not None and channel not in ("cool", "detect"):
            raise _bad(f"pulse {index}: only cool and detect pulses count photons")
        n = self.world.settings.n_ions
        target = raw.get("target")
        if target is not None and (
            isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < n
        ):
            raise _bad(f"pulse {index}: target must be an ion index 0..{n - 1}")
        targets = (0, 1)
        if channel == "ms":
            tg = raw.get("targets")
            if (
                not isinstance(tg, list)
                or len(tg) != 2
                or not all(isinstance(x, int) and 0 <= x < n for x in tg)
                or tg[0] == tg[1]
            ):
                raise _bad(f"pulse {index}: ms needs two distinct ion indices in 'targets'")
            targets = (tg[0], tg[1])
        frequency = self._frequency(raw, index)
        ions = raw.get("ions")
        if ions is not None:
            if (
                channel not in ("detect", "repump")
                or not isinstance(ions, list)
                or not ions
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in ions)
                or not all(0 <= x < n for x in ions)
                or len(set(ions)) != len(ions)
            ):
                raise _bad(
                    f"pulse {index}: 'ions' (detect and repump only) must list distinct ion "
                    f"indices 0..{n - 1}"
                )
            ions = tuple(ions)
        phase_key = "phase_a_rad" if channel == "ms" else "phase_rad"
        return Pulse(
            t_ns=t_ns,
            duration_ns=duration_ns,
            channel=channel,
            amplitude=amplitude,
            phase_rad=_number(raw, phase_key, 0.0),
            frequency_hz=frequency,
            target=target,
            targets=targets,
            phase_b_rad=_number(raw, "phase_b_rad", 0.0),
            window=window,
            per_ion=bool(raw.get("per_ion", False)),
            ions=ions,
        )

    def _frequency(self, raw: dict[str, Any], index: int) -> float | None:
        """A pulse's own DDS frequency (None: the channel's), checked against the DDS range."""
        frequency = raw.get("frequency_hz")
        if frequency is not None:
            frequency = _number(raw, "frequency_hz")
            if not DDS_FREQUENCY_RANGE_HZ[0] <= frequency <= DDS_FREQUENCY_RANGE_HZ[1]:
                raise RequestError("out_of_range", f"pulse {index}: frequency outside DDS range")
        return frequency


def _is_register(entry: Any) -> bool:
    return isinstance(entry, dict) and "register" in entry


def _branch(
    refs: list[tuple[str, int | None]], accept: frozenset[int], threshold: int
) -> Callable[[dict[str, Any]], bool]:
    """The test a conditional pulse (or a register) applies to the windows counted and the
    registers computed so far in its shot (a window not counted in it reads 0, as does a
    register not computed)."""

    def test(seen: dict[str, Any]) -> bool:
        value = 0
        for j, (name, ion) in enumerate(refs):
            got = seen.get(name)
            if ion is None:
                value |= int(bool(got)) << j
            elif isinstance(got, list):
                value |= int(got[ion] < threshold) << j
        return value in accept

    return test
