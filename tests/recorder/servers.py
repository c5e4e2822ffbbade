"""Real servers for the recorder's tests, on loopback in a temporary directory: started,
waited for, stopped. A test whose binary is missing is skipped with a one-line reason (`.ci/run`
installs the Debian packages `victoria-metrics` and `prometheus`)."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

import pytest
from labprocs import free_ports  # type: ignore[import-not-found]


def binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (apt-get install {package}; .ci/run does)")
    return path


def get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        body: bytes = reply.read()
        return body


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server ended with {proc.returncode}")
        try:
            get(url, 1.0)
            return
        except (OSError, urllib.error.URLError):
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s")


class Server:
    """One server process on a free loopback port; `stop()` and `start()` again keep its data."""

    def __init__(self, argv: list[str], port: int, health: str, log: Path) -> None:
        self.argv = argv
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.health = health
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 20.0) -> Server:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)
        wait_http(self.url + self.health, timeout_s, self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5.0)
        self.proc = None

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def victoria_metrics(tmp: Path) -> Server:
    exe = binary("victoria-metrics", "victoria-metrics")
    (port,) = free_ports(1)
    argv = [
        exe,
        f"-storageDataPath={tmp / 'vm-data'}",
        f"-httpListenAddr=127.0.0.1:{port}",
        "-retentionPeriod=1",
        "-loggerLevel=ERROR",
        "-search.latencyOffset=0s",
    ]
    return Server(argv, port, "/health", tmp / "vm.log")


def prometheus(tmp: Path, targets: list[str], interval_s: float = 0.5) -> Server:
    exe = binary("prometheus", "prometheus")
    (port,) = free_ports(1)
    config = tmp / "prometheus.yml"
    quoted = ", ".join(f"'{t}'" for t in targets)
    config.write_text(
        "global:\n"
        f"  scrape_interval: {int(interval_s * 1000)}ms\n"
        f"  scrape_timeout: {int(interval_s * 1000)}ms\n"
        "scrape_configs:\n"
        "  - job_name: ionpilot\n"
        f"    static_configs: [{{targets: [{quoted}]}}]\n"
    )
    argv = [
        exe,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp / 'prom-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=error",
    ]
    return Server(argv, port, "/-/ready", tmp / "prometheus.log")
