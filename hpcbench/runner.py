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
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpcbench import busy
from hpcbench.inventory import gpu_absence
from hpcbench.model import Measurement
from hpcbench.probes.base import CLEANUP_LIST
from hpcbench.suite import CheckSpec, Suite
from hpcbench.timeparse import utc_stamp

KILL_GRACE_S = 3.0
#: each child's environment carries its own token, inherited by whatever it starts: processes that
#: left its process group (setsid, double fork) are found by it and killed when the child ends
JOB_TOKEN_ENV = "HPCBENCH_JOB_TOKEN"
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


def local_mounts(inventory: dict[str, Any]) -> list[str]:
    """Writable mounts of local block devices, one per device (the shallowest of its mount points):
    read-only mounts, loop devices and further (bind) mounts of a device are left out."""
    chosen: dict[str, str] = {}
    for m in inventory.get("storage", {}).get("mounts", []):
        device, point = str(m.get("device", "")), str(m.get("mountpoint", ""))
        if not device.startswith("/dev/") or device.startswith("/dev/loop"):
            continue
        if "ro" in str(m.get("options", "")).split(","):
            continue
        if device not in chosen or point.rstrip("/").count("/") < chosen[device].rstrip("/").count("/"):
            chosen[device] = point
    return list(chosen.values())


def _takes_list(probe_cls: Any, key: str) -> bool:
    """Whether the probe's expansion parameter ``key`` is a list (then each subject is [value])."""
    return typing.get_origin(typing.get_type_hints(probe_cls.Params).get(key)) is list


@dataclass(frozen=True)
class Unrunnable:
    """Why a check has no subject to run on: ``skip`` (nothing to measure here) or ``error``."""

    status: str
    reason: str
    hint: str = ""


def expand(check: CheckSpec, probe_cls: Any, inventory: dict[str, Any]) -> list[Job] | Unrunnable:
    """The jobs of a check, one per subject, or why there are none."""
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
            return Unrunnable(*gpu_absence(inventory))
    elif check.expand == "nic":  # every RDMA port and physical Ethernet interface (hpcbench.nics)
        subjects = [(n, n) for n in (inventory.get("network") or {}).get("nics") or []]
        if not subjects:
            return Unrunnable("skip", "no RDMA port and no physical Ethernet interface on this node")
    else:  # mount: the targets the check names in a list parameter, else the local mounts
        listed = _takes_list(probe_cls, key)
        given = check.params.get(key) if listed else None
        mounts = [str(m) for m in given] if given else local_mounts(inventory)
        subjects = [(m, [m] if listed else m) for m in mounts]
        if not subjects:
            return Unrunnable("skip", "no local block-device mounts on this node")
    return [Job(check, name, {**check.params, key: value}) for name, value in subjects]


class Runner:
    """Runs jobs in children. ``on_start(job, i, n)`` and ``on_finish(outcome, i, n)`` report progress."""

    def __init__(
        self,
        inventory: dict[str, Any],
        on_start: Callable[[Job, int, int], None] | None = None,
        on_finish: Callable[[Outcome, int, int], None] | None = None,
        force: bool = False,
        gpu_processes: Callable[[list[int]], dict[int, list[Any]]] | None = None,
    ) -> None:
        self.inventory = inventory
        #: run probes that require an idle GPU even on a GPU another process uses
        self.force = force
        self._gpu_processes = gpu_processes
        self._own_pids: set[int] = {os.getpid()}
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
                if isinstance(jobs, Unrunnable):
                    job = Job(check, "node", dict(check.params))
                    outcome = Outcome(job, jobs.status, utc_stamp(), reason=jobs.reason, hint=jobs.hint)
                    done += 1
                    self.on_finish(outcome, done, total)
                    outcomes.append(outcome)
                    continue
                concurrent = getattr(probe_classes[check.probe], "concurrent", True)
                batch = len(jobs) if check.expand in CONCURRENT_EXPANSIONS and concurrent else 1
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

    def _busy(self, job: Job, probe_cls: Any) -> str | None:
        """Why the job must not run now (another process holds one of its GPUs), or None."""
        if self.force:
            return None
        gpus = busy.job_gpus(probe_cls, job.params, self.inventory, os.environ)
        if not gpus:
            return None
        if self._gpu_processes is None:
            from hpcbench.nvml import gpu_processes

            self._gpu_processes = gpu_processes
        return busy.busy_reason(self._gpu_processes(gpus), gpus, self._own_pids)

    def _unmet(self, job: Job, probe_cls: Any) -> Outcome | None:
        for req in getattr(probe_cls, "requires", ()):
            if req.kind == "idle_gpu":
                reason = self._busy(job, probe_cls)
                if reason:
                    return Outcome(job, "skip", utc_stamp(), reason=reason, hint=busy.HINT)
                continue
            found = req.unmet(self.inventory)
            if found:
                verdict, reason, hint = found
                return Outcome(
                    job, "skip" if verdict == "SKIP" else "error", utc_stamp(), reason=reason, hint=hint
                )
        return None

    def _run_group(self, jobs: list[Job], probe_cls: Any, tmp: Path) -> list[Outcome]:
        """Start one child per job, wait for all with their timeouts."""
        outcomes: dict[int, Outcome] = {}
        live: dict[int, tuple[subprocess.Popen[bytes], float, float, Path, str, str]] = {}
        unmets = [self._unmet(job, probe_cls) for job in jobs]  # all before any child loads a GPU
        for i, job in enumerate(jobs):
            unmet = unmets[i]
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
            token = f"{os.getpid()}-{workdir.name}"
            with open(log_file, "wb") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "hpcbench.worker", str(job_file), str(out_file)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env={**os.environ, JOB_TOKEN_ENV: token},
                )
            started = time.monotonic()
            self._running[i] = proc
            self._own_pids.add(proc.pid)
            live[i] = (proc, started, started + job.check.timeout, workdir, utc_stamp(), token)
        while live:
            for i, (proc, started, deadline, workdir, stamp, token) in list(live.items()):
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
                    outcome = _read_outcome(job, code, workdir, stamp, self.stopped)
                # whatever ended the child, processes it started (fio, ranks) do not outlive it
                _terminate_group(proc, signal.SIGKILL)
                kill_tagged(token)
                outcome.duration = round(time.monotonic() - started, 3)
                _remove_registered(workdir / "scratch" / CLEANUP_LIST)
                outcomes[i] = outcome
                del live[i]
                self._running.pop(i, None)
            if live:
                time.sleep(POLL_S)
        return [outcomes[i] for i in range(len(jobs))]


def _remove_registered(listing: Path) -> None:
    """Remove the folders a probe registered (``register_cleanup``) and left behind."""
    try:
        paths = [p for p in listing.read_text(encoding="utf-8").splitlines() if p.strip()]
    except OSError:
        return
    for path in paths:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)


def _terminate_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def kill_tagged(token: str) -> None:
    """SIGKILL every process whose environment carries ``token``."""
    import psutil

    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if p.pid != os.getpid() and p.environ().get(JOB_TOKEN_ENV) == token:
                p.kill()


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
        if stopped and status == "error":  # the probe stopped itself on the runner's SIGTERM
            return Outcome(job, "interrupted", stamp, reason=f"interrupted by {stopped}")
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
