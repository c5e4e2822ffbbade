"""Fixtures for the bus tests: a private ZeroMQ context, a hub on free ports, settings."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
import zmq

from ionpilot.bus import BusSettings, Hub, Publisher, Subscriber


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def dead_endpoint() -> Iterator[str]:
    """An address where nobody answers: a port this test holds bound but never listens on, so
    connections are refused and no other process can take it meanwhile (no fixed port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"tcp://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def settings() -> BusSettings:
    return BusSettings(publish_port=0, subscribe_port=0, request_timeout=2.0)


@pytest.fixture
def hub(settings: BusSettings, ctx: zmq.Context) -> Iterator[Hub]:
    with Hub(settings, ctx) as running:
        yield running


def _hub_settings(settings: BusSettings, hub: Hub) -> BusSettings:
    """Settings whose ports are the ones the hub really bound."""
    pub_port = int(hub.publish_endpoint.rsplit(":", 1)[1])
    sub_port = int(hub.subscribe_endpoint.rsplit(":", 1)[1])
    return replace(settings, publish_port=pub_port, subscribe_port=sub_port)


def _join(pub: Publisher, sub: Subscriber, topic: str = "tlm.warmup.probe") -> None:
    """Wait out ZeroMQ's slow joiner: publish probes until the subscriber sees one."""
    for _ in range(2000):
        pub.publish(topic, 0)
        msg = sub.recv(timeout=0.01)
        while msg is not None:
            if msg.topic == topic:
                sub.drain()
                return
            msg = sub.recv(timeout=0.0)
    raise AssertionError("subscriber never joined")


@pytest.fixture
def settings_of() -> Callable[[BusSettings, Hub], BusSettings]:
    return _hub_settings


@pytest.fixture
def join() -> Callable[..., None]:
    return _join


@pytest.fixture
def bus(settings: BusSettings, hub: Hub) -> BusSettings:
    """Settings pointing at the running `hub`."""
    return _hub_settings(settings, hub)
