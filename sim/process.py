"""The `ionpilot sim` process: a real-time Lab plus the bus command target `sim` that takes
faults (`call` name=fault kind=... target=..., and name=restore target=...)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from ionpilot.bus import BusError, CommandServer, HeartbeatPublisher
from ionpilot.bus.codec import ErrorCode, Request, Value
from ionpilot.bus.settings import BusSettings

from .clock import RealClock
from .lab import Lab
from .scenario import ScheduledFault, schedule_scenario
from .settings import SimSettings
from .world import FAULT_KINDS, FaultError

COMMAND_TARGET = "sim"


def fault_handler(lab: Lab) -> Callable[[Request], Value]:
    """`call` on target `sim`: name=fault (kind, target) or name=restore (target)."""

    def handle(request: Request) -> Value:
        args = request.args
        name = args.get("name")
        target = args.get("target")
        if target is not None and not isinstance(target, str):
            raise BusError(ErrorCode.BAD_REQUEST, "target must be a string")
        if name == "fault":
            kind = args.get("kind")
            if not isinstance(kind, str):
                raise BusError(
                    ErrorCode.BAD_REQUEST, f"kind must be one of {', '.join(FAULT_KINDS)}"
                )
        elif name == "restore":
            kind = "restore"
        elif name == "kinds":
            return list(FAULT_KINDS)
        else:
            raise BusError(ErrorCode.UNKNOWN_METHOD, "sim calls: fault, restore, kinds")
        try:
            text = lab.inject(kind, target)
        except FaultError as exc:
            raise BusError(ErrorCode.BAD_REQUEST, str(exc)) from None
        return {"kind": kind, "target": target, "t_s": lab.world.now(), "result": text}

    return handle


def run_lab(
    instruments: Mapping[str, tuple[str, str]],
    settings: SimSettings,
    *,
    bus: BusSettings | None,
    command_port: int | None,
    scenario: list[ScheduledFault] | None = None,
    out: Callable[[str], None] = print,
    stop: threading.Event | None = None,
    free_ports: bool = False,
) -> int:
    """Start the lab in real time, print `<name> <resource>` lines then `ready`, serve faults on
    the bus, and run until `stop` is set (or forever)."""
    lab = Lab(instruments, settings, RealClock(settings.speed), free_ports=free_ports)
    server: CommandServer | None = None
    heartbeat: HeartbeatPublisher | None = None
    resources = lab.start()
    try:
        if scenario:
            schedule_scenario(lab.world, scenario, lab.world.now())
        if bus is not None and command_port is not None:
            server = CommandServer("sim", bus)
            server.register(COMMAND_TARGET, "call", fault_handler(lab))
            server.bind(f"tcp://{bus.host}:{command_port}")
            server.start()
            heartbeat = HeartbeatPublisher(bus, COMMAND_TARGET).start()
        for name, resource in resources.items():
            out(f"{name} {resource}")
        out("ready")
        (stop or threading.Event()).wait()
    finally:
        if heartbeat is not None:
            heartbeat.stop()
        if server is not None:
            server.close()
        lab.stop()
    return 0
