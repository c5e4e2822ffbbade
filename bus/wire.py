"""Fast multipart send/receive: pyzmq's `*_multipart` ask `RCVMORE` with a getsockopt per frame,
which costs more than the frames themselves; `Frame.more` and `SNDMORE` sends do not."""

from __future__ import annotations

from collections.abc import Sequence

import zmq

MAX_FRAMES = 8  # more than this is never a valid bus message; the rest is read and dropped


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
