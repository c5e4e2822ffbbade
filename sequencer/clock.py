"""The clock interrogation as the pulse controller plays it: `clock_interrogation` built, validated
and translated once per probe shape, then re-tuned for each servo update.

The servo steers only the clock AOM frequency between interrogations; everything else of a probe
(timings, amplitudes, windows) stays. So the schedule is validated and translated once, and each
interrogation only checks its new frequency against the clock channel's AOM band and the
controller's DDS range (the two rules of `validate_schedule` and `translate_schedule` that depend
on it) — a daemon update costs microseconds, not a schedule validation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ionpilot.sequencer.errors import ScheduleError
from ionpilot.sequencer.schedule import (
    PulseEvent,
    Schedule,
    clock_interrogation,
    validate_schedule,
)
from ionpilot.sequencer.settings import DeviceSettings
from ionpilot.sequencer.trap import DEFAULT_DDS_RANGE_HZ, translate_schedule

COOL_WINDOW = "cool"  # the counting window of each shot's cooling pulse
DETECT_WINDOW = "detect"  # the detection event's window (its event name)


@dataclass(frozen=True)
class ClockProgram:
    """A validated, translated clock interrogation; `pulses_at(f)` re-tunes its clock pulses,
    `schedule_at(f)` its schedule (the clock job the daemon hands the sequencer's queue)."""

    schedule: Schedule
    pulses: tuple[dict[str, Any], ...]
    clock_pulses: tuple[int, ...]  # indices of the clock-beam pulses in `pulses`
    shot_s: float
    band_hz: tuple[float, float]  # the clock frequencies allowed (AOM band ∩ DDS range)
    cooling_window: str
    detect_window: str

    def pulses_at(self, aom_frequency_hz: float) -> list[dict[str, Any]]:
        """The controller's pulses with the clock beam at `aom_frequency_hz` (ScheduleError,
        nothing built, if the frequency is outside what the channel and controller allow)."""
        self._check_band(aom_frequency_hz)
        out = list(self.pulses)
        for i in self.clock_pulses:
            out[i] = {**out[i], "frequency_hz": aom_frequency_hz}
        return out

    def schedule_at(self, aom_frequency_hz: float) -> Schedule:
        """The schedule itself with the clock beam at `aom_frequency_hz` (what a clock job in the
        sequencer's queue carries; ScheduleError if the frequency is outside the band)."""
        self._check_band(aom_frequency_hz)
        events = [
            dataclasses.replace(e, frequency_hz=aom_frequency_hz) if "clock" in e.frames else e
            for e in self.schedule.events
        ]
        return dataclasses.replace(self.schedule, events=events)

    def _check_band(self, aom_frequency_hz: float) -> None:
        lo, hi = self.band_hz
        if not lo <= aom_frequency_hz <= hi:
            raise ScheduleError(
                [
                    (
                        "probe",
                        f"clock AOM frequency {aom_frequency_hz / 1e6:.6f} MHz outside "
                        f"{lo / 1e6:.3f}-{hi / 1e6:.3f} MHz (AOM band and DDS range)",
                    )
                ]
            )


def clock_device(
    device: DeviceSettings,
    *,
    cooling_s: float,
    detection_s: float,
    clock_rabi_hz: float,
) -> DeviceSettings:
    """`device` with the servo's own calibration of its interrogation: cooling and detection
    times and the clock beam's Rabi frequency at full amplitude."""
    channel = device.channels[device.clock_channel]
    channels = dict(device.channels)
    channels[device.clock_channel] = dataclasses.replace(channel, rabi_frequency=clock_rabi_hz)
    return dataclasses.replace(
        device, cooling_duration=cooling_s, detection_duration=detection_s, channels=channels
    )


def clock_program(
    device: DeviceSettings,
    kind: str,
    probe_time_s: float,
    *,
    ramsey_pulse_s: float = 1e-3,
    count_cooling: bool = True,
    shot_s: float | None = None,
    dds_range_hz: tuple[float, float] = DEFAULT_DDS_RANGE_HZ,
) -> ClockProgram:
    """`clock_interrogation` at the AOM centre, validated and translated (ScheduleError or
    TrapTranslationError naming the offending event if the device cannot play it)."""
    window = COOL_WINDOW if count_cooling else ""
    schedule = clock_interrogation(
        device,
        kind,
        probe_time_s,
        ramsey_pulse_s=ramsey_pulse_s,
        cooling_window=window,
        shot_s=shot_s,
    )
    validate_schedule(schedule, device)
    program = translate_schedule(schedule, device, dds_range_hz)
    channel = device.channels[device.clock_channel]
    lo = max(channel.aom_center_frequency - channel.aom_bandwidth / 2, dds_range_hz[0])
    hi = min(channel.aom_center_frequency + channel.aom_bandwidth / 2, dds_range_hz[1])
    pulses = tuple(program.pulses)
    clock = tuple(i for i, p in enumerate(pulses) if p["channel"] == "clock")
    detect = [r.window for r in program.readouts]
    return ClockProgram(
        schedule=schedule,
        pulses=pulses,
        clock_pulses=clock,
        shot_s=program.shot_s,
        band_hz=(lo, hi),
        cooling_window=window,
        detect_window=detect[0] if detect else DETECT_WINDOW,
    )


PRESENCE_WINDOW = "presence"  # the counting window of the presence check


def presence_schedule(device: DeviceSettings, count_s: float) -> Schedule:
    """One cooling pulse of `count_s` that counts photons (is an ion there, and bright?): what
    the daemon's fluorescence check plays through the sequencer instead of gating the counter."""
    steps = max(1, round(count_s / device.time_unit / device.grid_mu))
    cool = PulseEvent(
        "presence",
        device.cooling_channel,
        0,
        steps * device.grid_mu,
        kind="ttl",
        window=PRESENCE_WINDOW,
    )
    return Schedule(num_qubits=1, num_clbits=0, events=[cool], time_unit_s=device.time_unit)
