"""SC10 driver over pyserial `socket://` against a loopback replay of the controller's bytes."""

import itertools

import pytest

from ionpilot.drivers.errors import (
    InstrumentCommandError,
    InstrumentReplyError,
    InstrumentTimeoutError,
)
from ionpilot.drivers.registry import open_instrument
from ionpilot.drivers.replay import Exchange, ReplayServer

_names = itertools.count()
IDN = Exchange(b"id?", b"id?\rTHORLABS SC10 VERSION 1.07\r> ")


def _answer(command: bytes, value: bytes | None = None) -> Exchange:
    reply = command + b"\r" + (value + b"\r" if value is not None else b"") + b"> "
    return Exchange(command, reply)


def _run(script, body, timeout_s=2.0):
    with ReplayServer([IDN, *script], terminator=b"\r") as server:
        shutter = open_instrument(
            f"shutter{next(_names)}",
            "thorlabs_sc10",
            f"socket://127.0.0.1:{server.port}",
            timeout_s=timeout_s,
        )
        try:
            body(shutter)
        finally:
            shutter.close()
        assert server.failures == []
        assert server.remaining == 0


def test_identity_and_state():
    def body(shutter):
        assert shutter.IDN()["firmware"] == "1.07"
        assert shutter.open() is False
        assert shutter.mode() == 1

    _run([IDN, _answer(b"ens?", b"0"), _answer(b"mode?", b"1")], body)


def test_open_toggles_only_when_needed_and_verifies():
    script = [
        _answer(b"ens?", b"0"),
        _answer(b"mode?", b"2"),
        _answer(b"mode=1"),
        _answer(b"ens"),
        _answer(b"ens?", b"1"),
        _answer(b"ens?", b"1"),  # open_shutter again: already open, nothing toggled
    ]

    def body(shutter):
        shutter.open_shutter()
        shutter.open_shutter()
        assert shutter.open.cache.get(get_if_invalid=False) is True

    _run(script, body)


def test_toggle_that_does_not_take_raises():
    script = [
        _answer(b"ens?", b"1"),
        _answer(b"mode?", b"1"),
        _answer(b"ens"),
        _answer(b"ens?", b"1"),
    ]

    def body(shutter):
        with pytest.raises(InstrumentCommandError, match="did not close"):
            shutter.close_shutter()

    _run(script, body)


def test_refusals_and_bad_replies():
    script = [
        _answer(b"mode=9", b"CMD_ARG_INVALID"),
        _answer(b"ens?", b"2"),
        Exchange(b"ens?", b"ens\r1\r> "),  # wrong echo
        Exchange(b"mode?", b"mode?\r"),  # no prompt: times out
    ]

    def body(shutter):
        with pytest.raises(ValueError):
            shutter.mode(9)  # refused by the validator before sending
        with pytest.raises(InstrumentCommandError, match="CMD_ARG_INVALID"):
            shutter.query("mode=9")
        with pytest.raises(InstrumentReplyError):
            shutter.open()
        with pytest.raises(InstrumentReplyError, match="echo"):
            shutter.open()
        with pytest.raises(InstrumentTimeoutError):
            shutter.mode()

    _run(script, body, timeout_s=0.3)


def test_unreachable_address_is_a_timeout_error():
    with pytest.raises(InstrumentTimeoutError):
        open_instrument(
            f"shutter{next(_names)}", "thorlabs_sc10", "socket://127.0.0.1:1", timeout_s=0.3
        )
