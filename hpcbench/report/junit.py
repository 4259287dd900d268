"""JUnit XML from a result record (``--junit FILE``), for CI systems and test dashboards.

One ``<testcase>`` per check and subject: ``classname`` = ``<suite>.<check>``, ``name`` = the
subject, ``time`` = the check's duration. PASS (and NOBASELINE where the suite does not
require a baseline) passes; FAIL and WARN are ``<failure type="FAIL|WARN">`` whose message
holds measured, expected, the ratio and the reason, with every metric's evaluation in the body;
ERROR (and NOBASELINE where a baseline is required) is ``<error>``; SKIP is ``<skipped>``.
Checks that never started (an interrupted run) are errors named "not run". Reads the record only.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timezone
from pathlib import Path
from typing import Any

from hpcbench.core import timeparse
from hpcbench.core.atomic import atomic_open
from hpcbench.core.measurement import Evaluation
from hpcbench.engine.record import CheckResult, Record


def _num(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:.6g} {unit}".strip() if isinstance(value, (int, float)) else str(value)


def evaluation_line(e: Evaluation) -> str:
    """``triad: measured 41.2 GB/s, expected 52 GB/s, ratio 0.79 (warn 0.9, fail 0.8): FAIL reason``."""
    parts = [f"{e.metric}: measured {_num(e.measured, e.unit)}"]
    if e.expected is not None:
        parts.append(f"expected {_num(e.expected, e.unit)}")
    if e.ratio is not None:
        limits = ", ".join(f"{k} {v:g}" for k, v in (("warn", e.warn), ("fail", e.fail)) if v is not None)
        parts.append(f"ratio {e.ratio:.3f}" + (f" ({limits})" if limits else ""))
    text = ", ".join(parts) + f": {e.verdict.value}"
    why = "; ".join(x for x in (e.reason, e.hint, e.provenance) if x)
    return text + (f" {why}" if why else "")


def _message(check: CheckResult) -> str:
    bad = [e for e in check.evaluations if e.verdict is check.verdict]
    lines = [evaluation_line(e) for e in bad]
    if check.reason:
        lines.append(check.reason)
    return "; ".join(lines) or check.verdict.value


def _body(check: CheckResult) -> str:
    lines = [evaluation_line(e) for e in check.evaluations]
    lines += [f"{k}: {v}" for k, v in (("reason", check.reason), ("hint", check.hint)) if v]
    lines.append(f"probe {check.probe}, params {check.params}")
    return "\n".join(lines)


def to_xml(record: Record) -> ET.Element:
    suite = record.suite.name
    require = record.suite.require_baseline
    root = ET.Element("testsuites", name="hpcbench")
    ts = ET.SubElement(
        root,
        "testsuite",
        name=suite,
        package="hpcbench",
        hostname=record.host or "localhost",
        timestamp=zoneless(record.started),
        id="0",  # the suite's index in the file, as Ant numbers them: the run id is a property
    )
    props = ET.SubElement(ts, "properties")
    for key, value in (
        ("run_id", record.run_id),
        ("started_utc", record.started),
        ("verdict", record.verdict),
        ("exit_code", record.exit_code),
        ("baseline", record.baseline.name if record.baseline else "none"),
        ("tool_version", record.tool_version),
        ("interrupted", record.interrupted or ""),
    ):
        ET.SubElement(props, "property", name=key, value=str(value))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total_time = 0.0
    for c in record.checks:
        duration = float(c.duration or 0.0)
        total_time += duration
        case = ET.SubElement(
            ts, "testcase", classname=f"{suite}.{c.id}", name=c.subject, time=f"{duration:.3f}"
        )
        counts["tests"] += 1
        verdict = c.verdict.value
        if verdict in ("FAIL", "WARN"):
            counts["failures"] += 1
            el = ET.SubElement(case, "failure", type=verdict, message=_message(c))
            el.text = _body(c)
        elif verdict == "ERROR" or (verdict == "NOBASELINE" and require):
            counts["errors"] += 1
            why = _message(c) if verdict == "ERROR" else "no baseline value, and this suite requires one"
            el = ET.SubElement(case, "error", type=verdict, message=why)
            el.text = _body(c)
        elif verdict == "SKIP":
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message=c.reason or "does not apply here")
        else:  # PASS, or NOBASELINE that the suite accepts
            out = ET.SubElement(case, "system-out")
            out.text = _body(c)
    for skipped in record.not_run:
        case = ET.SubElement(ts, "testcase", classname=f"{suite}.{skipped.id}", name="not run", time="0")
        counts["tests"] += 1
        counts["errors"] += 1
        ET.SubElement(case, "error", type="NOTRUN", message=skipped.reason or "not run")
    for key, value in counts.items():
        ts.set(key, str(value))
        root.set(key, str(value))
    ts.set("time", f"{total_time:.3f}")
    root.set("time", f"{total_time:.3f}")
    ET.SubElement(ts, "system-out").text = f"hpcbench {suite} on {record.host}: {record.verdict}"
    ET.SubElement(ts, "system-err")
    return root


def zoneless(stamp: str) -> str:
    """A record's UTC time as JUnit readers want it: ``2026-11-28T02:00:00``, no zone, no fraction
    (Ant's schema; Jenkins reads it as UTC)."""
    t = timeparse.try_time(stamp)
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") if t else "1970-01-01T00:00:00"


def write(record: Record, path: Path) -> Path:
    """Writes the JUnit XML atomically (temporary file beside it, then rename)."""
    tree = ET.ElementTree(to_xml(record))
    ET.indent(tree)
    with atomic_open(path, binary=True) as fh:
        tree.write(fh, encoding="utf-8", xml_declaration=True)
    return path
