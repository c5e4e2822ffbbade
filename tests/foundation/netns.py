"""Linux network namespaces as "machines" for tests: a core host routing between a driver host
and a script host over veth pairs, each with its own address. Created and removed by the test;
`NetnsLab.unavailable()` says why they cannot be made here (the test then skips)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


@dataclass
class NetnsLab:
    """Three namespaces: `core` (10.S.1.1 and 10.S.2.1, forwarding), `drv` (10.S.1.2), `scr`
    (10.S.2.2). The core-drv link is the one a test cuts (`cut`/`restore`)."""

    tag: str = field(default_factory=lambda: f"{os.getpid() % 100000}")
    made: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        subnet = 100 + os.getpid() % 100
        self.core, self.drv, self.scr = (f"i19{self.tag}{x}" for x in "cds")
        self.core_ip, self.drv_ip = f"10.{subnet}.1.1", f"10.{subnet}.1.2"
        self.core_scr_ip, self.scr_ip = f"10.{subnet}.2.1", f"10.{subnet}.2.2"
        self.core_link, self.drv_link = f"v{self.tag}cd", f"v{self.tag}dc"

    @staticmethod
    def unavailable() -> str:
        """Why namespaces cannot be used here ("" when they can)."""
        if shutil.which("ip") is None:
            return "no `ip` command (iproute2)"
        if os.geteuid() != 0:
            return "network namespaces need root (CAP_NET_ADMIN)"
        probe = f"i19probe{os.getpid() % 100000}"
        try:
            _ip("netns", "add", probe)
            _ip("netns", "del", probe)
        except (subprocess.CalledProcessError, OSError) as exc:
            return f"cannot create a network namespace: {getattr(exc, 'stderr', exc)}"
        return ""

    def create(self) -> NetnsLab:
        for ns in (self.core, self.drv, self.scr):
            _ip("netns", "add", ns)
            self.made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        core_scr, scr_core = f"v{self.tag}cs", f"v{self.tag}sc"
        for a, ns_a, b, ns_b in (
            (self.core_link, self.core, self.drv_link, self.drv),
            (core_scr, self.core, scr_core, self.scr),
        ):
            _ip("link", "add", a, "netns", ns_a, "type", "veth", "peer", "name", b, "netns", ns_b)
        for ns, dev, address in (
            (self.core, self.core_link, self.core_ip),
            (self.drv, self.drv_link, self.drv_ip),
            (self.core, core_scr, self.core_scr_ip),
            (self.scr, scr_core, self.scr_ip),
        ):
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
        _ip("-n", self.drv, "route", "add", "default", "via", self.core_ip)
        _ip("-n", self.scr, "route", "add", "default", "via", self.core_scr_ip)
        subprocess.run(
            ["ip", "netns", "exec", self.core, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
            check=True,
            timeout=10,
        )
        return self

    def exec_argv(self, ns: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *argv]

    def cut(self) -> None:
        _ip("-n", self.drv, "link", "set", self.drv_link, "down")

    def restore(self) -> None:
        """The link up again, and the driver host's default route, which the kernel dropped
        with the link (a configured machine gets it back the same way)."""
        _ip("-n", self.drv, "link", "set", self.drv_link, "up")
        _ip("-n", self.drv, "route", "replace", "default", "via", self.core_ip)

    def remove(self) -> None:
        for ns in reversed(self.made):
            try:
                _ip("netns", "del", ns)
            except subprocess.CalledProcessError:
                pass
        self.made.clear()
