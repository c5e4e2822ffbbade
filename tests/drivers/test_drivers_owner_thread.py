"""A VISA driver used from an owner thread (as the driver host uses it) behaves as on the main
thread: the same replies, the same refusals, the same debug lines when debug logging is on."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest
from drivertools import open_recorded

from ionpilot.drivers.errors import InstrumentCommandError


def _in_thread(fn: Callable[[], Any]) -> Any:
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(fn())
        except Exception as exc:
            result.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    return result[0]


def test_reads_writes_and_refusals_off_the_main_thread(caplog: pytest.LogCaptureFixture) -> None:
    rf, sent = open_recorded("rf", "rs_smb100a")
    try:
        on_main = rf.frequency.get()
        assert _in_thread(rf.frequency.get) == on_main
        assert _in_thread(lambda: rf.ask("SOUR:POW?")) == rf.ask("SOUR:POW?")
        _in_thread(lambda: rf.write("OUTP:STAT 1"))
        assert rf.output.get() is True
        assert "OUTP:STAT 1" in sent
        refused = _in_thread(lambda: rf.ask("SOUR:BOGUS?"))  # no reply: the error queue says why
        assert isinstance(refused, InstrumentCommandError)
        with caplog.at_level(logging.DEBUG):
            _in_thread(rf.power.get)
        assert "Querying: SOUR:POW?" in caplog.text
        assert "Response: " in caplog.text
    finally:
        rf.close()
