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
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hpcbench import __version__, baselines, checks, inventory, launch, lock, ops, results
from hpcbench.errors import ConfigError, LockHeld
from hpcbench.exitcodes import ExitCode, worst
from hpcbench.report.progress import Progress
from hpcbench.runner import Outcome, Runner
from hpcbench.suite import Suite
from hpcbench.timeparse import utc_stamp


def _check_output_dir(outdir: str) -> Path:
    path = Path(outdir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--output {outdir}: exists and is not a folder")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise ConfigError(f"--output {outdir}: {probe} is not writable")
    return path


def build_record(
    suite: Suite,
    baseline: baselines.Baseline | None,
    inv: dict[str, Any],
    run_id: str,
    started: str,
    outcomes: list[Outcome],
    not_run: list[str],
    interrupted: str | None,
) -> dict[str, Any]:
    """The result record (a plain dict, as saved) from the run's outcomes."""
    check_results = []
    for check in suite.checks:
        mine = [o for o in outcomes if o.job.check.id == check.id]
        if mine:
            check_results.extend(checks.judge(check, mine, baseline, inv))
    codes = [c.verdict.exit_code(suite.require_baseline) for c in check_results]
    if interrupted or not_run:
        codes.append(ExitCode.UNKNOWN)
    code = worst(codes)
    verdict = {ExitCode.OK: "OK", ExitCode.WARN: "WARN", ExitCode.FAIL: "FAIL", ExitCode.UNKNOWN: "UNKNOWN"}[
        code
    ]
    ended = utc_stamp()
    return {
        "schema_version": results.SCHEMA_VERSION,
        "tool_version": __version__,
        "run_id": run_id,
        "host": inv.get("hostname") or socket.gethostname(),
        "started": started,
        "ended": ended,
        "suite": suite.as_dict(),
        "baseline": baseline.as_dict() if baseline else None,
        "inventory": inv,
        "checks": [c.as_dict() for c in check_results],
        "not_run": not_run,
        "interrupted": interrupted,
        "verdict": verdict,
        "exit_code": int(code),
    }


def rank_lines(record: dict[str, Any], rank: int) -> list[str]:
    """What a rank other than 0 of a distributed launch says: one line per check that is not OK."""
    lines = []
    for c in record["checks"]:
        if c["verdict"] in ("WARN", "FAIL", "ERROR"):
            why = [c["reason"]] + [e["reason"] for e in c["evaluations"] if e["verdict"] == c["verdict"]]
            lines.append(f"hpcbench rank {rank}: {c['id']}: {c['verdict']} {next(filter(None, why), '')}")
    return lines


def execute(
    suite: Suite,
    probe_classes: dict[str, Any],
    args: Any,
    on_record: Callable[[dict[str, Any], Path], None] | None = None,
) -> int:
    """One run; ``on_record(record, path)`` sees the saved record (or the one --max-age reused)."""
    outdir = _check_output_dir(args.output)
    opts = ops.options(args)
    inv = inventory.collect()
    baseline = baselines.choose(inv, args.baseline)
    run_id = uuid.uuid4().hex[:12]
    started = utc_stamp()
    # under torchrun/srun every rank runs hpcbench: local rank 0 locks the node, rank 0 reports
    job = launch.from_environ(os.environ)
    if job is not None and opts.max_age_s is not None:
        raise ConfigError("--max-age cannot be used under a distributed launch: every rank must run")
    # probes whose results are per node (the network probe's pairs): each node's local rank 0 reports
    per_node = all(getattr(probe_classes.get(c.probe), "record_per_node", False) for c in suite.checks)
    reports = job is None or job.reports or (per_node and job.locks)
    runlog = ops.open_log(opts, suite.name) if reports else None
    fresh = ops.recent_pass(outdir, inv.get("hostname") or socket.gethostname(), suite.as_dict(), opts)
    if fresh is not None:  # --max-age: this suite passed recently enough here
        return ops.skipped(fresh, args, runlog, on_record)
    progress = Progress(quiet=args.quiet or not reports, log=runlog.line if runlog else None)
    lock_path = Path(args.lock_file) if args.lock_file else lock.default_path()
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
        runner = Runner(
            inv, on_start=progress.start, on_finish=progress.finish, force=getattr(args, "force", False)
        )
        outcomes, not_run = runner.run(suite, probe_classes)
        record = build_record(suite, baseline, inv, run_id, started, outcomes, not_run, runner.stopped)
        if job is not None and not reports:  # rank 0 (per-node probes: each local rank 0) writes and prints
            for line in rank_lines(record, job.rank):
                print(line, file=sys.stderr)
            return int(record["exit_code"])
        path = results.save_atomic(record, results.record_path(outdir, record["host"], started))
    if on_record is not None:
        on_record(record, path)
    ops.write_reports(record, opts)
    if runlog:
        runlog.line(ops.summary(record, path))
    if args.format == "json":
        sys.stdout.write(json.dumps(record, indent=1) + "\n")
    elif args.quiet:
        if record["exit_code"] != ExitCode.OK:
            bad = sorted(
                {
                    f"{c['id']}/{c['subject']}"
                    for c in record["checks"]
                    if c["verdict"] in ("WARN", "FAIL", "ERROR")
                }
            )
            print(f"hpcbench {suite.name}: {record['verdict']}: {', '.join(bad) or 'see record'} ({path})")
    else:
        from hpcbench.report.table import render

        render(record, str(path))
    return record["exit_code"]
