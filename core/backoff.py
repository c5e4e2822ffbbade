"""Capped exponential back-off, shared by everything that reconnects or restarts."""

from __future__ import annotations


class Backoff:
    """Capped exponential back-off: 1, 2, 4, ... up to `maximum` seconds; `reset` on success."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0, factor: float = 2.0) -> None:
        if initial <= 0 or maximum < initial or factor < 1:
            raise ValueError("back-off needs 0 < initial <= maximum and factor >= 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.attempts = 0

    def next_delay(self) -> float:
        delay = min(self.maximum, self.initial * self.factor**self.attempts)
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0
