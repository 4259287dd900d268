"""``hpcbench run --dry-run``: what a run would do, and nothing of it done.

Every check expanded into its subjects with the parameters each child would get, the timeout,
the estimated duration (this host's last run of the suite where it has one, else the timeout,
the most a check may take), the checks that would SKIP or ERROR without starting a child and
why, the measurements one check would take over from another, the baseline that would be
compared with, and where the record would go. No lock is taken, no probe starts, nothing is
written. ``--format json`` prints the same as one JSON object.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from hpcbench.engine.plan import PlannedCheck, Unrunnable, estimate


def _params(params: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={json.dumps(v)}" for k, v in params.items()) or "(defaults)"


def plan_data(
    suite: Any,
    host: str,
    planned: list[PlannedCheck],
    baseline: Any,
    history: Mapping[tuple[str, str], float],
    cfg: Any,
    deadline_s: float | None,
) -> dict[str, Any]:
    """The dry run as data (what ``--format json`` prints)."""
    checks = []
    total, guessed, bound = 0.0, False, 0.0
    for p in planned:
        entry: dict[str, Any] = {"id": p.check.id, "probe": p.check.probe, "timeout": p.check.timeout}
        if isinstance(p.jobs, Unrunnable):
            entry.update(runs=False, status=p.jobs.status, reason=p.jobs.reason)
        elif p.reuses:
            entry.update(
                runs=False,
                status="reuses",
                reason=p.why_reused,
                subjects=[{"subject": job.subject} for job in p.jobs],
            )
        else:
            seconds, basis = estimate(p, history)
            total += seconds
            guessed = guessed or basis == "the timeout"
            bound += p.check.timeout * len(p.batches())
            entry.update(
                runs=True,
                subjects=[{"subject": job.subject, "params": job.params} for job in p.jobs],
                concurrent=p.concurrent,
                estimate_s=seconds,
                estimate_basis=basis,
            )
        checks.append(entry)
    return {
        "suite": suite.name,
        "selection": suite.selection,
        "host": host,
        "baseline": {"name": baseline.name, "matched_by": baseline.matched_by} if baseline else None,
        "output": str(cfg.output.value),
        "lock": str(cfg.lock.value),
        "checks": checks,
        "estimate_s": total,
        "estimate_basis": "the timeouts"
        if guessed and not history
        else ("the last run, the timeouts where it has none" if guessed else "the last run"),
        "at_most_s": bound,
        "deadline_s": deadline_s,
    }


def lines(data: dict[str, Any]) -> list[str]:
    """The dry run as text, a line per subject."""
    base = data["baseline"]
    out = [
        f"hpcbench {data['suite']} on {data['host']}: dry run, nothing is started"
        + (f" ({data['selection']})" if data["selection"] else ""),
        f"baseline: {base['name']} ({base['matched_by']})" if base else "baseline: none matches this node",
        f"records: {data['output']}/{data['host']}/; lock: {data['lock']}",
    ]
    rows = [("check", "subject", "probe", "timeout", "estimate", "parameters / why")]
    for c in data["checks"]:
        if not c["runs"]:
            subjects = ", ".join(s["subject"] for s in c.get("subjects", [])) or "-"
            rows.append((c["id"], subjects, c["probe"], "-", "-", f"{c['status'].upper()}: {c['reason']}"))
            continue
        estimate_text = f"{c['estimate_s']:.0f} s" + (
            " (last run)" if c["estimate_basis"] == "the last run" else ""
        )
        for i, s in enumerate(c["subjects"]):
            first = i == 0
            rows.append(
                (
                    c["id"] if first else "",
                    s["subject"],
                    c["probe"] if first else "",
                    f"{c['timeout']:g} s" if first else "",
                    estimate_text if first else ("at once" if c["concurrent"] else ""),
                    _params(s["params"]),
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    out += [
        "  ".join(cell.ljust(w) for cell, w in zip(r[:5], widths, strict=False)) + "  " + r[5] for r in rows
    ]
    out.append(
        f"estimated duration: {data['estimate_s']:.0f} s ({data['estimate_basis']}); "
        f"at most {data['at_most_s']:.0f} s (the timeouts)"
    )
    if data["deadline_s"] is not None:
        fits = "fits" if data["estimate_s"] <= data["deadline_s"] else "does not fit: checks would not start"
        out.append(f"deadline: {data['deadline_s']:.0f} s; the estimate {fits}")
    return out


def show(
    suite: Any,
    host: str,
    planned: list[PlannedCheck],
    baseline: Any,
    history: Mapping[tuple[str, str], float],
    cfg: Any,
    deadline_s: float | None,
    fmt: str,
    stream: TextIO | None = None,
) -> None:
    stream = stream or sys.stdout
    data = plan_data(suite, host, planned, baseline, history, cfg, deadline_s)
    if fmt == "json":
        stream.write(json.dumps(data, indent=1) + "\n")
    else:
        stream.write("\n".join(line.rstrip() for line in lines(data)) + "\n")
