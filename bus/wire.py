"""Fast multipart send/receive: pyzmq's `*_multipart` ask `RCVMORE` with a getsockopt per frame,
which costs more than the frames themselves; `Frame.more` and `SNDMORE` sends do not."""

from __future__ import annotations

from collections.abc import Sequence

import zmq

MAX_FRAMES = 8  # more than this is never a valid bus message; the rest is read and dropped
HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 3000


def keep_alive(sock: zmq.Socket[bytes]) -> None:
    """ZMTP heartbeats on every bus connection: a peer silent for 3 s (a cut link, a frozen
    host) is disconnected, and the connecting side reconnects at once when it comes back,
    instead of waiting out TCP's retransmission back-off (minutes) on a dead connection.
    A request still in that dead connection's buffers dies with it: never delivered late."""
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS)
    # and a connection attempt into a dead link gives up after this and tries again, rather
    # than waiting out TCP's SYN back-off
    sock.setsockopt(zmq.CONNECT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)


def recv_frames(sock: zmq.Socket[bytes], flags: int = 0) -> list[bytes]:
    """One whole multipart message (at most MAX_FRAMES + 1 frames kept; a longer one is
    consumed entirely and comes back with MAX_FRAMES + 1 frames, so callers reject it)."""
    frame = sock.recv(flags, copy=False)
    frames = [frame.bytes]
    while frame.more:
        frame = sock.recv(0, copy=False)  # the rest of a message is already here
        if len(frames) <= MAX_FRAMES:
            frames.append(frame.bytes)
    return frames


def send_frames(sock: zmq.Socket[bytes], frames: Sequence[bytes], flags: int = 0) -> None:
    """Send a multipart message; `zmq.Again` (with NOBLOCK) can only come on the first frame."""
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        sock.send(frame, flags | zmq.SNDMORE if i < last else flags)
