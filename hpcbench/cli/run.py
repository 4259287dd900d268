"""One run on this node: inventory, baseline, lock, runner, verdicts, record, output.

Everything that can be wrong with the configuration is found before the lock
is taken and before anything runs; the record is written even when the run is
interrupted.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from hpcbench import __version__
from hpcbench.cli.request import RunRequest
from hpcbench.core import trust
from hpcbench.core.errors import ConfigError, LockHeld
from hpcbench.core.exitcodes import ExitCode, worst
from hpcbench.core.timeparse import utc_stamp
from hpcbench.engine import baselines, config, judge, lock, plan, store
from hpcbench.engine.record import SCHEMA_VERSION, BaselineInfo, NotRun, Record, SuiteInfo
from hpcbench.engine.runner import Outcome, Runner
from hpcbench.engine.suite import Suite
from hpcbench.hw import driver_check
from hpcbench.launch import launcher
from hpcbench.node import collector
from hpcbench.node.inventory import Inventory
from hpcbench.report import console, emit
from hpcbench.report.logfile import RunLog
from hpcbench.report.progress import Progress


def _check_output_dir(setting: config.Setting) -> Path:
    path = Path(setting.value).absolute()
    where = f"{setting.source} {setting.value}" if setting.source != "default" else f"output {setting.value}"
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{where}: exists and is not a folder")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise ConfigError(f"{where}: {probe} is not writable")
    trust.check(path, f"{where}: records folder")  # as root: no folder another user can change
    return path


def build_record(
    suite: Suite,
    baseline: baselines.Baseline | None,
    inv: Inventory,
    run_id: str,
    started: str,
    outcomes: list[Outcome],
    not_run: list[NotRun],
    interrupted: str | None,
) -> Record:
    """The result record of the run's outcomes, every verdict decided."""
    check_results = []
    for check in suite.checks:
        mine = [o for o in outcomes if o.job.check.id == check.id]
        if mine:
            check_results.extend(judge.judge(check, mine, baseline, inv))
    codes = [c.verdict.exit_code(suite.require_baseline) for c in check_results]
    if interrupted or not_run:
        codes.append(ExitCode.UNKNOWN)
    code = worst(codes)
    return Record(
        schema_version=SCHEMA_VERSION,
        tool_version=__version__,
        run_id=run_id,
        host=inv.hostname or socket.gethostname(),
        started=started,
        ended=utc_stamp(),
        suite=SuiteInfo(**suite.as_dict()),
        baseline=BaselineInfo(**baseline.as_dict()) if baseline else None,
        inventory=inv,
        checks=tuple(check_results),
        not_run=tuple(not_run),
        interrupted=interrupted,
        verdict=code.name if code is not ExitCode.USAGE else "UNKNOWN",
        exit_code=int(code),
    )


def rank_lines(record: Record, rank: int) -> list[str]:
    """What a rank other than 0 of a distributed launch says: one line per check that is not OK."""
    return [f"hpcbench rank {rank}: {c.id}: {c.verdict.value} {c.why}" for c in record.not_ok()]


def execute(
    suite: Suite,
    probe_classes: dict[str, Any],
    request: RunRequest,
    on_record: Callable[[Record, Path], None] | None = None,
    cfg: config.Config | None = None,
) -> int:
    """One run; ``on_record(record, path)`` sees the saved record (or the one --max-age reused)."""
    began = time.monotonic()
    req = request
    cfg = cfg or config.load({"output": req.output, "lock": req.lock_file})
    chosen = plan.select_checks(suite.checks, req.only, req.skip)
    if chosen != suite.checks:
        suite = replace(suite, checks=chosen, selection=req.selection)
    config.check_folders(cfg.baselines)
    outdir = _check_output_dir(cfg.output)
    inv = collector.collect()
    gpus = plan.select_gpus(inv, req.gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))
    baseline = baselines.choose(inv, req.baseline, cfg.baselines.value)
    host = inv.hostname or socket.gethostname()
    trust.check(outdir / host, "records folder")
    history = store.durations(outdir, host, suite.as_dict()) if req.dry_run or req.deadline_s else {}
    if req.dry_run:
        planned = plan.make_plan(suite.checks, probe_classes, inv, gpus)
        emit.plan(req.format, suite, host, planned, baseline, history, cfg, req.deadline_s)
        return ExitCode.OK
    run_id = uuid.uuid4().hex[:12]
    started = utc_stamp()
    # under torchrun/srun every rank runs hpcbench: local rank 0 locks the node, rank 0 reports
    job = launcher.from_environ(os.environ)
    if job is not None and req.max_age_s is not None:
        raise ConfigError("--max-age cannot be used under a distributed launch: every rank must run")
    # probes whose results are per node (the network probe's pairs): each node's local rank 0 reports
    per_node = all(probe_classes[c.probe].record_per_node for c in suite.checks)
    reports = job is None or job.reports or (per_node and job.locks)
    runlog = RunLog.open(req.log_file, suite.name) if reports and req.log_file else None
    fresh = store.recent_pass(outdir, host, suite.as_dict(), req.max_age_s, req.max_age_text)
    if fresh is not None:  # --max-age: this suite passed recently enough here
        path, record, line = fresh
        if runlog:
            runlog.line(line)
        if on_record is not None:
            on_record(record, path)
        emit.skipped(record, line, req.format, req.quiet)
        return ExitCode.OK
    progress = Progress(quiet=req.quiet or not reports, log=runlog.line if runlog else None)
    lock_path = Path(cfg.lock.value)
    holder = {"run_id": run_id, "suite": suite.name, "started": started}
    node_lock = lock.RunLock(lock_path, holder) if job is None or job.locks else contextlib.nullcontext()
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(node_lock)
        except LockHeld as exc:
            if runlog:
                runlog.line(f"not run: {exc}")
            raise
        if runlog:
            runlog.line(f"run {run_id} started: {len(suite.checks)} check(s), records in {outdir}")
        note = driver_check.before_gpu_checks(inv, [probe_classes[c.probe] for c in suite.checks])
        if note and reports:  # the driver cannot run this torch's CUDA: one line, not one ERROR per check
            print(note, file=sys.stderr)
            if runlog:
                runlog.line(note)
        runner = Runner(
            inv,
            on_start=progress.start,
            on_finish=progress.finish,
            force=req.force,
            on_progress=progress.note,
            gpus=gpus,
            deadline_s=req.deadline_s - (time.monotonic() - began) if req.deadline_s else None,
            history=history,
        )
        outcomes, not_run = runner.run(suite, probe_classes)
        record = build_record(suite, baseline, inv, run_id, started, outcomes, not_run, runner.stopped)
        if job is not None and not reports:  # rank 0 (per-node probes: each local rank 0) writes and prints
            for line in rank_lines(record, job.rank):
                print(line, file=sys.stderr)
            return record.exit_code
        path = store.save_atomic(record, store.record_path(outdir, record.host, started))
    if on_record is not None:
        on_record(record, path)
    emit.write_files(record, req.junit, req.prometheus_dir)
    if runlog:
        runlog.line(console.summary(record, path))
    emit.result(record, path, req.format, req.quiet)
    return record.exit_code
