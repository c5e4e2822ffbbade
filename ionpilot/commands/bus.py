"""`ionpilot hub`, `ionpilot bus monitor`, `ionpilot bus call`: run the hub, watch it, command.

Addresses come from the lab config (`--config`, default: see `ionpilot.labfile`) unless given
explicitly (`--host/--publish-port/--subscribe-port`, `--endpoint`), in which case the config
is not read at all.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ionpilot.labfile import CONFIG_HELP, announce, lab_file

POSITIONAL_ARGS = ("name", "value")  # `bus call rf_drive set frequency 25e6`


class UserError(Exception):
    """Bad input or setup: printed as one `error:` line, exit code `code`."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    hub = subparsers.add_parser(
        "hub",
        help="run the bus hub (publishers -> XSUB/XPUB forwarder -> subscribers)",
        description="Run the bus hub until interrupted.",
    )
    _address_options(hub, publish=True, subscribe=True)
    hub.set_defaults(handler=run_hub)

    about = "watch the bus, send commands, make CURVE keys"
    bus = subparsers.add_parser("bus", help=about, description=about)
    bus_sub = bus.add_subparsers(dest="bus_command", metavar="SUBCOMMAND")
    bus.set_defaults(handler=lambda args: _usage(bus))

    monitor = bus_sub.add_parser(
        "monitor",
        help="print live messages, one per line, with age and gap counts",
        description="Print bus messages whose topic starts with TOPIC-PREFIX.",
    )
    monitor.add_argument(
        "prefix",
        nargs="?",
        default="",
        metavar="TOPIC-PREFIX",
        help="only topics starting with this (tlm.rf_drive, health., evt.); default: all",
    )
    monitor.add_argument("--count", type=int, help="exit after this many messages")
    monitor.add_argument("--duration", type=float, help="exit after this many seconds")
    monitor.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per message (topic, src, seq, t_utc, value, unit, ...)",
    )
    _address_options(monitor, publish=False, subscribe=True)
    _key_options(monitor)
    monitor.set_defaults(handler=run_monitor)

    call = bus_sub.add_parser(
        "call",
        help="send one command and print the reply",
        description=(
            "Send METHOD to TARGET. Bare ARGS fill `name` then `value`; KEY=VALUE sets any "
            "argument. Values are read as JSON (25e6, true, null, [1,2]) or else as text."
        ),
    )
    call.add_argument("target", metavar="TARGET", help="instrument or process (rf_drive, daemon)")
    call.add_argument("method", metavar="METHOD", help="get, set, call, describe, status, ...")
    call.add_argument(
        "args",
        nargs="*",
        metavar="ARGS",
        help='NAME [VALUE] and KEY=VALUE; a set value may carry a unit ("2 dBm", "25 MHz")',
    )
    call.add_argument("--config", default=None, metavar="FILE", help=CONFIG_HELP)
    call.add_argument("--endpoint", help="talk to this server (tcp://host:port), skip the config")
    call.add_argument("--timeout", type=float, help="seconds to wait for the reply")
    _key_options(call)
    call.set_defaults(handler=run_call)

    keys = bus_sub.add_parser(
        "keys",
        help="create and show CURVE key pairs for secured commands",
        description=(
            "CURVE key pairs (ZeroMQ certificates) for bus.security: one for the lab's command "
            "servers, one per client (daemon, GUI, each operator)."
        ),
    )
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION")
    keys.set_defaults(handler=lambda args: _usage(keys))
    create = keys_sub.add_parser(
        "create",
        help="write NAME.key (public) and NAME.key_secret (owner-only) and print the config",
    )
    create.add_argument("name", metavar="NAME", help="who the key is for (e.g. server, gui)")
    create.add_argument("--dir", default="keys", help="folder for the key files (default: keys)")
    create.add_argument(
        "--role",
        choices=("observer", "operator", "admin"),
        default="observer",
        help="role for the printed allow-list entry (default: observer)",
    )
    create.set_defaults(handler=run_keys_create)
    show = keys_sub.add_parser("show", help="print the public key of a key file")
    show.add_argument("file", metavar="FILE", help="a NAME.key or NAME.key_secret file")
    show.set_defaults(handler=run_keys_show)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _address_options(parser: argparse.ArgumentParser, *, publish: bool, subscribe: bool) -> None:
    parser.add_argument("--config", default=None, metavar="FILE", help=CONFIG_HELP)
    parser.add_argument("--host", help="bus host (overrides the config)")
    if publish:
        parser.add_argument("--publish-port", type=int, help="hub port publishers connect to")
    if subscribe:
        parser.add_argument("--subscribe-port", type=int, help="hub port subscribers connect to")


def _key_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key",
        metavar="FILE",
        help="CURVE identity to use (NAME.key_secret) instead of the config's client_key_file",
    )
    parser.add_argument(
        "--server-key",
        metavar="KEY",
        help="the lab servers' CURVE public key (Z85 or a .key file), when the config is not read",
    )


def _client_keys(args: argparse.Namespace, security: Any) -> Any:
    """The CURVE identity for a client command: --key/--server-key over the config's."""
    from ionpilot.bus.security import ClientKeys, SecurityError

    if args.server_key:
        security = replace(security, server_public_key=_server_key(args.server_key))
    if not (args.key or args.server_key or security.curve):
        return None
    if not security.server_public_key:
        raise UserError("--key needs the servers' public key: --server-key or the config's")
    try:
        return ClientKeys.from_settings(security, args.key)
    except SecurityError as exc:
        raise UserError(str(exc)) from None


def _load_config(path: str) -> Any:
    from ionpilot.config import ConfigError, load_config
    from ionpilot.runtime import format_config_error

    try:
        return load_config(path)
    except ConfigError as exc:
        raise UserError(format_config_error(path, exc)) from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None


def _bus_settings(args: argparse.Namespace, needed: Sequence[str]) -> Any:
    """BusSettings from the config, with explicit options on top; the config is read only
    when an option the command needs is missing."""
    from ionpilot.bus import BusSettings

    overrides = {
        key: getattr(args, key)
        for key in ("host", "publish_port", "subscribe_port")
        if getattr(args, key, None) is not None
    }
    for key in ("publish_port", "subscribe_port"):
        if key in overrides and not 0 <= overrides[key] <= 65535:
            raise UserError(f"--{key.replace('_', '-')} must be a port number (0-65535)")
    if all(key in overrides for key in needed):
        base = BusSettings()
    else:
        config = _load_config(lab_file(args.config))
        announce(args.config, config)
        base = config.bus
    return replace(base, **overrides)


def _run(handler: Any, args: argparse.Namespace) -> int:
    try:
        code: int = handler(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    return code


# --------------------------------------------------------------------------------------- hub


def run_hub(args: argparse.Namespace) -> int:
    return _run(_hub, args)


def _hub(args: argparse.Namespace) -> int:
    from ionpilot.bus import Hub

    settings = _bus_settings(args, ("publish_port", "subscribe_port"))
    if args.config or os.path.exists(lab_file(None)):
        # A secured lab stays secured whatever addresses are given on the command line.
        settings = replace(settings, security=_load_config(lab_file(args.config)).bus.security)
    try:
        hub = Hub(settings).start()
    except (OSError, ValueError) as exc:
        raise UserError(str(exc), code=1) from None
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(
        f"hub: publishers -> {hub.publish_endpoint}, subscribers -> {hub.subscribe_endpoint}",
        flush=True,
    )
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()
    return 0


# ----------------------------------------------------------------------------------- monitor


def run_monitor(args: argparse.Namespace) -> int:
    return _run(_monitor, args)


def _format_value(value: object) -> str:
    """Every digit the publisher sent (a clock frequency needs 16) and every field: nothing is
    rounded or cut."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes: {value.hex()}>"
    return json.dumps(value, default=_json_default) if not isinstance(value, str) else value


def wall_time(t_ns: int) -> str:
    """A message's UTC stamp as local wall-clock time, to the microsecond, with its offset."""
    from datetime import datetime

    return datetime.fromtimestamp(t_ns / 1e9).astimezone().isoformat(timespec="microseconds")


def message_record(msg: Any, now_ns: int, gaps: int, restarts: int) -> dict[str, Any]:
    """`bus monitor --json`: the message as it came, with its stamp in ns and as text."""
    from ionpilot.bus import Event, Heartbeat

    record: dict[str, Any] = {
        "topic": msg.topic,
        "src": msg.src,
        "seq": msg.seq,
        "t_ns": msg.t,
        "time": wall_time(msg.t),
        "age_ms": round((now_ns - msg.t) / 1e6, 3),
    }
    if isinstance(msg, Heartbeat):
        record |= {"kind": "heartbeat", "period_s": msg.period, "status": msg.status}
    elif isinstance(msg, Event):
        record |= {
            "kind": "event",
            "event": msg.kind,
            "severity": msg.severity,
            "message": msg.message,
            "data": msg.data,
        }
    else:
        record |= {"kind": "telemetry", "value": msg.value, "unit": msg.unit, "status": msg.status}
    record |= {"gaps": gaps, "restarts": restarts}
    return record


def format_message(msg: Any, now_ns: int, gaps: int, restarts: int) -> str:
    """One line: wall-clock time, topic, source#seq, what it says in full, its age on
    arrival and the loss counts of its source."""
    from ionpilot.bus import Event, Heartbeat

    age_ms = (now_ns - msg.t) / 1e6
    if isinstance(msg, Heartbeat):
        body = f"alive, every {msg.period:g} s [{msg.status}]"
    elif isinstance(msg, Event):
        body = f"{msg.kind} [{msg.severity}] {msg.message}".rstrip()
        if msg.data:
            body += " " + _format_value(msg.data)
    else:
        unit = f" {msg.unit}" if msg.unit else ""
        body = f"{_format_value(msg.value)}{unit} [{msg.status}]"
    loss = f"gaps={gaps}" + (f" restarts={restarts}" if restarts else "")
    return (
        f"{wall_time(msg.t)}  {msg.topic}  {msg.src}#{msg.seq}  {body}  age {age_ms:.1f} ms  {loss}"
    )


def _monitor(args: argparse.Namespace) -> int:
    from ionpilot.bus import Subscriber

    if args.count is not None and args.count <= 0:
        raise UserError("--count must be positive")
    settings = _bus_settings(args, ("subscribe_port",))
    keys = _client_keys(args, settings.security)
    deadline = None if args.duration is None else time.monotonic() + args.duration
    seen = 0
    with Subscriber(settings, [args.prefix], keys=keys) as sub:
        counter = sub.counter
        try:
            while args.count is None or seen < args.count:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                msg = sub.recv(timeout=0.2)
                if msg is None:
                    continue
                seen += 1
                shown = message_record if args.json else format_message
                line = shown(
                    msg,
                    time.time_ns(),
                    counter.gaps.get(msg.src, 0),
                    counter.restarts.get(msg.src, 0),
                )
                if isinstance(line, dict):
                    line = json.dumps(line, default=_json_default)
                print(line, flush=True)
        except KeyboardInterrupt:
            pass
        except BrokenPipeError:
            return 0
        print(
            f"monitor: {seen} messages, {counter.total_gaps} lost (gaps), "
            f"{sub.bad_frames} malformed dropped",
            file=sys.stderr,
        )
    return 0


# -------------------------------------------------------------------------------------- call


def parse_call_args(items: Sequence[str]) -> dict[str, Any]:
    """Bare items fill `name` then `value`; `key=value` sets `key`. Values parse as JSON."""
    out: dict[str, Any] = {}
    positional = iter(POSITIONAL_ARGS)
    for item in items:
        key, sep, text = item.partition("=")
        if sep and key.isidentifier():
            out[key] = _parse_value(text)
            continue
        slot = next(positional, None)
        if slot is None:
            raise UserError(f"too many arguments at {item!r}: use KEY=VALUE")
        out[slot] = _parse_value(item)
    return out


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def run_call(args: argparse.Namespace) -> int:
    return _run(_call, args)


def _call(args: argparse.Namespace) -> int:
    from ionpilot.bus import BusError, BusSettings, CommandClient, Directory

    call_args = parse_call_args(args.args)
    if args.endpoint:
        settings = BusSettings()
        endpoint = args.endpoint
        if not endpoint.startswith(("tcp://", "ipc://", "inproc://")):
            raise UserError(f"--endpoint must look like tcp://host:port, not {endpoint!r}")
    else:
        config = _load_config(lab_file(args.config))
        announce(args.config, config)
        settings = config.bus
        directory = Directory.from_config(settings.host, config.processes, config.instruments)
        try:
            endpoint = directory.resolve(args.target)
        except BusError as exc:
            raise UserError(f"{exc.code}: {exc.message}") from None
    if args.timeout is not None and args.timeout <= 0:
        raise UserError("--timeout must be positive")
    keys = _client_keys(args, settings.security)
    with CommandClient(settings, endpoint, name="ionpilot-cli", keys=keys) as client:
        if args.method == "set" and "value" in call_args:
            call_args["value"] = _in_parameter_unit(client, args, call_args)
        reply = client.request(args.target, args.method, call_args, timeout=args.timeout)
    if not reply.ok:
        print(f"error: {reply.code}: {reply.message}", file=sys.stderr)
        return 1
    print(json.dumps(reply.value, default=_json_default))
    return 0


def _in_parameter_unit(client: Any, args: argparse.Namespace, call_args: dict[str, Any]) -> Any:
    """A `set` value in the parameter's own unit (as `describe` states it): "2 dBm" and
    "25 MHz" are converted, a unit that measures something else is refused before anything is
    sent, and a bare number is taken as it stands (the parameter's unit, said on stderr)."""
    from ionpilot.core.units import UnitError, format_quantity, parse_quantity, parse_unit

    value, name = call_args["value"], call_args.get("name")
    with_unit = isinstance(value, str) and _looks_like_quantity(value)
    bare = isinstance(value, int | float) and not isinstance(value, bool)
    if not (with_unit or bare) or not isinstance(name, str):
        return value
    reply = client.request(args.target, "describe", {}, timeout=args.timeout)
    if not reply.ok and with_unit and reply.code != "unknown_method":
        raise UserError(
            f"{args.target}.{name}: cannot learn its unit to convert '{value}' "
            f"({reply.code}: {reply.message})",
            code=1,
        )
    params = reply.value.get("parameters") if reply.ok and isinstance(reply.value, dict) else None
    entry = params.get(name) if isinstance(params, dict) else None
    if not isinstance(entry, dict):
        if with_unit:
            raise UserError(
                f"{args.target}.{name}: cannot convert '{value}': the target does not describe "
                "this parameter's unit; give a bare number in its own unit"
            )
        return value
    unit = str(entry.get("unit") or "")
    where = f"{args.target}.{name}"
    if bare:
        shown = format_quantity(float(value), unit) if unit else f"{value:g}"
        print(f"{where}: {value:g} taken as {shown} (its unit: {unit or 'none'})", file=sys.stderr)
        return value
    if not unit:
        raise UserError(f"{where} is a plain number (no unit); '{value}' carries one")
    try:
        scale, si_unit = parse_unit(unit)
        quantity = parse_quantity(value, si_unit)
    except UnitError as exc:
        raise UserError(f"{where} is in {unit}: {exc}") from None
    return quantity.value / scale


def _looks_like_quantity(text: str) -> bool:
    """'2 dBm', '25MHz', '-3.5 V' (a number, then a unit); not 'on' or a file name."""
    import re

    return (
        re.fullmatch(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*[^\s\d.+-]\S*\s*", text)
        is not None
    )


def _server_key(text: str) -> str:
    """A Z85 public key given as itself or as a key file."""
    from ionpilot.bus.security import SecurityError, read_public_key, valid_key

    if valid_key(text):
        return text
    try:
        return read_public_key(text)
    except SecurityError as exc:
        raise UserError(f"--server-key: {exc}") from None


# -------------------------------------------------------------------------------------- keys


def run_keys_create(args: argparse.Namespace) -> int:
    return _run(_keys_create, args)


def _keys_create(args: argparse.Namespace) -> int:
    from ionpilot.bus.security import create_keypair, read_public_key

    try:
        public_file, secret_file = create_keypair(args.dir, args.name)
    except ValueError as exc:  # a bad name
        raise UserError(str(exc)) from None
    except OSError as exc:  # exists already, or the folder is not writable
        raise UserError(str(exc), code=1) from None
    key = read_public_key(public_file)
    print(f"public key: {key}  ({public_file}: share it)")
    print(f"secret key: {secret_file}  (owner-only: never share or commit it)")
    print("for the lab config, under bus: security: (curve: true), either")
    print("  as the command servers' key pair:")
    print(f'    server_public_key: "{key}"')
    print(f"    server_key_file: {secret_file}")
    print(f"  or as the client {args.name} (allow-list entry; on that client, its key file):")
    print(f'    clients: {{{args.name}: {{public_key: "{key}", role: {args.role}}}}}')
    print(f"    client_key_file: {secret_file}")
    return 0


def run_keys_show(args: argparse.Namespace) -> int:
    return _run(_keys_show, args)


def _keys_show(args: argparse.Namespace) -> int:
    from ionpilot.bus.security import SecurityError, read_public_key

    try:
        print(read_public_key(args.file))
    except SecurityError as exc:
        raise UserError(str(exc), code=1) from None
    return 0


def _json_default(obj: object) -> object:
    if isinstance(obj, bytes):
        return obj.hex()
    return str(obj)


def main(argv: Sequence[str] | None = None) -> int:
    """Run these subcommands alone (`python -m ionpilot.commands.bus hub ...`)."""
    parser = argparse.ArgumentParser(prog="ionpilot")
    register(parser.add_subparsers(dest="command", metavar="COMMAND"))
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        code: int = handler(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
