"""Run a suite's checks, each probe in a child process with its timeout.

A probe that hangs, crashes (segfault, os.abort) or raises becomes an ERROR
outcome with its reason, and the run goes on. Subjects of a ``gpu`` expansion
run concurrently (one child per GPU); others one after another. SIGINT and
SIGTERM stop the children; the caller still writes the record of what finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hpcbench.model import Measurement
from hpcbench.suite import CheckSpec, Suite

KILL_GRACE_S = 3.0
POLL_S = 0.05
CONCURRENT_EXPANSIONS = ("gpu",)


@dataclass(frozen=True)
class Job:
    check: CheckSpec
    subject: str
    params: dict[str, Any]


@dataclass
class Outcome:
    job: Job
    status: str  # ok | error | skip | interrupted
    started: str = ""
    duration: float = 0.0
    reason: str = ""
    hint: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def local_mounts(inventory: dict[str, Any]) -> list[str]:
    mounts = inventory.get("storage", {}).get("mounts", [])
    return [m["mountpoint"] for m in mounts if str(m.get("device", "")).startswith("/dev/")]


def expand(check: CheckSpec, probe_cls: Any, inventory: dict[str, Any]) -> list[Job] | str:
    """The jobs of a check, one per subject; a string is why there are none (SKIP)."""
    if check.expand == "none":
        return [Job(check, "node", dict(check.params))]
    key = probe_cls.expands[check.expand]
    if check.expand == "numa":
        nodes = inventory.get("numa", {}).get("nodes") or [{"id": 0}]
        subjects = [(f"numa{n['id']}", n["id"]) for n in nodes]
    elif check.expand == "gpu":
        devices = inventory.get("gpus", {}).get("devices") or []
        subjects = [(f"gpu{d['index']}", d["index"]) for d in devices]
        if not subjects:
            return "no GPU on this node"
    else:
        subjects = [(m, m) for m in local_mounts(inventory)]
        if not subjects:
            return "no local block-device mounts on this node"
    return [Job(check, name, {**check.params, key: value}) for name, value in subjects]


class Runner:
    """Runs jobs in children. ``on_start(job, i, n)`` and ``on_finish(outcome, i, n)`` report progress."""

    def __init__(
        self,
        inventory: dict[str, Any],
        on_start: Callable[[Job, int, int], None] | None = None,
        on_finish: Callable[[Outcome, int, int], None] | None = None,
    ) -> None:
        self.inventory = inventory
        self.on_start = on_start or (lambda job, i, n: None)
        self.on_finish = on_finish or (lambda outcome, i, n: None)
        self.stopped: str | None = None
        self._running: dict[int, subprocess.Popen[bytes]] = {}

    # -- signals -----------------------------------------------------------
    def _handle(self, signum: int, _frame: object) -> None:
        self.stopped = signal.Signals(signum).name
        for proc in list(self._running.values()):
            _terminate_group(proc, signal.SIGTERM)

    def run(self, suite: Suite, probe_classes: dict[str, Any]) -> tuple[list[Outcome], list[str]]:
        """Run every check; returns the outcomes and the ids of checks that never started."""
        old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        tmp = Path(tempfile.mkdtemp(prefix="hpcbench-run-"))
        outcomes: list[Outcome] = []
        not_run: list[str] = []
        try:
            plan: list[tuple[CheckSpec, list[Job] | str]] = [
                (c, expand(c, probe_classes[c.probe], self.inventory)) for c in suite.checks
            ]
            total = sum(len(jobs) if isinstance(jobs, list) else 1 for _, jobs in plan)
            done = 0
            for check, jobs in plan:
                if self.stopped:
                    not_run.append(check.id)
                    continue
                if isinstance(jobs, str):
                    outcome = Outcome(Job(check, "node", dict(check.params)), "skip", utcnow(), reason=jobs)
                    done += 1
                    self.on_finish(outcome, done, total)
                    outcomes.append(outcome)
                    continue
                batch = len(jobs) if check.expand in CONCURRENT_EXPANSIONS else 1
                for start in range(0, len(jobs), batch):
                    group = jobs[start : start + batch]
                    for k, job in enumerate(group):
                        self.on_start(job, done + k + 1, total)
                    for outcome in self._run_group(group, probe_classes[check.probe], tmp):
                        done += 1
                        self.on_finish(outcome, done, total)
                        outcomes.append(outcome)
                    if self.stopped:
                        break
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
            shutil.rmtree(tmp, ignore_errors=True)
        return outcomes, not_run

    def _unmet(self, job: Job, probe_cls: Any) -> Outcome | None:
        for req in getattr(probe_cls, "requires", ()):
            found = req.unmet(self.inventory)
            if found:
                verdict, reason, hint = found
                return Outcome(
                    job, "skip" if verdict == "SKIP" else "error", utcnow(), reason=reason, hint=hint
                )
        return None

    def _run_group(self, jobs: list[Job], probe_cls: Any, tmp: Path) -> list[Outcome]:
        """Start one child per job, wait for all with their timeouts."""
        outcomes: dict[int, Outcome] = {}
        live: dict[int, tuple[subprocess.Popen[bytes], float, float, Path, str]] = {}
        for i, job in enumerate(jobs):
            unmet = self._unmet(job, probe_cls)
            if unmet:
                outcomes[i] = unmet
                continue
            workdir = Path(
                tempfile.mkdtemp(prefix=f"{job.check.id}-{job.subject}-".replace("/", "_"), dir=tmp)
            )
            job_file, out_file, log_file = workdir / "job.json", workdir / "out.json", workdir / "child.log"
            job_file.write_text(
                json.dumps(
                    {
                        "probe": job.check.probe,
                        "params": job.params,
                        "subject": job.subject,
                        "inventory": self.inventory,
                        "workdir": str(workdir / "scratch"),
                        "timeout": job.check.timeout,
                    }
                )
            )
            (workdir / "scratch").mkdir()
            with open(log_file, "wb") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "hpcbench.worker", str(job_file), str(out_file)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            started = time.monotonic()
            self._running[i] = proc
            live[i] = (proc, started, started + job.check.timeout, workdir, utcnow())
        while live:
            for i, (proc, started, deadline, workdir, stamp) in list(live.items()):
                job = jobs[i]
                code = proc.poll()
                if code is None and self.stopped:
                    _terminate_group(proc, signal.SIGTERM)
                    code = _reap(proc)
                    outcome = Outcome(job, "interrupted", stamp, reason=f"interrupted by {self.stopped}")
                elif code is None and time.monotonic() > deadline:
                    _terminate_group(proc, signal.SIGTERM)
                    _reap(proc)
                    outcome = Outcome(
                        job,
                        "error",
                        stamp,
                        reason=f"timed out after {job.check.timeout:g} s and was killed",
                        hint="raise the check's timeout in the suite if the node is just slow",
                    )
                elif code is None:
                    continue
                else:
                    _terminate_group(proc, signal.SIGKILL)  # leftovers the probe started
                    outcome = _read_outcome(job, code, workdir, stamp, self.stopped)
                outcome.duration = round(time.monotonic() - started, 3)
                outcomes[i] = outcome
                del live[i]
                self._running.pop(i, None)
            if live:
                time.sleep(POLL_S)
        return [outcomes[i] for i in range(len(jobs))]


def _terminate_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _reap(proc: subprocess.Popen[bytes]) -> int:
    try:
        return proc.wait(KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        _terminate_group(proc, signal.SIGKILL)
        return proc.wait()


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def _read_outcome(job: Job, code: int, workdir: Path, stamp: str, stopped: str | None) -> Outcome:
    out_file = workdir / "out.json"
    if code == 0 and out_file.is_file():
        data = json.loads(out_file.read_text())
        status = data["status"]
        return Outcome(
            job,
            status,
            stamp,
            reason=data.get("reason", ""),
            hint=data.get("hint", ""),
            params=data.get("params", {}),
            measurements=[Measurement.from_dict(m) for m in data.get("measurements", [])],
        )
    if stopped:
        return Outcome(job, "interrupted", stamp, reason=f"interrupted by {stopped}")
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        reason = f"probe crashed: killed by {name}"
    else:
        reason = f"probe exited with status {code} without a result"
    tail = _last_line(workdir / "child.log")
    return Outcome(job, "error", stamp, reason=f"{reason} ({tail})" if tail else reason)
