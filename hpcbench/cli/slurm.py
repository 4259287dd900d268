"""Slurm node health: drain a failing node, resume only a node hpcbench drained (as LBNL NHC does).

``hpcbench slurm-check [SUITE]`` runs the suite like ``run`` and then acts on the node through
``scontrol`` (argv lists with a timeout, never a shell):

- the run's code reaches ``--drain-on`` (default FAIL): drain the node with a reason that starts
  with ``hpcbench:`` and names the failing checks, unless someone else already took the node out
  (DRAIN, DOWN or FAIL with a reason that is not hpcbench's): that node is left as it is;
- the run is OK or WARN (below ``--drain-on``): resume the node only when it is drained with a
  reason that starts with ``hpcbench:``; an operator's drain ("maintenance") is never undone;
- anything else (UNKNOWN: a check could not measure, the lock is held): the node is left alone.

The parsers and the decision are pure functions, tested on captured ``scontrol`` output.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from hpcbench.cli.slurm_args import DRAIN_ON
from hpcbench.core.errors import ConfigError, HpcbenchError, LockHeld
from hpcbench.core.exitcodes import ExitCode
from hpcbench.engine.record import Record

PREFIX = "hpcbench:"
REASON_LIMIT = 120  # characters: scontrol and sinfo show the reason on one line
TIMEOUT_S = 30.0


@dataclass(frozen=True)
class NodeInfo:
    """A node as ``scontrol show node`` shows it: name, State= (e.g. IDLE+DRAIN) and Reason=."""

    name: str
    state: str
    reason: str = ""
    reason_by: str = ""  # "root@2026-11-28T13:19:59" from the trailing [user@time]

    @property
    def flags(self) -> set[str]:
        return set(self.state.upper().split("+"))

    @property
    def out_of_service(self) -> bool:
        """Drained, draining, down or failed: taken out of service by someone."""
        return bool(self.flags & {"DRAIN", "DRAINED", "DRAINING", "DOWN", "FAIL", "FAILING"})

    @property
    def drained_by_hpcbench(self) -> bool:
        return self.out_of_service and self.reason.startswith(PREFIX)


def parse_show_node(text: str) -> NodeInfo:
    """``scontrol show node NAME`` output to a NodeInfo; ConfigError when it names no node.

    ``Reason=`` runs to the end of its line (a reason holds spaces and '='), minus the trailing
    ``[user@time]`` that slurmctld appends.
    """
    name = state = ""
    reason = reason_by = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("Reason="):
            reason = stripped[len("Reason=") :]
            if reason.endswith("]") and " [" in reason:
                reason, _, by = reason.rpartition(" [")
                reason_by = by[:-1]
            continue
        for token in stripped.split():
            key, sep, value = token.partition("=")
            if not sep:
                continue
            if key == "NodeName" and not name:
                name = value
            elif key == "State" and not state:
                state = value
    if not name or not state:
        first = text.strip().splitlines()[0] if text.strip() else "no output"
        raise ConfigError(f"scontrol show node: {first}")
    return NodeInfo(name=name, state=state, reason=reason.strip(), reason_by=reason_by)


def failing_checks(record: Record, threshold: ExitCode) -> dict[str, list[str]]:
    """Check id -> subjects whose verdict reaches ``threshold`` (in the record's order)."""
    require = record.suite.require_baseline
    out: dict[str, list[str]] = {}
    for c in record.checks:
        code = c.verdict.exit_code(require)
        if code != ExitCode.OK and code.severity >= threshold.severity:
            out.setdefault(c.id, []).append(c.subject)
    if ExitCode.UNKNOWN.severity >= threshold.severity:
        for skipped in record.not_run:
            out.setdefault(skipped.id, []).append("not run")
    return out


def first_item(record: Record, threshold: ExitCode) -> tuple[str, str]:
    """(check id, what is wrong) of the first failing health item: the detail a health probe
    gives its failing count (``mount /scratch missing``), its first clause; ("", "") when the
    first failing check has none."""
    require = record.suite.require_baseline
    for c in record.checks:
        code = c.verdict.exit_code(require)
        if code == ExitCode.OK or code.severity < threshold.severity:
            continue
        for e in c.evaluations:
            ecode = e.verdict.exit_code(require)
            if ecode == ExitCode.OK or ecode.severity < threshold.severity:
                continue
            m = next((m for m in c.measurements if m.metric == e.metric), None)
            detail = m.detail if m is not None else ""
            return (c.id, detail.split(";")[0].strip()) if detail else ("", "")
        return "", ""
    return "", ""


def drain_reason(record: Record, threshold: ExitCode = ExitCode.FAIL, limit: int = REASON_LIMIT) -> str:
    """``hpcbench: FAIL membw(node), gemm(gpu3,gpu5)``: the verdict and the failing checks, short;
    where the first failing check is a health item that names what is wrong, that comes first:
    ``hpcbench: FAIL mount /scratch missing, gpu_health(gpu3)``.

    Checks that do not fit in ``limit`` characters become ``+N more``.
    """
    head = f"{PREFIX} {record.verdict}"
    failing = failing_checks(record, threshold)
    items = [f"{cid}({','.join(subs)})" for cid, subs in failing.items()]
    cid, what = first_item(record, threshold)
    if what and cid == next(iter(failing), None):
        items[0] = what if failing[cid] == ["node"] else f"{what} ({cid} {','.join(failing[cid])})"
    if not items:
        return head
    text = head
    for i, item in enumerate(items):
        rest = len(items) - i - 1
        candidate = f"{text}{' ' if i == 0 else ', '}{item}"
        tail = f", +{rest} more" if rest else ""
        if len(candidate) + len(tail) > limit and i > 0:
            return f"{text}, +{len(items) - i} more"
        text = candidate
    return text[:limit]


@dataclass(frozen=True)
class Action:
    """What to do with the node: ``drain`` (with ``reason``), ``resume`` or ``none``; ``why`` in words."""

    kind: str
    why: str
    reason: str = ""


def decide(code: ExitCode, node: NodeInfo, reason: str, drain_on: ExitCode = ExitCode.FAIL) -> Action:
    """The action for a run's exit code on a node in a given state (pure)."""
    if code.severity >= drain_on.severity:
        if node.out_of_service and not node.drained_by_hpcbench:
            who = f" by {node.reason_by.split('@')[0]}" if node.reason_by else ""
            return Action(
                "none",
                f"{code.name}, but node {node.name} is already {node.state}{who} "
                f"(reason {node.reason!r}); left as it is",
            )
        if node.drained_by_hpcbench and node.reason == reason and "DRAIN" in node.flags:
            return Action("none", f"{code.name}: node {node.name} is already drained ({reason})")
        return Action("drain", f"{code.name}: draining node {node.name} ({reason})", reason)
    if code in (ExitCode.OK, ExitCode.WARN):
        if node.drained_by_hpcbench:
            return Action(
                "resume", f"{code.name}: resuming node {node.name}, drained by hpcbench ({node.reason})"
            )
        if node.out_of_service:
            return Action(
                "none",
                f"{code.name}: node {node.name} is {node.state} with reason {node.reason!r}, not set by "
                "hpcbench; left as it is",
            )
        return Action("none", f"{code.name}: node {node.name} is {node.state}; nothing to do")
    return Action("none", f"{code.name}: could not judge node {node.name}; left as it is ({node.state})")


class Scontrol:
    """``scontrol`` through argv lists with a timeout; errors become one-line HpcbenchErrors."""

    def __init__(self, exe: str | None = None, timeout: float = TIMEOUT_S) -> None:
        found = (
            exe
            or shutil.which("scontrol")
            or next(
                (p for p in ("/usr/bin/scontrol", "/usr/local/bin/scontrol") if os.access(p, os.X_OK)), None
            )
        )
        if not found or not os.access(found, os.X_OK):
            raise ConfigError(f"scontrol not found{f' at {exe}' if exe else ''} (give --scontrol PATH)")
        self.exe = found
        self.timeout = timeout

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [self.exe, *args]
        try:
            return subprocess.run(
                argv, capture_output=True, text=True, timeout=self.timeout, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            raise HpcbenchError(f"{' '.join(argv)}: no answer in {self.timeout:g} s") from None

    def show_node(self, name: str) -> NodeInfo:
        r = self._run("show", "node", name)
        if r.returncode != 0:
            why = (r.stderr.strip() or r.stdout.strip() or f"exit {r.returncode}").splitlines()[0]
            if "not found" in why:
                raise ConfigError(f"scontrol show node {name}: {why}")
            raise HpcbenchError(f"scontrol show node {name}: {why}")
        return parse_show_node(r.stdout)

    def update(self, name: str, state: str, reason: str = "") -> None:
        args = ["update", f"nodename={name}", f"state={state}"] + ([f"reason={reason}"] if reason else [])
        r = self._run(*args)
        if r.returncode != 0:
            why = (r.stderr.strip() or r.stdout.strip() or f"exit {r.returncode}").splitlines()[0]
            raise HpcbenchError(f"scontrol {' '.join(args)}: {why}")


def node_name(given: str | None, environ: dict[str, str] | os._Environ[str]) -> str:
    """--node, else $SLURMD_NODENAME (set for a Prolog and the HealthCheckProgram), else the hostname."""
    return given or environ.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]


def _say(args: argparse.Namespace, text: str, log: Any, important: bool) -> None:
    if important or not args.quiet:
        print(f"hpcbench slurm-check: {text}", file=sys.stderr)
    if log is not None:
        log.line(f"slurm-check: {text}")


def cmd_slurm_check(args: argparse.Namespace) -> int:
    from hpcbench.cli import request
    from hpcbench.cli.run import execute
    from hpcbench.engine import config
    from hpcbench.engine import suite as suite_mod
    from hpcbench.probes import registry
    from hpcbench.report.logfile import RunLog

    scontrol = Scontrol(args.scontrol)
    name = node_name(args.node, os.environ)
    scontrol.show_node(name)  # fails fast: no scontrol, no controller, no such node
    req = request.from_args(args)
    cfg = config.load({"output": req.output, "lock": req.lock_file})
    config.check_folders(cfg.suites)
    found = registry.catalog(suite_mod.probe_names(args.suite, cfg.suites.value))
    probe_classes = found.probes
    suite = suite_mod.load(args.suite, probe_classes, found.broken, cfg.suites.value)
    seen: dict[str, Any] = {}
    log = RunLog.open(req.log_file, suite.name) if req.log_file else None
    try:
        execute(suite, probe_classes, req, on_record=lambda record, path: seen.update(record=record), cfg=cfg)
    except LockHeld as exc:
        _say(args, f"not judged, node {name} left alone: {exc}", log, important=True)
        return ExitCode.OK
    record = seen.get("record")
    if record is None:  # a rank other than 0 of a distributed launch: rank 0 acts
        return ExitCode.OK
    drain_on = DRAIN_ON[args.drain_on]
    code = ExitCode(record.exit_code)
    node = scontrol.show_node(name)
    action = decide(code, node, drain_reason(record, drain_on), drain_on)
    if action.kind == "drain":
        scontrol.update(name, "drain", action.reason)
    elif action.kind == "resume":
        scontrol.update(name, "resume")
    _say(args, action.why, log, important=action.kind != "none")
    return ExitCode.FAIL if code.severity >= drain_on.severity else ExitCode.OK
