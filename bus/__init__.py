"""The ZeroMQ bus: telemetry pub/sub through a hub, commands (RPC), heartbeats, one codec.

Qt support lives in `ionpilot.gui.busqt` and is imported only by the GUI.
"""

from ionpilot.bus.client import AsyncCommandClient, ClientCore, CommandClient
from ionpilot.bus.codec import (
    ERROR_CODES,
    IDEMPOTENT_METHODS,
    METHODS,
    STATUSES,
    BusError,
    Codec,
    DecodeError,
    ErrorCode,
    Event,
    Heartbeat,
    Message,
    Reply,
    Request,
    Telemetry,
)
from ionpilot.bus.directory import Directory
from ionpilot.bus.hub import Hub
from ionpilot.bus.pubsub import GapCounter, HeartbeatPublisher, Liveness, Publisher, Subscriber
from ionpilot.bus.server import CommandServer
from ionpilot.bus.settings import BusSecurity, BusSettings, CurveClient, ProcessSettings

__all__ = [
    "ERROR_CODES",
    "IDEMPOTENT_METHODS",
    "METHODS",
    "STATUSES",
    "AsyncCommandClient",
    "BusError",
    "BusSecurity",
    "BusSettings",
    "ClientCore",
    "Codec",
    "CommandClient",
    "CommandServer",
    "CurveClient",
    "DecodeError",
    "Directory",
    "ErrorCode",
    "Event",
    "GapCounter",
    "Heartbeat",
    "HeartbeatPublisher",
    "Hub",
    "Liveness",
    "Message",
    "ProcessSettings",
    "Publisher",
    "Reply",
    "Request",
    "Subscriber",
    "Telemetry",
]
