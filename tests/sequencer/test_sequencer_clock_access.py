"""Who may play clock jobs (issue 19: nothing bypassed). Clock jobs run while user jobs are held
(a recovery, a lock not `locked`), so the service takes them only from the clock servo (`daemon`)
and the current borrower of the clock laser or the trap, as the bus authenticates them (CURVE
keys, as `ionpilot up` makes them), never from a name a caller gives itself. On today's main a
script with the operator's key played clock jobs during the daemon's hold, released the
daemon's hold by calling itself `daemon.lock`, and wrote the lock state every result carries.

The service runs in process on loopback with the lab's keys; each principal is a client with
its own key."""

from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from labprocs import wait_for  # type: ignore[import-not-found]

from ionpilot.bus.client import CommandClient
from ionpilot.bus.codec import BusError
from ionpilot.bus.labkeys import ensure_lab_keys, key_dir, lab_security
from ionpilot.bus.settings import BusSettings
from ionpilot.core.clock import ManualClock
from ionpilot.sequencer import JobQueue, clock_interrogation, execute_job
from ionpilot.sequencer.clock import presence_schedule
from ionpilot.sequencer.service import SequencerService
from ionpilot.sequencer.settings import DeviceSettings

PRINCIPALS = {"daemon": "operator", "sequencer": "operator", "operator": "operator"}
DEVICE = DeviceSettings()
CLOCK_SCHEDULE = clock_interrogation(DEVICE).dumps()
COUNT_SCHEDULE = presence_schedule(DEVICE, 1e-3).dumps()  # a fluorescence count: detection only
X0 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit q;\nbit c;\nx q;\nc = measure q;\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclasses.dataclass
class SecuredLab:
    service: SequencerService
    clients: dict[str, CommandClient]

    def call(self, who: str, name: str, **args: Any) -> Any:
        return self.clients[who].call("sequencer", "call", {"name": name, **args}, timeout=5.0)

    def refused(self, who: str, name: str, **args: Any) -> BusError:
        with pytest.raises(BusError) as refusal:
            self.call(who, name, **args)
        assert refusal.value.code == "forbidden", refusal.value
        return refusal.value

    def finished(self, job_id: str) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            job = self.clients["daemon"].call("sequencer", "get", {"name": "job", "id": job_id})
            return job if job["state"] in ("done", "failed") else None

        return wait_for(done, 20.0)  # type: ignore[no-any-return]

    def status(self) -> dict[str, Any]:
        return self.clients["daemon"].call("sequencer", "status")  # type: ignore[no-any-return]


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[SecuredLab]:
    ensure_lab_keys(tmp_path, PRINCIPALS)
    security = lab_security(tmp_path, PRINCIPALS, {}, identity="sequencer")
    bus = BusSettings(publish_port=free_port(), subscribe_port=free_port(), security=security)
    service = SequencerService(
        JobQueue(tmp_path / "jobs.json"),
        DEVICE,
        lambda job: execute_job(job, DEVICE, ideal=True, seed=1),
        bus,
        "tcp://127.0.0.1:0",
        backend="sim",
    ).start()
    clients = {}
    for name in PRINCIPALS:
        own = dataclasses.replace(
            security, client_key_file=str(key_dir(tmp_path) / f"{name}.key_secret")
        )
        settings = dataclasses.replace(bus, security=own)
        clients[name] = CommandClient(settings, service.endpoint, name=f"client-{name}")
    try:
        yield SecuredLab(service, clients)
    finally:
        for client in clients.values():
            client.close()
        service.stop()


def test_during_a_hold_only_the_servo_and_the_borrower_play_clock_jobs(secured: SecuredLab):
    lab = secured
    lab.call("daemon", "hold", reason="recovery: ion_loss", client="daemon.lock")
    assert lab.status()["held_by"] == "daemon.lock"

    # a script with the operator's key: no clock job, whatever it calls itself
    refusal = lab.refused("operator", "submit", kind="clock", schedule=CLOCK_SCHEDULE, shots=5)
    assert "only the clock servo ('daemon')" in refusal.message
    assert "borrower of the clock laser or the trap" in refusal.message
    assert "'operator' sent no lease" in refusal.message
    assert "kind=user" in refusal.message  # what it may do instead
    forged = lab.refused(
        "operator", "submit", kind="clock", schedule=CLOCK_SCHEDULE, client="daemon"
    )
    assert "client name 'daemon' is 'daemon''s; you are 'operator'" in forged.message
    lab.refused("operator", "run_clock", schedule=CLOCK_SCHEDULE, shots=5)
    # nor release the daemon's hold in its name, nor tell the lock state results carry
    lab.refused("operator", "resume", client="daemon.lock")
    lab.refused("operator", "resume", lock_state="locked")
    assert lab.status()["held_by"] == "daemon.lock"
    assert lab.status()["clock"]["lock"]["state"] == "unknown"
    # nor grant itself a lease
    lease = {"laser": "clock", "holder": "operator", "owner": "me", "token": "t" * 32}
    assert (
        "leases are the clock servo's"
        in lab.refused("operator", "lease", lease_s=60, **lease).message
    )
    assert lab.service.queue.jobs() == []  # nothing of it was queued

    # the servo's clock jobs run through the hold
    servo_job = lab.call("daemon", "submit", kind="clock", schedule=CLOCK_SCHEDULE, shots=5)
    assert lab.finished(servo_job["id"])["state"] == "done"

    # the daemon lends the clock laser to the operator's experiment: its token, its identity
    lab.call("daemon", "lease", lease_s=60.0, **{**lease, "token": "a" * 32})
    leases = lab.status()["leases"]
    assert leases["clock"]["holder"] == "operator" and "token" not in leases["clock"]
    wrong = lab.refused("operator", "submit", kind="clock", schedule=CLOCK_SCHEDULE, lease="b" * 32)
    assert "a lease token that is not the current one" in wrong.message
    assert "the clock is lent to 'me' (operator)" in wrong.message
    borrowed = lab.call(
        "operator", "submit", kind="clock", schedule=CLOCK_SCHEDULE, shots=5, lease="a" * 32
    )
    assert lab.finished(borrowed["id"])["state"] == "done"  # while user jobs are held
    # the token is the operator's: another principal holding it gets nothing
    lab.refused("sequencer", "submit", kind="clock", schedule=CLOCK_SCHEDULE, lease="a" * 32)

    lab.call("daemon", "lease", laser="clock", end=True)  # taken back
    lab.refused("operator", "submit", kind="clock", schedule=CLOCK_SCHEDULE, lease="a" * 32)
    assert lab.status()["leases"] == {}


def test_a_users_fluorescence_count_is_a_user_job_held_with_the_others(secured: SecuredLab):
    lab = secured
    lab.call("daemon", "hold", reason="recovery: ion_loss", client="daemon.lock")
    count = lab.call("operator", "submit", kind="user", schedule=COUNT_SCHEDULE, shots=20)
    assert count["held"] is True
    program = lab.call("operator", "submit", qasm=X0, shots=5)
    servo_job = lab.call("daemon", "submit", kind="clock", schedule=CLOCK_SCHEDULE, shots=5)
    assert lab.finished(servo_job["id"])["state"] == "done"
    for job in (count, program):  # held: neither ran while the servo's did
        state = lab.clients["operator"].call("sequencer", "get", {"name": "job", "id": job["id"]})
        assert state["state"] == "queued"
    lab.call("daemon", "resume", lock_state="locked", client="daemon.lock")
    done = lab.finished(count["id"])
    assert done["state"] == "done" and done["result"]["lock"]["state"] == "locked"
    assert done["result"]["counts"]  # the schedule's own result
    assert lab.finished(program["id"])["state"] == "done"
    # a user schedule plays in one controller call: no longer than one user slice
    longest = lab.service.share.max_user_slice_s
    with pytest.raises(BusError, match=f"at most {longest:g} s; submit fewer shots") as long:
        lab.call("operator", "submit", kind="user", schedule=COUNT_SCHEDULE, shots=100_000)
    assert long.value.code == "bad_request"
    for bad in ({"schedule": COUNT_SCHEDULE, "qasm": X0}, {"schedule": "{}"}):
        with pytest.raises(BusError) as refused:
            lab.call("operator", "submit", kind="user", **bad)
        assert refused.value.code == "bad_request"


def in_process_service(clock: ManualClock, **options: Any) -> SequencerService:
    """The service on a manual clock, its jobs answered at once, never bound to a port."""
    return SequencerService(
        JobQueue(None),
        DEVICE,
        lambda job: {"windows": [], "counts": [[0]]},
        BusSettings(),
        "tcp://127.0.0.1:0",
        backend="sim",
        clock=clock,
        **options,
    )


def test_a_lease_ends_by_itself_and_takes_only_what_the_daemon_lends(tmp_path: Path):
    """In process, on a manual clock: the daemon whose `return_laser` never came (it died)
    leaves no lease behind beyond the one it gave; nobody else cancels the daemon's jobs."""
    clock = ManualClock()
    service = in_process_service(clock)

    def call(who: str, **args: Any) -> Any:
        return service.call_in_process(args, who).result(timeout=0)

    lease = {"name": "lease", "laser": "trap", "holder": "alice", "owner": "loading-curve"}
    call("daemon", **lease, token="c" * 32, lease_s=30.0)
    job: Callable[[], Any] = lambda: call(  # noqa: E731
        "alice", name="submit", kind="clock", schedule=CLOCK_SCHEDULE, lease="c" * 32
    )
    assert job()["id"]
    clock.advance(30.0)
    with pytest.raises(BusError, match="'alice' sent a lease token that is not the current"):
        job()
    for bad in (
        {"laser": "cooling"},
        {"laser": "clock", "lease_s": 1e9},
        {"laser": "clock", "lease_s": 10.0, "token": ""},
    ):
        with pytest.raises(BusError) as refused:
            call("daemon", **{**lease, "token": "d" * 32, "lease_s": 5.0, **bad})
        assert refused.value.code == "bad_request"
    assert json.loads(CLOCK_SCHEDULE)  # the schedule itself was never the problem

    # the daemon's interrogations are its own to cancel: a script cancelling each one as it
    # came would starve the lock
    servo = {"name": "submit", "kind": "clock", "schedule": CLOCK_SCHEDULE, "client": "daemon"}
    interrogation = call("daemon", **servo)["id"]
    with pytest.raises(BusError, match="is 'daemon''s \\(its interrogation\\); 'alice' may not"):
        call("alice", name="cancel", id=interrogation)
    assert service.queue.get(interrogation).state == "queued"
    assert call("daemon", name="cancel", id=interrogation)["state"] == "cancelled"


def test_a_hold_whose_daemon_is_silent_is_marked_stale_and_said_so(tmp_path: Path):
    """A daemon that stopped and never came back leaves its `daemon.lock` hold: kept (the
    laser is off the ions' line without it), but marked stale once `hb.daemon` has been silent
    for `stale_hold_s`, in every hold state and in `ionpilot jobs`' text."""
    from ionpilot.commands.jobs import hold_text
    from ionpilot.sequencer.service import HolderWatch

    clock = ManualClock()
    service = in_process_service(clock, stale_hold_s=60.0)
    bus = BusSettings(publish_port=free_port(), subscribe_port=free_port())  # no hub there
    watch = HolderWatch(bus, "daemon", clock)
    service._holder_watch = watch
    try:
        hold = {"name": "hold", "reason": "clock lock is acquiring"}
        service.call_in_process(hold, "daemon.lock").result(timeout=0)
        service.call_in_process({"name": "hold", "reason": "cleaning"}, "alice").result(timeout=0)
        clock.advance(30.0)
        watch._sub.liveness.beat("daemon")  # as a heartbeat arriving would
        clock.advance(59.0)
        state = service.hold_state()
        assert state["stale_holds"] == []
        mine = {h["by"]: h for h in state["holds"]}
        assert mine["daemon.lock"]["holder_silent_s"] == 59.0
        assert "holder_silent_s" not in mine["alice"]  # a person has no heartbeat
        clock.advance(2.0)
        state = service.hold_state()
        assert state["held"] and state["stale_holds"] == ["daemon.lock"]
        text = hold_text(state, 1.7e9)
        assert (
            "[stale: daemon silent for 1 min 1 s; `ionpilot jobs resume --force` releases it]"
            in text
        )
        assert text.count("stale") == 1  # alice's hold is hers to release
    finally:
        watch.stop()
