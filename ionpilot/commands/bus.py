"""`ionpilot hub`, `ionpilot bus monitor`, `ionpilot bus call`: run the hub, watch it, command.

Addresses come from the lab config (`--config`, default configs/sim-lab.yaml) unless given
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

DEFAULT_CONFIG = "configs/sim-lab.yaml"
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

    bus = subparsers.add_parser("bus", help="watch the bus and send commands")
    bus_sub = bus.add_subparsers(dest="bus_command", metavar="SUBCOMMAND")
    bus.set_defaults(handler=lambda args: _usage(bus))

    monitor = bus_sub.add_parser(
        "monitor",
        help="print live messages, one per line, with age and gap counts",
        description="Print bus messages whose topic starts with TOPIC-PREFIX.",
    )
    monitor.add_argument("prefix", nargs="?", default="", metavar="TOPIC-PREFIX")
    monitor.add_argument("--count", type=int, help="exit after this many messages")
    monitor.add_argument("--duration", type=float, help="exit after this many seconds")
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
    call.add_argument("target", metavar="TARGET")
    call.add_argument("method", metavar="METHOD")
    call.add_argument("args", nargs="*", metavar="ARGS")
    call.add_argument("--config", default=DEFAULT_CONFIG, help="lab config (for the directory)")
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
    show.add_argument("file", metavar="FILE")
    show.set_defaults(handler=run_keys_show)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _address_options(parser: argparse.ArgumentParser, *, publish: bool, subscribe: bool) -> None:
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="lab config with a bus section")
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
        base = _load_config(args.config).bus
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
    if args.config != DEFAULT_CONFIG or os.path.exists(args.config):
        # A secured lab stays secured whatever addresses are given on the command line.
        settings = replace(settings, security=_load_config(args.config).bus.security)
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
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."


def format_message(msg: Any, now_ns: int, gaps: int, restarts: int) -> str:
    """One line: age, topic, source#seq, what it says, loss counts of its source."""
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
    return f"{age_ms:9.1f} ms  {msg.topic}  {msg.src}#{msg.seq}  {body}  {loss}"


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
                line = format_message(
                    msg,
                    time.time_ns(),
                    counter.gaps.get(msg.src, 0),
                    counter.restarts.get(msg.src, 0),
                )
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
        config = _load_config(args.config)
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
        reply = client.request(args.target, args.method, call_args, timeout=args.timeout)
    if not reply.ok:
        print(f"error: {reply.code}: {reply.message}", file=sys.stderr)
        return 1
    print(json.dumps(reply.value, default=_json_default))
    return 0


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
