"""The no-load checks of a run in one child process, under a watchdog.

A probe that only reads (``no_load = True``: node health, GPU health without load, port
health) ends in milliseconds; a child per check would cost more than the check (an
interpreter and its imports each time). The runner hands all of a run's such jobs to one
child, forked from the runner after its imports (a fresh ``python -m hpcbench.engine.batch`` where
forking is unsafe: another thread runs), which runs them one after another and reports each
start and each outcome as a JSON line on a pipe. The parent waits on the pipe with a deadline
per job (the check's timeout) and one for all of them (the run's ``--deadline``). A job that
does not answer in time (a dead NFS mount, an NVMe or NVML that never returns) is ERROR with the
last step it reported (``report_progress``); the child's process group is killed and a new
child runs the jobs after it. A child that dies (a segfault) is the same for its current job.

The child protocol, one JSON object per line: ``{"i": 3, "start": true}`` then
``{"i": 3, "outcome": {...}}`` (``hpcbench.engine.child.run_job``'s dict).
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpcbench.core.timeparse import utc_stamp

#: seconds the parent waits for a killed child before it leaves it (a read in the kernel that
#: no signal interrupts keeps a process alive; the run must still end)
REAP_S = 1.0
#: the longest the parent sleeps on the pipe before it looks at the clock and the signals again
WAKE_S = 0.25


@dataclass
class BatchJob:
    """One job for the batch child: the worker's job dict and its own limit in seconds."""

    job: dict[str, Any]
    timeout: float
    label: str  # check id/subject, for reasons


@dataclass
class Done:
    """What became of one job: the worker's outcome dict, when it started, how long it ran."""

    outcome: dict[str, Any]
    started: str
    duration: float
    hung: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# -- the child ---------------------------------------------------------------


def serve(jobs: Sequence[dict[str, Any]], out: Any, probes: Mapping[str, Any] | None = None) -> None:
    """Run ``jobs`` in order, writing a start and an outcome line for each to ``out``.
    ``probes``: name -> ProbeSpec, already loaded (a forked child); else each is loaded by name."""
    from hpcbench.core import codec
    from hpcbench.engine.child import run_job
    from hpcbench.engine.handoff import ChildJob

    for i, data in enumerate(jobs):
        out.write(json.dumps({"i": i, "start": True}) + "\n")
        out.flush()
        job = codec.decode(ChildJob, data, "job")
        result = run_job(job, (probes or {}).get(job.probe))
        out.write(json.dumps({"i": i, "outcome": codec.encode(result)}, allow_nan=True) + "\n")
        out.flush()


def main(argv: list[str]) -> int:
    """``python -m hpcbench.engine.batch JOBS.json FD``: the spawned form of the child."""
    jobs_path, fd = argv
    with open(jobs_path, encoding="utf-8") as fh:
        jobs = json.load(fh)
    with os.fdopen(int(fd), "w", encoding="utf-8") as out:
        serve(jobs, out)
    return 0


# -- the parent --------------------------------------------------------------


class _Child:
    """One batch child: forked, or spawned when another thread runs (forking is unsafe then)."""

    def __init__(
        self, jobs: list[dict[str, Any]], tmp: Path, env: dict[str, str], log: Path, probes: Mapping[str, Any]
    ) -> None:
        r, w = os.pipe()
        self.fd = r
        self.proc: subprocess.Popen[bytes] | None = None
        if hasattr(os, "fork") and threading.active_count() == 1:
            pid = os.fork()
            if pid == 0:  # the child: its own session, default signals, its own environment
                code = 0
                try:
                    os.setsid()
                    os.close(r)
                    for s in (signal.SIGINT, signal.SIGTERM):
                        signal.signal(s, signal.SIG_DFL)
                    os.environ.update(env)
                    logfd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                    os.dup2(logfd, 1)
                    os.dup2(logfd, 2)
                    if faulthandler.is_enabled():  # its crash report into the child's log too
                        faulthandler.enable(file=sys.stderr)
                    devnull = os.open(os.devnull, os.O_RDONLY)
                    os.dup2(devnull, 0)
                    with os.fdopen(w, "w", encoding="utf-8") as out:
                        serve(jobs, out, probes)
                except BaseException:  # noqa: BLE001 - the parent learns of it from the exit status
                    code = 70
                finally:
                    os._exit(code)
            self.pid = pid
        else:
            jobs_file = tmp / f"batch-{time.monotonic_ns()}.json"
            jobs_file.write_text(json.dumps(jobs))
            with open(log, "ab") as logfh:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "hpcbench.engine.batch", str(jobs_file), str(w)],
                    stdin=subprocess.DEVNULL,
                    stdout=logfh,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    pass_fds=(w,),
                    env={**os.environ, **env},
                )
            self.pid = self.proc.pid
        os.close(w)
        self._buf = b""
        self.status: int | None = None

    def lines(self, timeout: float) -> list[dict[str, Any]] | None:
        """The complete lines that arrive within ``timeout`` seconds; None at end of file."""
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0.0))
        if not ready:
            return []
        data = os.read(self.fd, 1 << 20)
        if not data:
            return None
        *complete, self._buf = (self._buf + data).split(b"\n")
        out = []
        for ln in complete:
            with contextlib.suppress(ValueError):
                out.append(json.loads(ln))
        return out

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def wait(self, timeout: float) -> int | None:
        """The exit status (negative: the signal), or None when it has not ended in time."""
        ends = time.monotonic() + timeout
        while True:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return self.status
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                if self.proc is not None:
                    self.proc.returncode = self.status
                return self.status
            if time.monotonic() >= ends:
                return None
            time.sleep(0.01)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _crash_reason(status: int | None, log: Path) -> str:
    if status is not None and status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        reason = f"probe crashed: killed by {name}"
    else:
        reason = f"probe exited with status {status} without a result"
    try:
        tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        tail = []
    return f"{reason} ({tail[-1].strip()[:300]})" if tail else reason


def last_step(workdir: str) -> str:
    """The last progress line a job reported (``report_progress``): what it was doing."""
    from hpcbench.probes.base import PROGRESS_FILE

    try:
        with open(os.path.join(workdir, PROGRESS_FILE), encoding="utf-8", errors="replace") as fh:
            lines = [ln.strip() for ln in fh if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


def run(
    jobs: Sequence[BatchJob],
    tmp: Path,
    env: dict[str, str],
    ends_at: float | None = None,
    stopped: Callable[[], str | None] = lambda: None,
    on_child: Callable[[int], None] = lambda pid: None,
    probes: Mapping[str, Any] | None = None,
) -> dict[int, Done]:
    """Run ``jobs`` in batch children; the index of each job that ended -> what became of it.

    A job left out of the answer never started (the run's deadline passed, or it was stopped)."""
    done: dict[int, Done] = {}
    log = tmp / "batch.log"
    first = 0
    while first < len(jobs) and not stopped():
        if ends_at is not None and time.monotonic() >= ends_at:
            break
        base = first
        child = _Child([j.job for j in jobs[base:]], tmp, env, log, probes or {})
        on_child(child.pid)
        current: int | None = None
        began = time.monotonic()
        stamp = utc_stamp()
        try:
            while True:
                now = time.monotonic()
                limit = began + jobs[current].timeout if current is not None else now + 1.0
                if ends_at is not None:
                    limit = min(limit, ends_at)
                got = child.lines(min(limit - now, WAKE_S))  # WAKE_S: to see a SIGTERM soon
                if got is None:  # the child ended: every job done, or it died in one
                    status = child.wait(REAP_S)
                    if current is not None:
                        done[current] = Done(
                            {"status": "error", "reason": _crash_reason(status, log)},
                            stamp,
                            round(time.monotonic() - began, 3),
                        )
                        first = current + 1
                    else:
                        first = len(jobs)
                    break
                for msg in got:
                    i = base + int(msg["i"])
                    if msg.get("start"):
                        current, began, stamp = i, time.monotonic(), utc_stamp()
                    elif "outcome" in msg:
                        done[i] = Done(msg["outcome"], stamp, round(time.monotonic() - began, 3))
                        current = None
                        first = i + 1
                if stopped() or first >= len(jobs):
                    break
                now = time.monotonic()
                late = ends_at is not None and now >= ends_at
                if current is not None and (now - began >= jobs[current].timeout or late):
                    child.kill()
                    job = jobs[current]
                    step = last_step(job.job.get("workdir", ""))
                    at = f"; last step: {step}" if step else ""
                    ran = now - began
                    if late and ran < job.timeout:
                        reason = f"hung: no answer after {ran:.1f} s, killed at the run's deadline{at}"
                    else:
                        reason = f"hung: no answer after {job.timeout:g} s (the check's timeout), killed{at}"
                    done[current] = Done(
                        {
                            "status": "error",
                            "reason": reason,
                            "hint": "a read that never returns: a dead network mount, a device that "
                            "does not answer; see the last step",
                        },
                        stamp,
                        round(ran, 3),
                        hung=True,
                    )
                    first = current + 1
                    break
                if late:  # between jobs at the deadline: the rest do not start
                    child.kill()
                    first = len(jobs)
                    break
        finally:
            child.kill()
            child.wait(REAP_S)
            child.close()
    return done


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
