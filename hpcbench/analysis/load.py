"""Loading many result records for analysis: fast, tolerant of bad files, latest per node.

A bad file (truncated JSON, another schema version, no record at all, a record of another
suite when a suite is asked for) is skipped with a warning that names it; nothing raises.

Speed. A fleet's results folder holds every night of every node, and ``fleet`` needs only
the latest record of each node and suite. Every file's head is read first (4 KiB: the
record's host, start time and suite come before its checks, in the order
``session.build_record`` writes them); the chosen files alone are parsed in full, in worker
processes when there are many. A file whose head does not give all three (another key order,
another layout) is parsed in full; a chosen file that turns out bad gives way to the same
node's previous record.

The result is two pandas DataFrames: ``runs`` (a row per record: host, suite, started,
verdict, problems, configuration) and ``values`` (a row per measurement: check, subject,
metric, value, unit, direction, the baseline's expected value, and the samples on request).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from sys import intern
from typing import Any

from hpcbench.core.errors import ConfigError
from hpcbench.engine import store

HEAD_BYTES = 4096
PARALLEL_FROM = 200  # files; below this one process is faster than starting workers
CHUNK = 64

_HOST = re.compile(r'"host"\s*:\s*"((?:[^"\\]|\\.)*)"')
_STARTED = re.compile(r'"started"\s*:\s*"([^"\\]*)"')
_SUITE = re.compile(r'"suite"\s*:\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"')

VALUE_COLUMNS = (
    "run",
    "check",
    "probe",
    "subject",
    "metric",
    "value",
    "unit",
    "higher_is_better",
    "sane",
    "expected",
    "verdict",
    "samples",
)


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass(frozen=True)
class Head:
    """What a file's first bytes say: enough to choose which records to parse."""

    path: str
    host: str
    started: str
    suite: str


@dataclass(frozen=True)
class Loaded:
    """``runs``: a row per record; ``values``: a row per measurement (``run`` indexes ``runs``)."""

    runs: Any
    values: Any
    skipped: tuple[Skipped, ...]


Warn = Callable[[str, str], None]


def warn_stderr(path: str, reason: str) -> None:
    print(f"hpcbench: warning: skipped {path}: {reason}", file=sys.stderr)


def _unescape(text: str) -> str:
    return json.loads(f'"{text}"') if "\\" in text else text


def peek(path: str) -> Head | None:
    """Host, start and suite from the head of a record file; None when the head does not say."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return None
    cut = head.find('"checks"')
    if cut >= 0:
        head = head[:cut]
    host, started, suite = _HOST.search(head), _STARTED.search(head), _SUITE.search(head)
    if not (host and started and suite):
        return None
    return Head(path, _unescape(host.group(1)), started.group(1), _unescape(suite.group(1)))


def config(inv: dict[str, Any]) -> dict[str, str]:
    """The configuration facts a fleet should agree on, as strings (absent ones left out).

    Driver, CUDA, GPU model and count, GPU firmware (any per-device key naming vbios, firmware
    or inforom), kernel, OS, CPU model, governor, THP, huge pages, NUMA layout, memory size,
    every tunable and every version the inventory records.
    """
    out: dict[str, Any] = {}
    gpus = inv.get("gpus") or {}
    devices = gpus.get("devices") or []
    out["gpu.count"] = gpus.get("count")
    out["gpu.driver"] = gpus.get("driver_version")
    out["gpu.cuda"] = gpus.get("cuda_version")
    if devices:
        out["gpu.name"] = "/".join(sorted({str(d.get("name")) for d in devices}))
        for key in sorted({k for d in devices for k in d}):
            if any(word in key for word in ("vbios", "firmware", "inforom")):
                out[f"gpu.{key}"] = "/".join(sorted({str(d.get(key)) for d in devices}))
    cpu = inv.get("cpu") or {}
    out["cpu.model"] = cpu.get("model")
    out["cpu.threads"] = cpu.get("threads")
    governors = cpu.get("governors") or ([cpu["governor"]] if cpu.get("governor") else [])
    out["cpu.governor"] = "/".join(governors) if governors else None
    memory = inv.get("memory") or {}
    total = memory.get("total_bytes")
    out["memory.total_gib"] = round(total / 2**30) if isinstance(total, (int, float)) else None
    out["memory.hugepages"] = (memory.get("hugepages") or {}).get("total")
    thp = memory.get("thp") or {}
    out["thp.enabled"] = thp.get("enabled")
    out["thp.defrag"] = thp.get("defrag")
    out["numa.nodes"] = len((inv.get("numa") or {}).get("nodes") or []) or None
    os_ = inv.get("os") or {}
    out["os.kernel"] = os_.get("kernel")
    out["os.name"] = os_.get("name")
    for section in ("tunables", "versions"):
        for key, value in (inv.get(section) or {}).items():
            if not isinstance(value, (dict, list)):
                out[f"{section}.{key}"] = value
    return {k: str(v) for k, v in out.items() if v is not None}


def extract(
    rec: dict[str, Any], path: str, samples: bool = False
) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    """A run row and value rows (without the ``run`` index) from one record. KeyError if malformed."""
    problems: list[str] = []
    rows: list[tuple[Any, ...]] = []
    for c in rec["checks"]:
        cid, subject, probe = intern(c["id"]), intern(c["subject"]), intern(c["probe"])
        if c["status"] != "ok":
            problems.append(f"{c['verdict']} {cid}/{subject}: {c.get('reason') or c['status']}")
            continue
        judged: dict[str, dict[str, Any]] = {}
        for e in c.get("evaluations") or []:
            if e["verdict"] in ("WARN", "FAIL", "ERROR"):
                why = e.get("reason") or e["verdict"].lower()
                problems.append(f"{e['verdict']} {cid}/{subject} {e['metric']}: {why}")
            if e.get("kind") != "relative":
                judged[e["metric"]] = e
        for m in c["measurements"]:
            e = judged.get(m["metric"], {})
            rows.append(
                (
                    cid,
                    probe,
                    subject,
                    intern(m["metric"]),
                    float(m["value"]),
                    intern(m["unit"]),
                    bool(m["higher_is_better"]),
                    not m.get("sanity"),
                    e.get("expected") if e.get("kind") == "baseline" else None,
                    e.get("verdict"),
                    tuple(m["samples"]) if samples else None,
                )
            )
    baseline = rec.get("baseline") or {}
    run = {
        "file": path,
        "host": str(rec["host"]),
        "suite": str(rec["suite"]["name"]),
        "started": str(rec["started"]),
        "run_id": rec.get("run_id"),
        "tool_version": rec.get("tool_version"),
        "verdict": rec.get("verdict"),
        "exit_code": rec.get("exit_code"),
        "baseline": baseline.get("name"),
        "problems": tuple(problems),
        "config": config(rec.get("inventory") or {}),
    }
    return run, rows


Parsed = tuple[str, dict[str, Any] | None, list[tuple[Any, ...]], str]


def parse_file(path: str, samples: bool) -> Parsed:
    """(path, run, rows, "") for a good record; (path, None, [], reason) for a bad one."""
    try:
        rec = store.load_data(path)
        run, rows = extract(rec, path, samples)
    except ConfigError as exc:
        reason = str(exc)
        prefix = f"{path}: "
        return path, None, [], reason[len(prefix) :] if reason.startswith(prefix) else reason
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return path, None, [], f"malformed record ({type(exc).__name__}: {exc})"
    return path, run, rows, ""


def _parse_chunk(paths: list[str], samples: bool) -> list[Parsed]:
    return [parse_file(p, samples) for p in paths]


def parse_many(paths: list[str], samples: bool = False, workers: int | None = None) -> list[Parsed]:
    """Parse files, in worker processes when there are many; results in the order given."""
    workers = workers if workers is not None else (os.cpu_count() or 1)
    if len(paths) < PARALLEL_FROM or workers < 2:
        return _parse_chunk(paths, samples)
    import multiprocessing

    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
        parts = pool.map(_parse_chunk, chunks, [samples] * len(chunks))
        return [item for part in parts for item in part]


def sequence(path: str) -> int:
    """store.record_path's collision suffix: ``<stamp>-2.json`` was written after ``<stamp>-1.json``."""
    stamp = store.name_stamp(Path(path).name)
    return stamp[1] if stamp else 0


def _select(
    files: list[str], host: str | None, suite: str | None, latest: bool, warn: Warn
) -> tuple[list[list[str]], list[Skipped]]:
    """Candidate groups: each a list of files, newest first, of which the first good one counts.

    Without ``latest`` every file is its own group. A file whose head names another suite
    (with ``suite`` given) is skipped with a warning; another host (with ``host``) silently.
    """
    skipped: list[Skipped] = []
    groups: dict[tuple[str, str], list[Head]] = defaultdict(list)
    singles: list[list[str]] = []
    for path in files:
        head = peek(path)
        if head is None:
            singles.append([path])  # parsed in full, filtered afterwards
            continue
        if host is not None and head.host != host:
            continue
        if suite is not None and head.suite != suite:
            skipped.append(Skipped(path, f"a record of suite {head.suite!r}, not {suite!r}"))
            warn(path, skipped[-1].reason)
            continue
        groups[(head.host, head.suite)].append(head)
    out: list[list[str]] = []
    for heads in groups.values():
        newest = sorted(heads, key=lambda h: (h.started, sequence(h.path), h.path), reverse=True)
        ordered = [h.path for h in newest]
        out.extend([ordered] if latest else [[p] for p in ordered])
    return out + singles, skipped


def load(
    paths: Iterable[str | Path],
    *,
    latest: bool = False,
    host: str | None = None,
    suite: str | None = None,
    samples: bool = False,
    warn: Warn = warn_stderr,
    workers: int | None = None,
) -> Loaded:
    """Records under ``paths`` into ``runs`` and ``values`` DataFrames; bad files skipped with ``warn``.

    ``latest``: only the newest good record of each (host, suite). ``host``/``suite``: only
    those records. ``samples``: keep every measurement's samples (for ``compare``).
    """
    files = [str(p) for p in store.find(list(paths))]
    missing = [f for f in files if not Path(f).exists()]
    if missing:
        raise ConfigError(f"{missing[0]}: no such file or folder")
    groups, skipped = _select(files, host, suite, latest, warn)
    chosen: dict[str, tuple[dict[str, Any], list[tuple[Any, ...]]]] = {}
    pending = [(g, 0) for g in groups]
    while pending:
        batch = [g[i] for g, i in pending]
        parsed = {p: (run, rows, why) for p, run, rows, why in parse_many(batch, samples, workers)}
        retry = []
        for g, i in pending:
            run, rows, why = parsed[g[i]]
            if run is None:
                skipped.append(Skipped(g[i], why))
                warn(g[i], why)
            elif host is not None and run["host"] != host:
                continue
            elif suite is not None and run["suite"] != suite:
                skipped.append(Skipped(g[i], f"a record of suite {run['suite']!r}, not {suite!r}"))
                warn(g[i], skipped[-1].reason)
            else:
                chosen[g[i]] = (run, rows)
                continue
            if i + 1 < len(g):
                retry.append((g, i + 1))
        pending = retry
    runs, values = _frames(chosen, latest, samples)
    return Loaded(runs, values, tuple(skipped))


def _frames(
    chosen: dict[str, tuple[dict[str, Any], list[tuple[Any, ...]]]], latest: bool, samples: bool
) -> tuple[Any, Any]:
    import pandas as pd

    run_rows = [run for run, _ in chosen.values()]
    runs = pd.DataFrame(
        run_rows,
        columns=[
            "file",
            "host",
            "suite",
            "started",
            "run_id",
            "tool_version",
            "verdict",
            "exit_code",
            "baseline",
            "problems",
            "config",
        ],
    )
    runs["started"] = pd.to_datetime(runs["started"], utc=True, format="ISO8601")
    runs["_seq"] = [sequence(f) for f in runs["file"]]
    order = runs.sort_values(["suite", "host", "started", "_seq", "file"]).index.to_numpy()
    if latest:  # a file whose head could not be read may still be an older record of a node
        keep = ~runs.loc[order].duplicated(["host", "suite"], keep="last").to_numpy()
        order = order[keep]
    position = {int(old): new for new, old in enumerate(order)}
    runs = runs.loc[order].drop(columns="_seq").reset_index(drop=True)
    cols: list[list[Any]] = [[] for _ in VALUE_COLUMNS]
    for old, (_, rows) in enumerate(chosen.values()):
        new = position.get(old)
        if new is None:
            continue
        cols[0].extend([new] * len(rows))
        for j, column in enumerate(zip(*rows, strict=True)):
            cols[j + 1].extend(column)
    data: dict[str, Any] = dict(zip(VALUE_COLUMNS, cols, strict=True))
    values = pd.DataFrame(
        {
            "run": pd.array(data["run"], dtype="int64"),
            **{k: pd.Categorical(data[k]) for k in ("check", "probe", "subject", "metric", "unit")},
            "value": pd.array(data["value"], dtype="float64"),
            "higher_is_better": pd.array(data["higher_is_better"], dtype="bool"),
            "sane": pd.array(data["sane"], dtype="bool"),
            "expected": pd.to_numeric(
                pd.Series(data["expected"], dtype="object"), errors="coerce"
            ).to_numpy(),
            "verdict": pd.Categorical(data["verdict"]),
        }
    )
    if samples:
        values["samples"] = pd.Series(data["samples"], dtype="object")
    return runs, values
