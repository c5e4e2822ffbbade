"""`ionpilot jobs submit|list|show|cancel|hold|resume|audit`: the sequencer service's job queue
from the shell, in the lab's words (local times, durations with units, priorities), `--json` for
scripts.

Exit codes, as elsewhere in the CLI: 0 done; 1 the lab did not answer or the job failed; 2 bad
input, or a request the service refused (an unknown job, a job that is no longer queued, user
jobs held and `--no-wait`). Every request names its sender (`user@host`), so the queue's audit
trail says who submitted, cancelled, held or resumed what.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ionpilot.bus.client import CommandClient
from ionpilot.bus.codec import BusError, ErrorCode
from ionpilot.bus.directory import Directory
from ionpilot.config import DEFAULT_CONFIG, LabConfig

SEQUENCER = "sequencer"
FINISHED = ("done", "failed", "cancelled")
POLL_S = 0.2  # how often a waiting command asks about its job
REMIND_S = 60.0  # a held queue is mentioned again after this long
TIME_KEYS = ("submitted_s", "due_s", "started_s", "finished_s", "at_s", "held_since_s")
REFUSED = frozenset(
    {ErrorCode.BAD_REQUEST, ErrorCode.BUSY, ErrorCode.FORBIDDEN, ErrorCode.UNKNOWN_METHOD}
)


class JobsError(Exception):
    """A request that could not be made or was refused: one `error:` line, exit `code`."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# ----------------------------------------------------------------------------- in the lab's words


def local_time(t: float | None) -> str:
    """Unix seconds as local ISO time with its UTC offset ('-' for none)."""
    if t is None:
        return "-"
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")


def duration(seconds: float) -> str:
    """A duration the way an operator says it: 350 ms, 4.2 s, 42 s, 3 min 5 s, 2 h 10 min."""
    s = max(0.0, seconds)
    if s < 1:
        return f"{s * 1e3:.0f} ms"
    if s < 10:
        return f"{s:.1f} s"
    if s < 60:
        return f"{s:.0f} s"
    whole = round(s)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60} min"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


def with_local_times(doc: Any) -> Any:
    """A copy of `doc` with `<name>_local` (local ISO time) beside every Unix-time `<name>_s`."""
    if isinstance(doc, list):
        return [with_local_times(x) for x in doc]
    if not isinstance(doc, dict):
        return doc
    out: dict[str, Any] = {}
    for key, value in doc.items():
        out[key] = with_local_times(value)
        if key in TIME_KEYS and isinstance(value, int | float):
            out[key[:-2] + "_local"] = local_time(value)
    return out


def hold_text(hold: dict[str, Any], now_s: float) -> str:
    """'held since <time> (for 42 s) by daemon: recovery: ion_loss[, and since ... by ...]'."""
    parts = []
    for h in holds_of(hold):
        since = h.get("since_s")
        when = (
            "" if since is None else f" since {local_time(since)} (for {duration(now_s - since)})"
        )
        by = f" by {h['by']}" if h.get("by") else ""
        stale = ""
        silent = h.get("holder_silent_s")
        if h.get("stale") and isinstance(silent, int | float):
            process = str(h.get("by", "")).partition(".")[0]
            stale = (
                f" [stale: {process} silent for {duration(silent)}; `ionpilot jobs resume "
                "--force` releases it]"
            )
        parts.append(f"{when}{by}: {h.get('reason') or 'no reason given'}{stale}")
    return "held" + ", and".join(parts)


def holds_of(hold: dict[str, Any]) -> list[dict[str, Any]]:
    """Each hold (by, reason, since_s) of a status or submit reply."""
    holds = hold.get("holds")
    if isinstance(holds, list):
        return holds
    if not hold.get("held"):
        return []
    return [{"by": hold.get("held_by", ""), "reason": hold.get("hold_reason", ""), "since_s": None}]


def result_lines(result: dict[str, Any], shots: int) -> list[str]:
    """Counts with probabilities and their intervals, and the compile report (run-qasm's form)."""
    lines = []
    for key, count in list(result["counts"].items())[:32]:
        lo, hi = result["intervals"][key]
        lines.append(f"  {key}  {count:6d}  p={count / shots:.4f}  [{lo:.4f}, {hi:.4f}]")
    if len(result["counts"]) > 32:
        lines.append(f"  ... {len(result['counts']) - 32} more outcomes (--json has them all)")
    report = result.get("compile")
    if isinstance(report, dict):
        lines.append(
            f"  native: {report['native_counts']}, two-qubit {report['two_qubit_count']}, "
            f"duration {report['estimated_duration_s'] * 1e3:.3f} ms"
        )
    return lines


def who_am_i() -> str:
    """`user@host`: who the audit trail names for requests from this shell."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name (e.g. a container's bare uid)
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"[:128]


# -------------------------------------------------------------------------- the queue on the bus


class JobQueueLink:
    """Requests to the lab's sequencer service (found through the lab file's directory)."""

    def __init__(self, config: LabConfig) -> None:
        if SEQUENCER not in config.processes:
            raise JobsError(
                f"the lab file has no process '{SEQUENCER}' (processes: section); the job "
                "queue is served by the sequencer service",
                2,
            )
        directory = Directory.from_config(config.bus.host, config.processes, config.instruments)
        self.endpoint = directory.resolve(SEQUENCER)
        self.who = who_am_i()
        self._bus = config.bus
        self._client: CommandClient | None = None

    def request(self, method: str, args: dict[str, Any]) -> Any:
        """The reply's value; JobsError (exit 2 if refused, 1 if the lab did not answer)."""
        if self._client is None:
            _probe(self.endpoint)
            self._client = CommandClient(self._bus, self.endpoint, name="ionpilot-jobs")
        try:
            return self._client.call(SEQUENCER, method, args)
        except BusError as exc:
            if exc.code == ErrorCode.TIMEOUT:
                raise JobsError(
                    f"no reply from the sequencer service at {self.endpoint} within "
                    f"{self._bus.request_timeout:g} s; is the lab running (`ionpilot up`)?",
                    1,
                ) from None
            raise JobsError(f"{exc.code}: {exc.message}", 2 if exc.code in REFUSED else 1) from None

    def call(self, name: str, **args: Any) -> Any:
        return self.request("call", {"name": name, "client": self.who, **args})

    def job(self, job_id: str, *, audit: bool = False) -> dict[str, Any]:
        """The job (and with `audit` its audit records)."""
        job: dict[str, Any] = self.request("get", {"name": "job", "id": job_id, "audit": audit})
        return job

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.request("status", {})
        return status

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _probe(endpoint: str) -> None:
    """Fail at once, not after a timeout, when nothing listens at the service's port."""
    parts = urlsplit(endpoint)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 0), timeout=1.0):
            pass
    except OSError:
        raise JobsError(
            f"nothing listens at {endpoint}, the sequencer service's port; start the lab with "
            "`ionpilot up`",
            1,
        ) from None


@contextmanager
def queue_link(config: LabConfig) -> Iterator[JobQueueLink]:
    link = JobQueueLink(config)
    try:
        yield link
    finally:
        link.close()


def submit_and_wait(
    link: JobQueueLink,
    args: dict[str, Any],
    say: Callable[[str], None],
    *,
    no_wait: bool = False,
    poll_s: float = POLL_S,
    remind_s: float = REMIND_S,
) -> dict[str, Any]:
    """Submit a user job and wait until it has finished (its final document). While user jobs
    are held it says why and for how long (again when that changes, and every `remind_s`); with
    `no_wait`, a held queue refuses the job (JobsError, exit 2, nothing queued). Ctrl-C while the
    job waits cancels it."""
    try:
        reply = link.call("submit", **args, if_held="refuse" if no_wait else "wait")
    except JobsError as exc:
        if no_wait and str(exc).startswith(ErrorCode.BUSY):
            raise JobsError(_held_refusal(link, str(exc)), 2) from None
        raise
    job_id = str(reply["id"])
    try:
        return _wait(link, job_id, reply, say, poll_s=poll_s, remind_s=remind_s)
    except KeyboardInterrupt:
        try:
            link.call("cancel", id=job_id)
            say(f"job {job_id} cancelled before it ran")
        except JobsError:  # running (it finishes on the lab) or finished meanwhile
            say(f"job {job_id} was not cancelled; see `ionpilot jobs show {job_id}`")
        raise


def _held_refusal(link: JobQueueLink, refused: str) -> str:
    try:
        hold = link.status()
    except JobsError:
        return f"{refused.removeprefix(ErrorCode.BUSY + ': ')} (--no-wait)"
    return (
        f"user jobs are {hold_text(hold, time.time())}; nothing submitted (--no-wait; without "
        "it the job would wait in the queue)"
    )


def _wait(
    link: JobQueueLink,
    job_id: str,
    submitted: dict[str, Any],
    say: Callable[[str], None],
    *,
    poll_s: float,
    remind_s: float,
) -> dict[str, Any]:
    told: tuple[Any, ...] | None = None  # the hold last reported (held, reason, by)
    told_at = 0.0
    hold: dict[str, Any] = submitted
    ahead = int(submitted.get("ahead", 0))
    if ahead:
        say(f"job {job_id} queued behind {ahead} job(s)")
    while True:
        key = (hold.get("held"), hold.get("hold_reason"), hold.get("held_by"))
        if hold.get("held") and (key != told or time.monotonic() - told_at >= remind_s):
            say(
                f"job {job_id} waits: user jobs are {hold_text(hold, time.time())} "
                "(Ctrl-C cancels the job)"
            )
            told, told_at = key, time.monotonic()
        elif not hold.get("held") and told is not None and told[0]:
            say(f"user jobs resumed; job {job_id} goes next in its turn")
            told = key
        job = link.job(job_id)
        if job["state"] in FINISHED:
            return job
        time.sleep(poll_s)
        hold = link.status() if job["state"] == "queued" else {"held": False}


# ------------------------------------------------------------------------------------ commands


def register(subparsers: Any) -> None:
    jobs = subparsers.add_parser(
        "jobs",
        help="the sequencer's job queue: submit, list, show, cancel, hold, resume, audit",
        description=(
            "The sequencer service's job queue from the shell. Times are local, durations have "
            "units; --json gives the documents for scripts (Unix seconds plus *_local times). "
            "Exit 0 done, 1 the lab did not answer or the job failed, 2 bad input or refused."
        ),
    )
    sub = jobs.add_subparsers(dest="jobs_command", metavar="ACTION")
    jobs.set_defaults(handler=lambda args: _usage(jobs))

    submit = sub.add_parser(
        "submit",
        help="queue an OpenQASM file as a user job",
        description=(
            "Compile FILE (refused at once with its error if it does not compile) and queue it "
            "on the sequencer service's backend; prints the job id, or waits for the result "
            "with --wait. A held queue keeps the job until it is resumed."
        ),
    )
    submit.add_argument("file", metavar="FILE", help="OpenQASM 2/3 program")
    submit.add_argument("--shots", type=int, default=1000, help="repetitions (default 1000)")
    submit.add_argument(
        "--priority",
        type=int,
        default=0,
        help="-100..100, higher runs first; equal priorities run in due-time order (default 0)",
    )
    due = submit.add_mutually_exclusive_group()
    due.add_argument(
        "--at", metavar="TIME", help="run no earlier than TIME (local ISO time, 2026-12-02T03:00)"
    )
    due.add_argument(
        "--in",
        dest="in_",
        metavar="DURATION",
        help="run no earlier than DURATION from now (10 min)",
    )
    submit.add_argument(
        "--wait", action="store_true", help="wait until the job has run and print its result"
    )
    _common(submit, handler=run_submit)

    listing = sub.add_parser(
        "list",
        help="the queue's hold state and its latest jobs",
        description="Whether user jobs are held (why, by whom, since when) and the latest jobs.",
    )
    listing.add_argument(
        "--state",
        choices=("queued", "running", "done", "failed", "cancelled"),
        action="append",
        help="only jobs in this state (repeat for several)",
    )
    listing.add_argument(
        "--kind",
        choices=("user", "clock", "all"),
        default="user",
        help="user jobs (default), the daemon's clock interrogations, or all",
    )
    listing.add_argument("--limit", type=int, default=20, help="at most this many, newest last")
    _common(listing, handler=run_list)

    show = sub.add_parser(
        "show",
        help="one job: times, outcome, result and audit records",
        description="One job in full: its times, outcome, result counts and audit records.",
    )
    show.add_argument("id", metavar="ID", help="job id (from submit or list)")
    show.add_argument("--program", action="store_true", help="also print the program text")
    _common(show, handler=run_show)

    cancel = sub.add_parser(
        "cancel",
        help="cancel a queued job",
        description="Cancel a queued job; a running job finishes (no pulse is cut short).",
    )
    cancel.add_argument("id", metavar="ID", help="job id (from submit or list)")
    _common(cancel, handler=run_cancel)

    hold = sub.add_parser(
        "hold",
        help="hold user jobs (clock interrogations still run)",
        description=(
            "Hold user jobs until you resume them: queued ones wait, new ones queue up. The "
            "daemon holds them during a recovery; each hold is released by its own holder."
        ),
    )
    hold.add_argument("--reason", default="", help="why, for the audit trail and for waiters")
    _common(hold, handler=run_hold)

    resume = sub.add_parser(
        "resume",
        help="release your hold on user jobs",
        description=(
            "Release your hold; user jobs run again when nobody holds them. Holds made by "
            "others (the daemon's recovery) are released only with --force."
        ),
    )
    resume.add_argument("--force", action="store_true", help="release every hold, the daemon's too")
    _common(resume, handler=run_resume)

    audit = sub.add_parser(
        "audit",
        help="the queue's audit trail: who did what to which job, when",
        description="The latest audit records: submissions, starts, outcomes, holds, resumes.",
    )
    audit.add_argument("--job", metavar="ID", help="only this job's records")
    audit.add_argument(
        "--kind",
        choices=("user", "clock", "all"),
        default="user",
        help="records of user jobs (default), of clock jobs, or all (queue records always)",
    )
    audit.add_argument("--limit", type=int, default=50, help="at most this many, newest last")
    _common(audit, handler=run_audit)


def _common(parser: argparse.ArgumentParser, *, handler: Callable[[Any], int]) -> None:
    parser.add_argument(
        "--config", default=str(DEFAULT_CONFIG), help="lab file (where the sequencer listens)"
    )
    parser.add_argument("--json", action="store_true", help="print the reply as JSON")
    parser.set_defaults(handler=lambda args: _run(handler, args))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _run(handler: Callable[[Any], int], args: argparse.Namespace) -> int:
    try:
        return handler(args)
    except JobsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code


def load_lab(path: str | Path) -> LabConfig:
    """The lab file, or JobsError (exit 2) with every problem it has."""
    from ionpilot.config import ConfigError, load_config
    from ionpilot.runtime import format_config_error

    try:
        return load_config(path)
    except ConfigError as exc:
        raise JobsError(format_config_error(path, exc), 2) from None
    except OSError as exc:
        raise JobsError(f"cannot read {path}: {exc.strerror or exc}", 2) from None


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _print_json(doc: Any) -> None:
    print(json.dumps(with_local_times(doc), indent=2))


def due_time(at: str | None, in_: str | None, now_s: float) -> float | None:
    """`--at` (local ISO time) or `--in` (a duration with its unit) as Unix seconds."""
    from ionpilot.core.units import UnitError, parse_quantity

    if at is not None:
        try:
            return datetime.fromisoformat(at).astimezone().timestamp()
        except ValueError:
            raise JobsError(
                f"--at {at!r} is not an ISO time (e.g. 2026-12-02T03:00, local time)", 2
            ) from None
    if in_ is not None:
        try:
            delay = parse_quantity(in_, "s").value
        except UnitError as exc:
            raise JobsError(f"--in: {exc}", 2) from None
        if delay < 0:
            raise JobsError(f"--in {in_!r} is in the past; give a delay of zero or more", 2)
        return now_s + delay
    return None


def run_submit(args: argparse.Namespace) -> int:
    if args.shots < 1:
        raise JobsError("--shots must be at least 1", 2)
    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except OSError as exc:
        raise JobsError(f"cannot read {args.file}: {exc.strerror or exc}", 2) from None
    config = load_lab(args.config)
    request: dict[str, Any] = {"qasm": text, "shots": args.shots, "priority": args.priority}
    due = due_time(args.at, args.in_, time.time())
    if due is not None:
        request["due_s"] = due
    with queue_link(config) as link:
        if args.wait:
            job = submit_and_wait(link, request, _say)
            return _report_finished(job, args.json)
        reply = link.call("submit", **request)
    if args.json:
        _print_json(reply)
        return 0
    print(f"job {reply['id']} queued ({args.shots} shots, priority {args.priority})")
    if due is not None:
        print(f"  due {local_time(due)}")
    if reply.get("held"):
        print(f"  user jobs are {hold_text(reply, time.time())}; it waits until they resume")
    elif reply.get("ahead"):
        print(f"  {reply['ahead']} job(s) ahead of it")
    return 0


def _report_finished(job: dict[str, Any], as_json: bool) -> int:
    if as_json:
        _print_json(job)
    else:
        _print_job(job, program=False)
    return 0 if job["state"] == "done" else 1


def run_list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise JobsError("--limit must be at least 1", 2)
    query: dict[str, Any] = {"limit": args.limit}
    if args.kind != "all":
        query["kind"] = args.kind
    if args.state:
        query["state"] = list(args.state)
    with queue_link(load_lab(args.config)) as link:
        reply = link.request("list", query)
        status = link.status()
    if args.json:
        _print_json({**status, "counts": status["jobs"], "jobs": reply["jobs"]})
        return 0
    now = time.time()
    print(_queue_line(status, now))
    jobs = reply["jobs"]
    if not jobs:
        print("no jobs")
        return 0
    rows = [("ID", "KIND", "STATE", "PRIORITY", "SHOTS", "SUBMITTED", "BY", "DUE", "WAITED", "RAN")]
    for j in jobs:
        rows.append(
            (
                j["id"],
                j["kind"],
                j["state"],
                f"{j['priority']:d}",
                f"{j['shots']:d}",
                local_time(j["submitted_s"]),
                j["submitter"],
                _due(j),
                duration(_waited(j, now)),
                "-" if j["started_s"] is None else duration(_ran(j, now)),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row, j in zip(rows, [None, *jobs], strict=True):
        line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        error = j.get("error") if j else None
        print(f"{line}  {error}" if error else line)
    return 0


def _queue_line(status: dict[str, Any], now: float) -> str:
    counts = status.get("jobs", {})
    waiting = f"{counts.get('queued', 0)} queued"
    running = f", running {status['running']}" if status.get("running") else ""
    state = f"user jobs {hold_text(status, now)}" if status.get("held") else "serving user jobs"
    return f"queue on the {status.get('backend', '?')} backend: {state}; {waiting}{running}"


def _due(job: dict[str, Any]) -> str:
    return "on submission" if job["due_s"] <= job["submitted_s"] else local_time(job["due_s"])


def _waited(job: dict[str, Any], now: float) -> float:
    """From due (or submitted) to start, or to now while queued (0 for a cancelled job)."""
    since = max(job["submitted_s"], job["due_s"])
    if job["started_s"] is not None:
        return float(job["started_s"] - since)
    if job["state"] == "queued":
        return max(0.0, now - since)
    return 0.0


def _ran(job: dict[str, Any], now: float) -> float:
    end = job["finished_s"] if job["finished_s"] is not None else now
    return float(end - job["started_s"])


def run_show(args: argparse.Namespace) -> int:
    with queue_link(load_lab(args.config)) as link:
        job = link.job(args.id, audit=True)
    if args.json:
        _print_json(job if args.program else {k: v for k, v in job.items() if k != "program"})
        return 0
    _print_job(job, program=args.program)
    return 0


def _print_job(job: dict[str, Any], *, program: bool) -> None:
    now = time.time()
    print(f"job {job['id']}: {job['state']} ({job['kind']} job)")
    print(
        f"  submitted  {local_time(job['submitted_s'])} by {job['submitter']}, priority "
        f"{job['priority']}, {job['shots']} shots on {job['backend']}"
    )
    print(f"  due        {_due(job)}")
    if job["started_s"] is not None:
        print(f"  started    {local_time(job['started_s'])} (waited {duration(_waited(job, now))})")
    elif job["state"] == "queued":
        print(f"  waiting    for {duration(_waited(job, now))}")
    if job["finished_s"] is not None:
        ran = f" (ran {duration(_ran(job, now))})" if job["started_s"] is not None else ""
        print(f"  finished   {local_time(job['finished_s'])}{ran}")
    if job.get("error"):
        print(f"  error      {job['error']}")
    result = job.get("result")
    if isinstance(result, dict) and "counts" in result:
        print("  result:")
        print("\n".join("  " + line for line in result_lines(result, int(result["shots"]))))
    records = job.get("audit") or []
    if records:
        print("  audit:")
        for record in records:
            print("    " + _audit_line(record, with_job=False))
    if program:
        print("  program:")
        print("\n".join("    " + line for line in str(job.get("program", "")).splitlines()))


def _audit_line(record: dict[str, Any], *, with_job: bool) -> str:
    parts = [local_time(record["at_s"]), f"{record['action']:<8}", record["who"]]
    if with_job:
        parts.insert(1, f"{record['job_id'] or '(queue)':<12}")
    if record.get("duration_s") is not None:
        parts.append(f"({duration(record['duration_s'])})")
    if record.get("detail"):
        parts.append(str(record["detail"]))
    return "  ".join(parts)


def run_cancel(args: argparse.Namespace) -> int:
    with queue_link(load_lab(args.config)) as link:
        reply = link.call("cancel", id=args.id)
    if args.json:
        _print_json(reply)
    else:
        print(f"job {args.id} cancelled (it was queued; nothing of it ran)")
    return 0


def run_hold(args: argparse.Namespace) -> int:
    with queue_link(load_lab(args.config)) as link:
        before = link.status()
        reason = args.reason or f"held by {link.who}"
        link.call("hold", reason=reason)
        after = link.status()
    if args.json:
        _print_json(after)
        return 0
    others = [h for h in holds_of(before) if h["by"] != link.who]
    if others:
        print(
            f"note: user jobs were already {hold_text({'holds': others}, time.time())}; "
            "your hold stays until you resume, whatever they do"
        )
    print(
        f"user jobs {hold_text(after, time.time())}; clock interrogations still run; "
        "`ionpilot jobs resume` releases your hold"
    )
    return 0


def run_resume(args: argparse.Namespace) -> int:
    with queue_link(load_lab(args.config)) as link:
        status = link.status()
        if not status.get("held"):
            if args.json:
                _print_json(status)
            else:
                print("user jobs are not held; nothing to resume")
            return 0
        holds = holds_of(status)
        mine = [h for h in holds if h["by"] in (link.who, "")]
        if not mine and not args.force:
            raise JobsError(
                f"user jobs are {hold_text(status, time.time())}; that is not your hold, and "
                "resuming now could run jobs during it (--force releases every hold)",
                2,
            )
        link.call("resume", **({"all": True} if args.force else {}))
        after = link.status()
    if args.json:
        _print_json(after)
        return 0
    now = time.time()
    released = holds if args.force else mine
    print(f"released: user jobs were {hold_text({'holds': released}, now)}")
    if after.get("held"):
        print(f"user jobs are still {hold_text(after, now)}")
    else:
        print(f"user jobs are served again; {after.get('jobs', {}).get('queued', 0)} queued")
    return 0


def run_audit(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise JobsError("--limit must be at least 1", 2)
    with queue_link(load_lab(args.config)) as link:
        if args.job:
            records = link.job(args.job, audit=True)["audit"][-args.limit :]
        else:
            query: dict[str, Any] = {"limit": args.limit}
            if args.kind != "all":
                query["kind"] = args.kind
            records = link.request("list", query)["audit"]
    if args.json:
        _print_json(records)
        return 0
    if not records:
        print("no audit records")
    for record in records:
        print(_audit_line(record, with_job=not args.job))
    return 0
