"""One run on this node: inventory, baseline, lock, runner, verdicts, record, output.

Everything that can be wrong with the configuration is found before the lock
is taken and before anything runs; the record is written even when the run is
interrupted.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from hpcbench import __version__, baselines, checks, config, inventory, launch, lock, ops, plan, results
from hpcbench.errors import ConfigError, LockHeld
from hpcbench.exitcodes import ExitCode, worst
from hpcbench.hw import driver_check
from hpcbench.node import Inventory
from hpcbench.record import SCHEMA_VERSION, BaselineInfo, NotRun, Record, SuiteInfo
from hpcbench.report.progress import Progress
from hpcbench.runner import Outcome, Runner
from hpcbench.suite import Suite
from hpcbench.timeparse import utc_stamp


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
            check_results.extend(checks.judge(check, mine, baseline, inv))
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
    args: Any,
    on_record: Callable[[Record, Path], None] | None = None,
    cfg: config.Config | None = None,
) -> int:
    """One run; ``on_record(record, path)`` sees the saved record (or the one --max-age reused)."""
    began = time.monotonic()
    cfg = cfg or config.from_args(args)
    chosen = plan.select_checks(suite.checks, getattr(args, "only", None), getattr(args, "skip", None))
    if chosen != suite.checks:
        selection = " ".join(
            f"--{k} {v}"
            for k, v in (("only", getattr(args, "only", None)), ("skip", getattr(args, "skip", None)))
            if v
        )
        suite = replace(suite, checks=chosen, selection=selection)
    config.check_folders(cfg.baselines)
    outdir = _check_output_dir(cfg.output)
    opts = ops.options(args)
    inv = inventory.collect()
    gpus = plan.select_gpus(inv, getattr(args, "gpus", None), os.environ.get("CUDA_VISIBLE_DEVICES"))
    baseline = baselines.choose(inv, args.baseline, cfg.baselines.value)
    host = inv.hostname or socket.gethostname()
    dry_run = getattr(args, "dry_run", False)
    history = ops.durations(outdir, host, suite.as_dict()) if dry_run or opts.deadline_s else {}
    if dry_run:
        from hpcbench.report import dryrun

        planned = plan.make_plan(suite.checks, probe_classes, inv, gpus)
        fmt = "json" if args.format == "json" else "table"
        dryrun.show(suite, host, planned, baseline, history, cfg, opts.deadline_s, fmt)
        return ExitCode.OK
    run_id = uuid.uuid4().hex[:12]
    started = utc_stamp()
    # under torchrun/srun every rank runs hpcbench: local rank 0 locks the node, rank 0 reports
    job = launch.from_environ(os.environ)
    if job is not None and opts.max_age_s is not None:
        raise ConfigError("--max-age cannot be used under a distributed launch: every rank must run")
    # probes whose results are per node (the network probe's pairs): each node's local rank 0 reports
    per_node = all(probe_classes[c.probe].record_per_node for c in suite.checks)
    reports = job is None or job.reports or (per_node and job.locks)
    runlog = ops.open_log(opts, suite.name) if reports else None
    fresh = ops.recent_pass(outdir, host, suite.as_dict(), opts)
    if fresh is not None:  # --max-age: this suite passed recently enough here
        return ops.skipped(fresh, args, runlog, on_record)
    progress = Progress(quiet=args.quiet or not reports, log=runlog.line if runlog else None)
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
            force=getattr(args, "force", False),
            on_progress=progress.note,
            gpus=gpus,
            deadline_s=opts.deadline_s - (time.monotonic() - began) if opts.deadline_s else None,
            history=history,
        )
        outcomes, not_run = runner.run(suite, probe_classes)
        record = build_record(suite, baseline, inv, run_id, started, outcomes, not_run, runner.stopped)
        if job is not None and not reports:  # rank 0 (per-node probes: each local rank 0) writes and prints
            for line in rank_lines(record, job.rank):
                print(line, file=sys.stderr)
            return record.exit_code
        path = results.save_atomic(record, results.record_path(outdir, record.host, started))
    if on_record is not None:
        on_record(record, path)
    ops.write_reports(record, opts)
    if runlog:
        runlog.line(ops.summary(record, path))
    if args.format == "json":
        sys.stdout.write(json.dumps(record.as_dict(), indent=1) + "\n")
    elif args.format == "nagios":
        from hpcbench.report import nagios

        print(nagios.line(record))
    elif args.quiet:
        if record.exit_code != ExitCode.OK:
            bad = ", ".join(ops.not_ok(record)) or ops.why_unknown(record) or "see record"
            print(f"hpcbench {suite.name}: {record.verdict}: {bad} ({path})")
    else:
        from hpcbench.report.table import render

        render(record, str(path))
    return record.exit_code
