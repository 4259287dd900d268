"""Prometheus metrics of a result record for node_exporter's textfile collector.

``--prometheus-textfile DIR`` writes ``DIR/hpcbench_<suite>.prom``: prometheus_client's text
format through hpcbench.core.atomic (a temporary file, then a rename: the collector never reads half
a file; prometheus_client's own ``write_to_textfile`` opens a predictable temporary name).
Names follow Prometheus' conventions: an ``hpcbench_`` prefix and only base units as suffixes,
values converted to them (GB/s -> ``_bytes_per_second``, Gb/s -> ``_bytes_per_second``,
TFLOPS -> ``_flops_per_second``, us -> ``_seconds``, IOPS -> ``_io_operations_per_second``,
C -> ``_celsius``, MHz -> ``_hertz``, GiB -> ``_bytes``, % -> ``_ratio``).

Value series carry no verdict label, so a series keeps its identity when a verdict changes;
the verdicts are series of their own, to be joined on (suite, check, subject):

  hpcbench_measured_<unit>{suite, check, subject, metric}   the value hpcbench judged
  hpcbench_counted{suite, check, subject, metric}           a count (errors, events, devices)
  hpcbench_flag{suite, check, subject, metric}              a state, 1 or 0 (ECC on, persistence)
  hpcbench_expected_<unit>{suite, check, subject, metric, kind}   the expected value (baseline,
                                                            the other subjects); kind says which
  hpcbench_performance_ratio{suite, check, subject, metric, kind}  measured/expected (expected/
                                                            measured where lower is better)
  hpcbench_check_verdict{suite, check, subject, verdict}    1 for the check's verdict, else 0
  hpcbench_metric_verdict{suite, check, subject, metric, verdict}  the same per judged metric
Per run (label suite):
  hpcbench_last_run_timestamp_seconds, hpcbench_last_run_start_timestamp_seconds,
  hpcbench_last_run_duration_seconds, hpcbench_last_run_exit_code,
  hpcbench_last_run_verdict{verdict} (1 for the run's verdict), hpcbench_last_run_checks{verdict},
  hpcbench_last_run_info{tool_version, baseline} = 1 (no run id: a label that changes every run
  would make a new series every run)

A unit hpcbench does not know becomes ``hpcbench_measured{..., unit}`` rather than a suffix
that is no unit. Reads the record only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hpcbench.core import timeparse
from hpcbench.core.measurement import Verdict, worst_verdict
from hpcbench.engine.record import Record

PREFIX = "hpcbench"
VERDICTS = ("PASS", "WARN", "FAIL", "ERROR", "SKIP", "NOBASELINE")
RUN_VERDICTS = ("OK", "WARN", "FAIL", "UNKNOWN")

# unit as probes write it -> (base-unit name suffix, factor to the base unit)
UNITS: dict[str, tuple[str, float]] = {
    "B/s": ("bytes_per_second", 1.0),
    "kB/s": ("bytes_per_second", 1e3),
    "KB/s": ("bytes_per_second", 1e3),
    "MB/s": ("bytes_per_second", 1e6),
    "GB/s": ("bytes_per_second", 1e9),
    "TB/s": ("bytes_per_second", 1e12),
    "KiB/s": ("bytes_per_second", 2.0**10),
    "MiB/s": ("bytes_per_second", 2.0**20),
    "GiB/s": ("bytes_per_second", 2.0**30),
    "FLOPS": ("flops_per_second", 1.0),
    "GFLOPS": ("flops_per_second", 1e9),
    "TFLOPS": ("flops_per_second", 1e12),
    "PFLOPS": ("flops_per_second", 1e15),
    "ns": ("seconds", 1e-9),
    "us": ("seconds", 1e-6),
    "ms": ("seconds", 1e-3),
    "s": ("seconds", 1.0),
    "IOPS": ("io_operations_per_second", 1.0),
    "B": ("bytes", 1.0),
    "MB": ("bytes", 1e6),
    "GB": ("bytes", 1e9),
    "MiB": ("bytes", 2.0**20),
    "GiB": ("bytes", 2.0**30),
    "C": ("celsius", 1.0),
    "W": ("watts", 1.0),
    "Hz": ("hertz", 1.0),
    "MHz": ("hertz", 1e6),
    "GHz": ("hertz", 1e9),
    "%": ("ratio", 0.01),
    "ratio": ("ratio", 1.0),
    "b/s": ("bytes_per_second", 1 / 8),
    "Mb/s": ("bytes_per_second", 1e6 / 8),
    "Gb/s": ("bytes_per_second", 1e9 / 8),
    "µs": ("seconds", 1e-6),
    "kB": ("bytes", 1e3),
    "KiB": ("bytes", 2.0**10),
    "TB": ("bytes", 1e12),
    "TiB": ("bytes", 2.0**40),
}
#: units of counted things: hpcbench_counted (not _count: the suffix of histograms and summaries)
COUNTS = frozenset({"count", "", "GPUs", "CPUs", "errors", "events", "ports", "links", "words", "lines"})
#: the unit of a 1/0 state: hpcbench_flag
FLAG = "flag"


def family(kind: str, unit: str) -> tuple[str, float, bool]:
    """(metric family, factor to its unit, whether a ``unit`` label must say the unit) of a
    ``measured`` or ``expected`` value: ``('hpcbench_measured_bytes_per_second', 1e9, False)``
    for GB/s, ``hpcbench_counted``/``hpcbench_flag`` (``hpcbench_expected_counted``...) for counts and
    flags, ``hpcbench_<kind>`` with a ``unit`` label for a unit hpcbench does not know."""
    if unit == FLAG:
        return (f"{PREFIX}_flag" if kind == "measured" else f"{PREFIX}_{kind}_flag"), 1.0, False
    if unit in COUNTS:
        return (f"{PREFIX}_counted" if kind == "measured" else f"{PREFIX}_{kind}_counted"), 1.0, False
    if unit in UNITS:
        suffix, factor = UNITS[unit]
        return f"{PREFIX}_{kind}_{suffix}", factor, False
    return f"{PREFIX}_{kind}", 1.0, True


def _unix(text: str | None) -> float | None:
    t = timeparse.try_time(text)
    return t.timestamp() if t else None


def file_name(suite: str) -> str:
    return f"{PREFIX}_{re.sub(r'[^A-Za-z0-9_-]+', '_', suite).strip('_') or 'suite'}.prom"


def build_registry(record: Record) -> Any:
    """A prometheus_client CollectorRegistry holding the record's metrics."""
    from prometheus_client import CollectorRegistry, Gauge

    reg = CollectorRegistry()
    gauges: dict[str, Any] = {}
    suite = record.suite.name

    def gauge(name: str, doc: str, labels: tuple[str, ...]) -> Any:
        if name not in gauges:
            gauges[name] = Gauge(name, doc, ("suite", *labels), registry=reg)
        return gauges[name]

    for c in record.checks:
        for m in c.measurements:
            name, factor, labelled = family("measured", m.unit)
            what = (
                "count"
                if name.endswith("_counted")
                else "state (1 or 0)"
                if name.endswith("_flag")
                else "value"
            )
            labels = ("check", "subject", "metric", *(("unit",) if labelled else ()))
            g = gauge(
                name, f"The {what} an hpcbench check measured (base units; verdicts: *_verdict)", labels
            )
            g.labels(suite, c.id, c.subject, m.metric, *((m.unit,) if labelled else ())).set(m.value * factor)
        for e in c.evaluations:
            if e.expected is None:
                continue
            name, factor, labelled = family("expected", e.unit)
            labels = ("check", "subject", "metric", "kind", *(("unit",) if labelled else ()))
            values = (suite, c.id, c.subject, e.metric, e.kind, *((e.unit,) if labelled else ()))
            g = gauge(name, "The value an hpcbench check expected (baseline, or the other subjects)", labels)
            g.labels(*values).set(e.expected * factor)
            if e.ratio is not None:
                g = gauge(
                    f"{PREFIX}_performance_ratio",
                    "Measured/expected (expected/measured where lower is better): below 1 is worse",
                    ("check", "subject", "metric", "kind"),
                )
                g.labels(suite, c.id, c.subject, e.metric, e.kind).set(e.ratio)
        g = gauge(
            f"{PREFIX}_check_verdict",
            "1 for the verdict of an hpcbench check on a subject, 0 for the other verdicts",
            ("check", "subject", "verdict"),
        )
        for v in VERDICTS:
            g.labels(suite, c.id, c.subject, v).set(1.0 if c.verdict.value == v else 0.0)
        per_metric: dict[str, list[Verdict]] = {}
        for e in c.evaluations:
            per_metric.setdefault(e.metric, []).append(e.verdict)
        g = gauge(
            f"{PREFIX}_metric_verdict",
            "1 for the verdict of one metric of an hpcbench check on a subject, 0 for the others",
            ("check", "subject", "metric", "verdict"),
        )
        for metric, verdicts in per_metric.items():
            worst = worst_verdict(verdicts).value
            for v in VERDICTS:
                g.labels(suite, c.id, c.subject, metric, v).set(1.0 if worst == v else 0.0)

    started, ended = _unix(record.started), _unix(record.ended)
    run = {
        "last_run_timestamp_seconds": ("Unix time the last hpcbench run of the suite ended", ended),
        "last_run_start_timestamp_seconds": ("Unix time the last hpcbench run of the suite started", started),
        "last_run_duration_seconds": (
            "Wall time of the last hpcbench run of the suite (1 s resolution)",
            (ended - started) if started is not None and ended is not None else None,
        ),
        "last_run_exit_code": (
            "Exit code of the last run: 0 OK, 1 WARN, 2 FAIL, 3 UNKNOWN",
            float(record.exit_code),
        ),
    }
    for name, (doc, value) in run.items():
        if value is not None:
            gauge(f"{PREFIX}_{name}", doc, ()).labels(suite).set(value)
    g = gauge(
        f"{PREFIX}_last_run_verdict", "1 for the verdict of the last run, 0 for the others", ("verdict",)
    )
    for v in RUN_VERDICTS:
        g.labels(suite, v).set(1.0 if record.verdict == v else 0.0)
    g = gauge(f"{PREFIX}_last_run_checks", "Checks (per subject) of the last run by verdict", ("verdict",))
    for v in VERDICTS:
        g.labels(suite, v).set(float(sum(1 for c in record.checks if c.verdict.value == v)))
    baseline = record.baseline.name if record.baseline else "none"
    gauge(
        f"{PREFIX}_last_run_info", "The last run's tool version and baseline", ("tool_version", "baseline")
    ).labels(suite, record.tool_version, baseline).set(1.0)
    return reg


def write(record: Record, directory: Path) -> Path:
    """Writes ``directory/hpcbench_<suite>.prom`` atomically (hpcbench.core.atomic: a new temporary
    file, never a planted one; as root, a folder and a target no other user controls); returns
    its path."""
    from prometheus_client import generate_latest

    from hpcbench.core.atomic import write_atomic

    path = Path(directory) / file_name(record.suite.name)
    return write_atomic(path, generate_latest(build_registry(record)))
