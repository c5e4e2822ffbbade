"""CURVE security of commands: allow-listed keys only, roles enforced by the server, opt-in."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import msgpack
import pytest
import zmq

from ionpilot.bus import (
    BusError,
    BusSettings,
    CommandClient,
    CommandServer,
    Hub,
    Request,
    Telemetry,
)
from ionpilot.bus.security import (
    ROLE_METHODS,
    ClientKeys,
    SecurityError,
    ServerKeys,
    ZapHandler,
    create_keypair,
    read_keypair,
    read_public_key,
)
from ionpilot.bus.settings import BusSecurity, CurveClient
from ionpilot.commands.bus import main

FAST = 0.3  # s: how long a refused client waits for the reply that never comes


@dataclass
class Lab:
    keys: Path
    security: BusSecurity

    def settings(self, base: BusSettings, client: str = "") -> BusSettings:
        """Settings as the config of a process whose identity is `client` would give them."""
        key_file = str(self.keys / f"{client}.key_secret") if client else ""
        return replace(base, security=replace(self.security, client_key_file=key_file))


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    for name in ("server", "daemon", "viewer", "stranger"):
        create_keypair(tmp_path, name)
    security = BusSecurity(
        curve=True,
        server_public_key=read_public_key(tmp_path / "server.key"),
        server_key_file=str(tmp_path / "server.key_secret"),
        clients={
            "daemon": CurveClient(read_public_key(tmp_path / "daemon.key"), "operator"),
            "viewer": CurveClient(read_public_key(tmp_path / "viewer.key"), "observer"),
        },
    )
    return Lab(tmp_path, security)


@pytest.fixture
def state() -> dict[str, float]:
    """What the secured server's handlers read and write."""
    return {"frequency": 25e6, "sets": 0}


@pytest.fixture
def secured(lab: Lab, settings: BusSettings, ctx: zmq.Context, state: dict[str, float]):
    server = CommandServer("drivers", lab.settings(settings), context=ctx)

    def set_(req: Request):
        state["sets"] += 1
        state[req.args["name"]] = req.args["value"]
        return req.args["value"]

    server.register("rf_drive", "get", lambda req: state[req.args["name"]], inline=True)
    server.register("rf_drive", "set", set_)
    server.register("rf_drive", "describe", lambda req: {"user": req.user, "said": req.client})
    server.bind("tcp://127.0.0.1:0")
    server.start()
    yield server
    server.close()


def test_key_files(tmp_path: Path):
    public_file, secret_file = create_keypair(tmp_path / "k", "gui")
    assert public_file.name == "gui.key" and secret_file.name == "gui.key_secret"
    assert os.stat(secret_file).st_mode & 0o077 == 0
    public, secret = read_keypair(secret_file)
    assert read_public_key(public_file) == public.decode() == read_public_key(secret_file)
    assert zmq.curve_public(secret) == public
    with pytest.raises(FileExistsError):
        create_keypair(tmp_path / "k", "gui")
    with pytest.raises(SecurityError, match="no secret key"):
        read_keypair(public_file)
    os.chmod(secret_file, 0o644)
    with pytest.raises(SecurityError, match="readable by others"):
        read_keypair(secret_file)
    with pytest.raises(SecurityError, match="cannot read"):
        read_keypair(tmp_path / "missing.key_secret")
    with pytest.raises(ValueError):
        create_keypair(tmp_path, "../escape")


def test_settings_are_checked_and_off_by_default(lab: Lab):
    assert BusSettings().security.curve is None  # unset: the lab file's own keys, once loaded
    with pytest.raises(ValueError, match="server_public_key"):
        BusSecurity(curve=True, clients=lab.security.clients)
    with pytest.raises(ValueError, match="at least one client"):
        replace(lab.security, clients={})
    with pytest.raises(ValueError, match="Z85"):
        CurveClient("not a key")
    twice = lab.security.clients["daemon"]
    with pytest.raises(ValueError, match="share a key"):
        replace(lab.security, clients={"a": twice, "b": twice})
    with pytest.raises(SecurityError, match="server_key_file"):
        ServerKeys.from_settings(replace(lab.security, server_key_file=""))
    with pytest.raises(SecurityError, match="client_key_file"):
        ClientKeys.from_settings(lab.security)
    with pytest.raises(SecurityError, match="does not match"):
        ServerKeys.from_settings(
            replace(lab.security, server_key_file=str(lab.keys / "daemon.key_secret"))
        )


def test_roles_and_identities(lab: Lab, secured: CommandServer, state, settings, ctx):
    endpoint = secured.endpoint
    with CommandClient(lab.settings(settings, "daemon"), endpoint, context=ctx) as daemon:
        assert daemon.call("rf_drive", "set", {"name": "frequency", "value": 30e6}) == 30e6
        assert daemon.call("rf_drive", "get", {"name": "frequency"}) == 30e6
        # the authenticated name, whatever the client calls itself
        assert daemon.call("rf_drive", "describe") == {"user": "daemon", "said": daemon_name()}
    with CommandClient(lab.settings(settings, "viewer"), endpoint, context=ctx) as viewer:
        assert viewer.call("rf_drive", "get", {"name": "frequency"}) == 30e6
        assert viewer.call("drivers", "list")["rf_drive"] == ["describe", "get", "ping", "set"]
        with pytest.raises(BusError) as refused:
            viewer.call("rf_drive", "set", {"name": "frequency", "value": 21e6})
        assert refused.value.code == "forbidden" and "viewer may not set" in refused.value.message
    assert state["sets"] == 1  # the refused set never reached the handler
    assert ROLE_METHODS["observer"] < ROLE_METHODS["operator"] <= ROLE_METHODS["admin"]


def daemon_name() -> str:
    from ionpilot.bus.client import default_client_name

    return default_client_name()


def test_strangers_get_nothing_and_the_server_keeps_serving(
    lab: Lab, secured: CommandServer, settings, ctx
):
    endpoint = secured.endpoint
    before = secured.stats["requests"]
    # a valid CURVE key that is not on the allow-list
    with CommandClient(lab.settings(settings, "stranger"), endpoint, context=ctx) as stranger:
        reply = stranger.request("rf_drive", "get", {"name": "frequency"}, timeout=FAST)
        assert reply.code == "timeout"
    # no CURVE at all
    with CommandClient(settings, endpoint, context=ctx) as plain:
        assert plain.request("rf_drive", "get", {"name": "frequency"}, timeout=FAST).code == (
            "timeout"
        )
    # an allowed client that has the wrong idea of the servers' key
    wrong = replace(lab.security, server_public_key=read_public_key(lab.keys / "viewer.key"))
    misled = replace(
        settings, security=replace(wrong, client_key_file=str(lab.keys / "viewer.key_secret"))
    )
    with CommandClient(misled, endpoint, context=ctx) as client:
        assert client.request("drivers", "ping", timeout=FAST).code == "timeout"
    # raw bytes from a plain socket: never answered either
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(endpoint)
    dealer.send(msgpack.packb({"id": 1, "method": "ping", "target": "drivers", "args": {}}))
    assert dealer.poll(int(FAST * 1000)) == 0
    dealer.close()
    assert secured.stats["requests"] == before  # nothing got through to be counted
    assert ZapHandler._handlers[id(ctx)].stats["denied"] >= 1  # the stranger, by the handler
    with CommandClient(lab.settings(settings, "daemon"), endpoint, context=ctx) as daemon:
        assert daemon.call("drivers", "ping")["process"] == "drivers"


def test_unauthenticated_messages_are_dropped_unanswered(lab: Lab, secured: CommandServer):
    request = msgpack.packb({"id": 3, "method": "get", "target": "drivers", "args": {}})
    assert secured.handle_frames([b"\x00peer", request]) is None  # no user: no reply
    assert secured.handle_frames([b"\x00peer", request], user="mallory") is None
    assert secured.stats["unauthenticated"] == 2
    reply = secured.handle_frames([b"\x00peer", request], user="viewer")
    assert reply is not None and msgpack.unpackb(reply[-1])["ok"] is False  # unknown_method


def test_zap_handler_is_shared_per_context_and_stops_with_the_last_server(lab: Lab, settings, ctx):
    secure = lab.settings(settings)
    first = CommandServer("a", secure, context=ctx)
    second = CommandServer("b", secure, context=ctx)
    endpoints = [first.bind("tcp://127.0.0.1:0"), second.bind("tcp://127.0.0.1:0")]
    first.start()
    second.start()
    handler = ZapHandler._handlers[id(ctx)]
    first.close()
    with CommandClient(lab.settings(settings, "viewer"), endpoints[1], context=ctx) as viewer:
        assert viewer.call("b", "ping")["process"] == "b"
    second.close()
    assert id(ctx) not in ZapHandler._handlers
    assert handler._thread is not None and not handler._thread.is_alive()
    assert handler.stats["allowed"] >= 1
    assert handler.answer([b"1.0"])[2] == b"400"


def test_deferred_handlers_are_checked_before_they_run(lab: Lab, settings, ctx):
    server = CommandServer("daemon", lab.settings(settings), context=ctx)
    ran = threading.Event()

    async def call(req: Request):
        ran.set()
        return "done"

    server.register("daemon", "call", call)
    endpoint = server.bind("tcp://127.0.0.1:0")
    server.start()
    try:
        with CommandClient(lab.settings(settings, "viewer"), endpoint, context=ctx) as viewer:
            assert viewer.request("daemon", "call").code == "forbidden"
        assert not ran.is_set()
        with CommandClient(lab.settings(settings, "daemon"), endpoint, context=ctx) as daemon:
            assert daemon.call("daemon", "call") == "done"
    finally:
        server.close()


def test_cli_keys_and_secured_call(lab: Lab, secured: CommandServer, tmp_path, capsys):
    assert main(["bus", "keys", "create", "alice", "--dir", str(tmp_path / "k")]) == 0
    out = capsys.readouterr().out
    key = read_public_key(tmp_path / "k" / "alice.key")
    assert f'alice: {{public_key: "{key}", role: observer}}' in out
    assert main(["bus", "keys", "create", "alice", "--dir", str(tmp_path / "k")]) == 1
    assert "exists already" in capsys.readouterr().err
    assert main(["bus", "keys", "show", str(tmp_path / "k" / "alice.key")]) == 0
    assert capsys.readouterr().out.strip() == key

    endpoint = secured.endpoint
    server_key = str(lab.keys / "server.key")
    viewer = str(lab.keys / "viewer.key_secret")
    call = ["bus", "call", "rf_drive", "get", "frequency", "--endpoint", endpoint]
    assert main([*call, "--key", viewer, "--server-key", server_key]) == 0
    assert capsys.readouterr().out.strip() == "25000000.0"
    refused = ["bus", "call", "rf_drive", "set", "frequency", "3e7", "--endpoint", endpoint]
    assert main([*refused, "--key", viewer, "--server-key", server_key]) == 1
    assert capsys.readouterr().err.startswith("error: forbidden: viewer may not set")
    assert main([*call, "--key", viewer]) == 2  # --endpoint needs the servers' key too
    assert main([*call, "--timeout", str(FAST)]) == 1  # no CURVE: nothing comes back
    assert "timeout" in capsys.readouterr().err


SIM_LAB = Path(__file__).resolve().parents[2] / "configs" / "sim-lab.yaml"


def secured_config(lab: Lab, path: Path, role: str = "operator") -> Path:
    """configs/sim-lab.yaml with a `bus.security` section for `lab`, written to `path`."""
    daemon = lab.security.clients["daemon"].public_key
    viewer = lab.security.clients["viewer"].public_key
    block = (
        "bus:\n"
        "  security:\n"
        "    curve: true\n"
        f'    server_public_key: "{lab.security.server_public_key}"\n'
        f"    server_key_file: {lab.security.server_key_file}\n"
        f"    client_key_file: {lab.keys / 'daemon.key_secret'}\n"
        "    clients:\n"
        f'      daemon: {{public_key: "{daemon}", role: {role}}}\n'
        f'      viewer: {{public_key: "{viewer}"}}\n'
    )
    text = SIM_LAB.read_text()
    assert text.count("\nbus:\n") == 1
    path.write_text(text.replace("\nbus:\n", "\n" + block, 1))
    return path


def test_the_lab_config_carries_security(lab: Lab, tmp_path: Path):
    from ionpilot.config import ConfigError, load_config

    assert load_config(SIM_LAB).bus.security.curve is not False  # secured unless turned off
    security = load_config(secured_config(lab, tmp_path / "lab.yaml")).bus.security
    assert security.curve and security.clients["viewer"].role == "observer"
    assert (
        ClientKeys.from_settings(security).public == security.clients["daemon"].public_key.encode()
    )
    assert ServerKeys.from_settings(security).roles == {
        "daemon": ROLE_METHODS["operator"],
        "viewer": ROLE_METHODS["observer"],
    }
    with pytest.raises(ConfigError) as info:
        load_config(secured_config(lab, tmp_path / "bad.yaml", role="boss"))
    assert "bus.security.clients.daemon.role" in str(info.value) and "boss" in str(info.value)


def test_hub_command_takes_security_from_the_config(
    lab: Lab, tmp_path: Path, settings, ctx, join, capsys
):
    """`ionpilot hub` with explicit ports still secures itself as the lab config says, and
    `bus monitor --key --server-key` listens to it."""
    import re
    import subprocess
    import sys

    from ionpilot.bus import Publisher, Subscriber

    config = secured_config(lab, tmp_path / "lab.yaml")
    command = [sys.executable, "-m", "ionpilot.commands.bus", "hub", "--config", str(config)]
    ports = ["--host", "127.0.0.1", "--publish-port", "0", "--subscribe-port", "0"]
    proc = subprocess.Popen([*command, *ports], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.findall(r"tcp://127\.0\.0\.1:(\d+)", line)
        assert len(found) == 2, line
        base = replace(settings, publish_port=int(found[0]), subscribe_port=int(found[1]))
        daemon, viewer = lab.settings(base, "daemon"), lab.settings(base, "viewer")
        with (
            Publisher(daemon, "drivers", context=ctx) as pub,
            Subscriber(viewer, ["tlm."], context=ctx) as sub,
            Subscriber(base, ["tlm."], context=ctx) as plain,
        ):
            join(pub, sub)
            pub.publish("tlm.drivers.x", 1.5)
            msg = sub.recv(timeout=10)
            assert isinstance(msg, Telemetry) and msg.value == 1.5
            assert plain.recv(timeout=FAST) is None
            stop = threading.Event()

            def feed() -> None:
                while not stop.wait(0.005):
                    pub.publish("tlm.drivers.x", 2.5)

            feeder = threading.Thread(target=feed)
            feeder.start()
            try:
                monitor = [
                    *("bus", "monitor", "tlm.drivers", "--count", "2", "--duration", "10"),
                    *("--host", "127.0.0.1", "--subscribe-port", found[1]),
                    *("--key", str(lab.keys / "viewer.key_secret")),
                    *("--server-key", str(lab.keys / "server.key")),
                ]
                assert main(monitor) == 0
                lines = capsys.readouterr().out.strip().splitlines()
                assert len(lines) == 2 and all("tlm.drivers.x" in x for x in lines), lines
            finally:
                stop.set()
                feeder.join(10)
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def test_secured_hub_listeners_and_publishers(lab: Lab, settings, ctx, settings_of, join):
    from ionpilot.bus import Hub, Publisher, Subscriber

    with Hub(lab.settings(settings), ctx) as hub:
        base = settings_of(settings, hub)
        daemon, viewer = lab.settings(base, "daemon"), lab.settings(base, "viewer")
        with (
            Publisher(daemon, "drivers", context=ctx) as pub,
            Subscriber(viewer, ["tlm."], context=ctx) as sub,
            Publisher(viewer, "viewer", context=ctx) as fake,  # observers may not publish
            Subscriber(lab.settings(base, "stranger"), ["tlm."], context=ctx) as stranger,
            Subscriber(base, ["tlm."], context=ctx) as plain,
        ):
            join(pub, sub)
            seen: list[str] = []
            for i in range(30):
                fake.publish("tlm.fake.x", 666)
                pub.publish("tlm.drivers.x", float(i))
                msg = sub.recv(timeout=0.01)
                while msg is not None:
                    seen.append(msg.topic)
                    msg = sub.recv(timeout=0.0)
            assert "tlm.drivers.x" in seen and "tlm.fake.x" not in seen
            assert stranger.recv(timeout=FAST) is None and plain.recv(timeout=0.05) is None
        assert ZapHandler._handlers[id(ctx)].stats["denied"] >= 2  # stranger, fake publisher
    assert id(ctx) not in ZapHandler._handlers  # the hub's stop ended its ZAP handler


def test_off_loopback_needs_curve(lab: Lab):
    for host in ("127.0.0.1", "127.0.1.1", "localhost", "::1"):
        assert BusSettings(host=host).host == host
    off = BusSecurity(curve=False)
    for host in ("0.0.0.0", "192.168.1.20", "labpc-01", "*"):
        with pytest.raises(ValueError, match="off loopback"):
            BusSettings(host=host, security=off)
        with pytest.raises(SecurityError, match="off loopback"):
            Hub(BusSettings(host=host))  # unset security is never served off loopback plain
        assert BusSettings(host=host, security=lab.security).security.curve
