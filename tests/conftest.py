"""Fixtures for every test folder: `shared_up`, the one live `ionpilot up` lab of the tests that
only watch a healthy lab or inject a fault it recovers from (tests/foundation/sharedlab.py).

The lab starts with the first test of the session (it locks while the tests before its first
user run), its users run one after another (from where the first of them was collected), and it
is told to stop after the last one, so no lab idles through the rest of the suite (the end of the
session waits for it and fails if it left a process behind)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "foundation"))
from sharedlab import LiveUp, SharedUp, uses  # type: ignore[import-not-found]

SHARED = "shared_up"
_uses_shared = uses(SHARED)


@pytest.hookimpl(trylast=True)  # after deselection: only the tests that will run
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the shared lab's users together, where the first of them stands."""
    users = [item for item in items if _uses_shared(item)]
    if not users:
        return
    first = items.index(users[0])
    others = [item for item in items if not _uses_shared(item)]
    items[:] = others[:first] + users + others[first:]


@pytest.fixture(scope="session")
def _shared_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedUp]:
    shared = SharedUp(tmp_path_factory.mktemp("shared-up"))
    try:
        yield shared
    finally:
        shared.close()


@pytest.fixture(scope="session", autouse=True)
def _shared_lab_starts_early(request: pytest.FixtureRequest) -> None:
    """When the session has users of the shared lab, start it with the first test of all: it
    takes ~40 s to lock, mostly waiting on the simulated lab's real time at little CPU, and the
    tests before its first user run meanwhile."""
    if any(_uses_shared(item) for item in request.session.items):
        shared: SharedUp = request.getfixturevalue("_shared_lab")
        shared.start()


@pytest.fixture
def shared_up(request: pytest.FixtureRequest, _shared_lab: SharedUp) -> Iterator[LiveUp]:
    """The shared live lab, healthy, its earlier alarms acknowledged (see sharedlab.py)."""
    yield _shared_lab.handover(request.node.nodeid)
    items = request.session.items
    later = items[items.index(request.node) + 1 :] if request.node in items else []
    if not any(_uses_shared(item) for item in later):
        _shared_lab.release()  # the last user: it stops now, checked at the end of the session
