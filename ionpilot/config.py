"""The lab configuration: one YAML file (plus the files it includes) read into typed settings and
validated completely before anything starts. Every error names the file, the line, the dotted key,
what was found and what is allowed; all errors are reported at once."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, get_args, get_type_hints

from ionpilot.bus.settings import BusSettings, ProcessSettings
from ionpilot.core.units import Quantity, describe_unit, format_quantity
from ionpilot.drivers.hardware import MODELS, HardwareRange, InstrumentModel
from ionpilot.recorder.settings import MetricsSettings, RecorderSettings
from ionpilot.schema import INVALID, SchemaIssue, SettingsBuilder
from ionpilot.sequencer.settings import DeviceSettings
from ionpilot.servo.settings import (
    FaultKind,
    HealthRule,
    HealthSettings,
    RecoverySettings,
    ServoSettings,
)
from ionpilot.sim.settings import SimSettings
from ionpilot.yamltree import LoadIssue, Mark, Node, load_tree

DEFAULT_CONFIG = Path("configs/sim-lab.yaml")
# processes `ionpilot up` starts as something else than a driver host (hub is not a process)
NOT_DRIVER_HOSTS = {
    "sim": "simulated lab",
    "daemon": "servo daemon",
    "sequencer": "sequencer service",
    "recorder": "recorder",
}


@dataclass(frozen=True)
class LabInfo:
    """Who this lab is and where it keeps its data."""

    name: str
    description: str = ""
    data_dir: str = "var"


@dataclass(frozen=True)
class Limit:
    """A safety limit on one parameter; it may narrow the hardware range, never widen it."""

    min: Quantity | None = None
    max: Quantity | None = None


@dataclass(frozen=True)
class InstrumentConfig:
    """One instrument: its model, where it is, its safety limits and how often to read it."""

    model: str
    address: str
    host: str = "drivers"
    timeout: Annotated[float, "s"] = 2.0
    limits: dict[str, Limit] = field(default_factory=dict)
    poll: dict[str, Annotated[float, "s"]] = field(default_factory=dict)
    enabled: bool = True

    def limit_values(self) -> dict[str, tuple[float | None, float | None]]:
        """Limits in SI units, keyed as written (`voltage` or `ch05.voltage`)."""
        return {
            name: (
                limit.min.value if limit.min is not None else None,
                limit.max.value if limit.max is not None else None,
            )
            for name, limit in self.limits.items()
        }


@dataclass(frozen=True)
class LabConfig:
    """The whole lab, validated."""

    lab: LabInfo
    bus: BusSettings = field(default_factory=BusSettings)
    processes: dict[str, ProcessSettings] = field(default_factory=dict)
    instruments: dict[str, InstrumentConfig] = field(default_factory=dict)
    servo: ServoSettings = field(default_factory=ServoSettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    recovery: RecoverySettings = field(default_factory=RecoverySettings)
    device: DeviceSettings = field(default_factory=DeviceSettings)
    sim: SimSettings = field(default_factory=SimSettings)
    recorder: RecorderSettings = field(default_factory=RecorderSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)


@dataclass(frozen=True)
class LoadedConfig:
    """A validated configuration with the files it came from and the place of every key."""

    config: LabConfig
    files: tuple[str, ...]
    marks: dict[str, Mark]
    tree: Node


class ConfigError(Exception):
    """The configuration is invalid; `issues` lists every problem found."""

    def __init__(self, issues: list[SchemaIssue]) -> None:
        self.issues = sorted(issues, key=lambda i: (i.mark.file, i.mark.line, i.mark.column))
        super().__init__("\n".join(str(i) for i in self.issues))


def load_config(path: str | Path = DEFAULT_CONFIG) -> LabConfig:
    """Read and validate a lab file; raise ConfigError listing every problem."""
    return load_config_with_marks(path).config


def load_config_with_marks(path: str | Path) -> LoadedConfig:
    load_issues: list[LoadIssue] = []
    tree = load_tree(path, load_issues)
    issues = [SchemaIssue(i.mark, i.key, i.message) for i in load_issues]
    if tree is None:
        raise ConfigError(issues)
    builder = SettingsBuilder()
    config, broken = _build_sections(builder, tree)
    issues.extend(builder.issues)
    if config is not None:
        issues.extend(_LabChecker(config, builder.marks, tree.mark, broken).check())
    if issues or config is None:
        raise ConfigError(issues)
    config = _secured(config, tree)
    files = tuple(sorted({m.file for m in builder.marks.values()} | {tree.mark.file}))
    return LoadedConfig(config, files, builder.marks, tree)


def _secured(config: LabConfig, tree: Node) -> LabConfig:
    """The bus secured by the lab's own keys when the file leaves security to them."""
    from ionpilot.access import with_lab_keys
    from ionpilot.bus.security import SecurityError

    try:
        return with_lab_keys(config)
    except SecurityError as exc:
        raise ConfigError([SchemaIssue(tree.mark, "bus.security", str(exc))]) from None


def _build_sections(builder: SettingsBuilder, tree: Node) -> tuple[LabConfig | None, set[str]]:
    """Build section by section (each instrument on its own), so one broken part does not hide
    the errors of the others: cross-checks still run on everything that did build."""
    hints = get_type_hints(LabConfig, include_extras=True)
    names = [f.name for f in fields(LabConfig)]
    broken: set[str] = set()
    for key in tree.items:
        if key not in hints:
            builder.issues.append(
                SchemaIssue(
                    tree.key_marks[key],
                    key,
                    f"unknown section '{key}'; sections: {', '.join(names)}",
                )
            )
    kwargs: dict[str, Any] = {}
    for name in names:
        node = tree.items.get(name)
        if node is None:
            continue
        builder.marks[name] = tree.key_marks[name]
        if name == "instruments" and node.kind == "map":
            built: dict[str, InstrumentConfig] = {}
            for iname, inode in node.items.items():
                builder.marks[f"instruments.{iname}"] = node.key_marks[iname]
                value = builder.build(InstrumentConfig, inode, f"instruments.{iname}")
                if value is INVALID:
                    broken.add(f"instruments.{iname}")
                else:
                    built[iname] = value
            kwargs[name] = built
            continue
        value = builder.build(hints[name], node, name)
        if value is INVALID:
            broken.add(name)
        else:
            kwargs[name] = value
    if "lab" not in kwargs:
        if "lab" not in broken:
            builder.issues.append(
                SchemaIssue(tree.mark, "lab", "missing required section 'lab' (with its name)")
            )
        return None, broken
    return LabConfig(**kwargs), broken


_CHANNEL_KEY = re.compile(r"^ch(\d{1,2})\.(\w+)$")
_VISA_SOCKET = re.compile(r"^TCPIP\d*::[^:]+::(\d+)::SOCKET$")
_VISA_ANY = re.compile(r"^(TCPIP\d*|USB\d*|GPIB\d*|ASRL\d*)::")
_URL = re.compile(r"^(?P<scheme>[a-z]+)://(?P<host>[^:/]+):(?P<port>\d+)(/.*)?$")
_ADDRESS_FORMS: dict[str, str] = {
    "visa-socket": "a VISA resource such as TCPIP0::127.0.0.1::5025::SOCKET",
    "telnet": "a VISA socket resource such as TCPIP0::127.0.0.1::23::SOCKET",
    "serial-socket": "socket://HOST:PORT, or a serial device (/dev/ttyUSB0, COM3)",
    "xmlrpc": "http://HOST:PORT/RPC2",
    "tcp-json": "tcp://HOST:PORT",
}


class _LabChecker:
    """Checks that need more than one section: references, limits against hardware, ports."""

    def __init__(
        self, config: LabConfig, marks: dict[str, Mark], root: Mark, broken: set[str]
    ) -> None:
        self.config = config
        self.broken = broken
        self.marks = marks
        self.root = root
        self.issues: list[SchemaIssue] = []

    def error(self, key: str, message: str) -> None:
        mark = self.marks.get(key)
        parent = key
        while mark is None and "." in parent:
            parent = parent.rsplit(".", 1)[0]
            mark = self.marks.get(parent)
        self.issues.append(SchemaIssue(mark or self.root, key, message))

    def check(self) -> list[SchemaIssue]:
        ok = {s: s not in self.broken for s in ("processes", "bus", "servo", "health", "recovery")}
        for name, instrument in self.config.instruments.items():
            self._instrument(name, instrument)
        if ok["processes"] and ok["bus"]:
            self._names_and_ports()
        if ok["servo"]:
            self._servo()
        if ok["health"]:
            self._health()
        if ok["recovery"]:
            self._recovery()
        return self.issues

    # instruments ----------------------------------------------------------------------------
    def _instrument(self, name: str, inst: InstrumentConfig) -> None:
        key = f"instruments.{name}"
        model = MODELS.get(inst.model)
        if model is None:
            self.error(
                f"{key}.model",
                f"unknown instrument model '{inst.model}'; known: {', '.join(MODELS)}",
            )
            return
        self._address(f"{key}.address", inst.address, model)
        if inst.host not in self.config.processes and "processes" not in self.broken:
            self.error(
                f"{key}.host",
                f"'{inst.host}' is not a process of this lab; processes: {', '.join(self.config.processes)}",
            )
        elif inst.host in NOT_DRIVER_HOSTS:
            self.error(
                f"{key}.host",
                f"'{inst.host}' runs the {NOT_DRIVER_HOSTS[inst.host]}, not instruments; name "
                "'drivers' or another process of its own",
            )
        if inst.timeout <= 0:
            self.error(f"{key}.timeout", f"found {inst.timeout:g} s; must be positive")
        for pname, limit in inst.limits.items():
            self._limit(f"{key}.limits.{pname}", pname, limit, model)
        for pname, period in inst.poll.items():
            if (
                self._parameter(f"{key}.poll.{pname}", pname, model, settable_only=False)
                and period <= 0
            ):
                self.error(
                    f"{key}.poll.{pname}", f"found {period:g} s; a poll period must be positive"
                )

    def _address(self, key: str, address: str, model: InstrumentModel) -> None:
        ok: bool
        if model.transport in ("visa-socket", "telnet"):
            ok = bool(_VISA_SOCKET.match(address)) or (
                model.transport == "visa-socket" and bool(_VISA_ANY.match(address))
            )
        elif model.transport == "serial-socket":
            url = _URL.match(address)
            ok = (url is not None and url["scheme"] == "socket") or address.startswith(
                ("/dev/", "COM")
            )
        else:
            url = _URL.match(address)
            want = "tcp" if model.transport == "tcp-json" else ("http", "https")
            ok = url is not None and url["scheme"] in want
        if not ok:
            self.error(
                key,
                f"found '{address}'; a {model.name} ({model.transport}) needs "
                f"{_ADDRESS_FORMS[model.transport]}",
            )

    def _parameter(
        self, key: str, pname: str, model: InstrumentModel, settable_only: bool
    ) -> str | None:
        """The model's parameter a key names (`voltage` or `ch05.voltage`), or None with an error."""
        base = pname
        channel = _CHANNEL_KEY.match(pname)
        if channel is not None:
            number, base = int(channel.group(1)), channel.group(2)
            if model.channels == 0:
                self.error(key, f"{model.name} has no channels; write '{base}' without 'chNN.'")
                return None
            if not 1 <= number <= model.channels:
                self.error(
                    key,
                    f"channel {number} does not exist; {model.name} has channels 1..{model.channels}",
                )
                return None
        if settable_only:
            names = tuple(model.parameters)
        elif channel is not None:
            names = model.channel_parameter_names()
        else:
            names = model.parameter_names()
        if base not in names:
            kind = (
                "settable parameters"
                if settable_only
                else "per-channel parameters"
                if channel is not None
                else "parameters"
            )
            self.error(
                key,
                f"'{base}' is not a parameter of {model.name}; {kind}: {', '.join(names) or 'none'}",
            )
            return None
        return base

    def _limit(self, key: str, pname: str, limit: Limit, model: InstrumentModel) -> None:
        base = self._parameter(key, pname, model, settable_only=True)
        if base is None:
            return
        hw = model.parameters[base]
        bounds: list[float] = []
        for side in ("min", "max"):
            q: Quantity | None = getattr(limit, side)
            if q is None:
                continue
            if q.unit != hw.unit:
                self.error(
                    f"{key}.{side}",
                    f"found '{q}', which measures {describe_unit(q.unit)}; "
                    f"{base} of {model.name} is {describe_unit(hw.unit)} ({hw.unit or 'no unit'})",
                )
                continue
            if not hw.contains(q.value):
                self.error(
                    f"{key}.{side}",
                    f"found '{q}', outside the hardware range of {model.name} "
                    f"({_range_text(hw)}); a limit may narrow the hardware range, never widen it",
                )
                continue
            bounds.append(q.value)
        if limit.min is None and limit.max is None:
            self.error(key, "a limit needs min, max or both")
        if len(bounds) == 2 and bounds[0] > bounds[1]:
            self.error(key, f"min '{limit.min}' is above max '{limit.max}'")

    # processes and ports --------------------------------------------------------------------
    def _names_and_ports(self) -> None:
        for name in self.config.instruments:
            if name in self.config.processes:
                self.error(
                    f"instruments.{name}",
                    f"'{name}' is also a process name; bus targets must be unique",
                )
        used: dict[tuple[str, int], str] = {}

        def claim(host: str, port: int, key: str) -> None:
            if port == 0:
                return
            if not 0 < port < 65536:
                self.error(key, f"port {port} is outside 1..65535")
                return
            other = used.get((host, port))
            if other is not None:
                self.error(key, f"port {port} on {host} is already used by {other}")
            else:
                used[(host, port)] = key

        bus = self.config.bus
        claim(bus.host, bus.publish_port, "bus.publish_port")
        claim(bus.host, bus.subscribe_port, "bus.subscribe_port")
        for pname, proc in self.config.processes.items():
            claim(bus.host, proc.command_port, f"processes.{pname}.command_port")
        for iname, inst in self.config.instruments.items():
            where = host_port(inst.address)
            if where is not None:
                claim(where[0], where[1], f"instruments.{iname}.address")

    # servo, health, recovery ----------------------------------------------------------------
    def _reference(self, key: str, name: str, models: tuple[str, ...]) -> None:
        inst = self.config.instruments.get(name)
        if inst is None and f"instruments.{name}" in self.broken:
            return  # exists, but is broken: its own errors are reported
        if inst is None:
            self.error(
                key,
                f"'{name}' is not an instrument of this lab; instruments: {', '.join(self.config.instruments)}",
            )
        elif inst.model not in models:
            self.error(key, f"'{name}' is a {inst.model}; this needs a {' or '.join(models)}")

    def _servo(self) -> None:
        lock = self.config.servo.clock_lock
        key = "servo.clock_lock"
        self._reference(f"{key}.pulser", lock.pulser, ("ionpilot_pulser",))
        self._reference(f"{key}.comb", lock.comb, ("menlo_fc1500",))
        self._reference(f"{key}.beat_counter", lock.beat_counter, ("keysight_53230a",))
        self._reference(f"{key}.wavemeter", lock.wavemeter, ("bristol_871a",))
        self._reference(f"{key}.cavity_laser", lock.cavity_laser, ("dlc_pro",))
        self._switch_channel(f"{key}.wavemeter_channel", lock.wavemeter_channel)
        for name, aux in self.config.servo.aux_locks.items():
            akey = f"servo.aux_locks.{name}"
            self._reference(f"{akey}.laser", aux.laser, ("dlc_pro",))
            self._reference(f"{akey}.wavemeter", aux.wavemeter, ("bristol_871a",))
            self._switch_channel(f"{akey}.wavemeter_channel", aux.wavemeter_channel)

    def _switch_channel(self, key: str, channel: int) -> None:
        switch = MODELS["bristol_871a"].parameters["switch_channel"]
        if not switch.contains(channel):
            self.error(
                key,
                f"found {channel}; the wavemeter's fibre switch has channels "
                f"{switch.minimum:g}..{switch.maximum:g}",
            )

    def _health(self) -> None:
        for signal, rule in self.config.health.rules.items():
            key = f"health.rules.{signal}"
            unit = self._signal_unit(key, signal)
            if unit is None:
                continue
            self._rule(key, rule, unit)

    def _signal_unit(self, key: str, signal: str) -> str | None:
        """Unit of a signal if known ('' for unknown-but-valid); None after reporting an error."""
        head, _, rest = signal.partition(".")
        if head == "servo":
            return "" if rest else None
        inst = self.config.instruments.get(head)
        if inst is None and f"instruments.{head}" in self.broken:
            return None
        if inst is None or not rest:
            self.error(
                key,
                f"signal '{signal}' names no instrument of this lab; write <instrument>.<parameter> "
                f"or servo.<loop>.<quantity>; instruments: {', '.join(self.config.instruments)}",
            )
            return None
        model = MODELS.get(inst.model)
        if model is None:
            return None
        base = self._parameter(key, rest, model, settable_only=False)
        if base is None:
            return None
        hw: HardwareRange | None = model.parameters.get(base)
        return hw.unit if hw is not None else ""

    def _rule(self, key: str, rule: HealthRule, unit: str) -> None:
        levels: list[tuple[str, float]] = []
        for side in ("lolo", "low", "high", "hihi", "hysteresis"):
            q: Quantity | None = getattr(rule, side)
            if q is None:
                continue
            if unit and q.unit != unit:
                self.error(
                    f"{key}.{side}",
                    f"found '{q}' ({describe_unit(q.unit)}); this signal is in {unit}",
                )
                continue
            if side != "hysteresis":
                levels.append((side, q.value))
            elif q.value < 0:
                self.error(f"{key}.{side}", f"found '{q}'; hysteresis cannot be negative")
        for (a, va), (b, vb) in itertools.pairwise(levels):
            if va > vb:
                self.error(
                    f"{key}.{b}",
                    f"{b} ({format_quantity(vb, unit)}) is below {a} ({format_quantity(va, unit)})",
                )
        if rule.max_rate is not None and unit and rule.max_rate.unit != f"{unit}/s":
            self.error(
                f"{key}.max_rate", f"found '{rule.max_rate}'; a rate of this signal is in {unit}/s"
            )
        if rule.stale_after <= 0:
            self.error(f"{key}.stale_after", "must be positive")

    def _recovery(self) -> None:
        kinds = get_args(FaultKind)
        for name in self.config.recovery.playbooks:
            if name not in kinds:
                self.error(
                    f"recovery.playbooks.{name}",
                    f"no fault kind '{name}'; kinds: {', '.join(kinds)}",
                )


def _range_text(hw: HardwareRange) -> str:
    return f"{format_quantity(hw.minimum, hw.unit)} to {format_quantity(hw.maximum, hw.unit)}"


def host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a TCP/IP instrument address; None for other kinds."""
    visa = re.match(r"^TCPIP\d*::([^:]+)::(\d+)::SOCKET$", address)
    if visa:
        return visa.group(1), int(visa.group(2))
    url = _URL.match(address)
    if url:
        return url["host"], int(url["port"])
    return None
