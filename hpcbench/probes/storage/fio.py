"""fio's JSON output (``--output-format=json``) -> IOPS, bandwidth, completion-latency percentiles.

Pure functions, no I/O. They read every JSON layout fio has written since 2.2:

- fio < 2.21: ``io_bytes`` in KiB (no ``io_kbytes``), ``bw`` in KiB/s, ``clat`` in microseconds;
- fio 2.21 .. 2.20x: ``io_bytes`` in bytes beside ``io_kbytes``;
- fio >= 3.0: ``clat_ns`` in nanoseconds (``clat`` gone);
- fio >= 3.2: ``bw_bytes`` in bytes per second beside ``bw`` (KiB/s).

fio may print notes on stdout before the JSON object ("note: both iodepth >= 1 and
synchronous I/O engine are selected ..."); they are skipped. Several job entries
(a run without ``--group_reporting``) are summed: IOPS, bandwidth and I/O counts
add up, and each completion-latency percentile is the worst job's (percentiles
cannot be merged exactly; the worst is the conservative choice).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

#: the completion-latency percentiles the probe reports
PERCENTILES: tuple[float, ...] = (50.0, 99.0, 99.9)


class FioOutputError(ValueError):
    """fio's output is not the JSON this parser knows (truncated, empty, another format)."""


@dataclass(frozen=True)
class FioDirection:
    """One direction (read or write) of a fio run, in SI-friendly units."""

    iops: float
    bw_bytes: float  # bytes per second
    io_bytes: int
    total_ios: int
    runtime_ms: int
    clat_mean_us: float
    clat_max_us: float
    clat_percentiles_us: dict[float, float]  # percentile (50.0, 99.0, 99.9) -> microseconds

    @property
    def active(self) -> bool:
        return self.total_ios > 0 or self.io_bytes > 0

    def clat_us(self, percentile: float) -> float | None:
        return self.clat_percentiles_us.get(percentile)

    def as_dict(self) -> dict[str, Any]:
        return {
            "iops": self.iops,
            "bw_bytes": self.bw_bytes,
            "io_bytes": self.io_bytes,
            "total_ios": self.total_ios,
            "runtime_ms": self.runtime_ms,
            "clat_mean_us": self.clat_mean_us,
            "clat_max_us": self.clat_max_us,
            "clat_percentiles_us": {_pkey(p): v for p, v in self.clat_percentiles_us.items()},
        }


@dataclass(frozen=True)
class FioRun:
    """A whole fio run: its version, the summed read and write sides, errors, CPU and disk use."""

    version: str
    jobs: int
    read: FioDirection
    write: FioDirection
    error: int  # the first non-zero job error (an errno), 0 when none
    usr_cpu: float
    sys_cpu: float
    disk_util: tuple[tuple[str, float], ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "fio_version": self.version,
            "jobs": self.jobs,
            "error": self.error,
            "usr_cpu": self.usr_cpu,
            "sys_cpu": self.sys_cpu,
            "disk_util": {name: util for name, util in self.disk_util},
            "read": self.read.as_dict(),
            "write": self.write.as_dict(),
        }


def _pkey(p: float) -> str:
    return f"p{p:g}"


def extract_json(text: str) -> dict[str, Any]:
    """The JSON object in fio's stdout, skipping notes printed before it."""
    match = re.search(r"^\{", text, re.MULTILINE)
    if match is None:
        snippet = text.strip().splitlines()[-1][:200] if text.strip() else "no output"
        raise FioOutputError(f"no JSON object in fio's output ({snippet})")
    try:
        data, _ = json.JSONDecoder().raw_decode(text, match.start())
    except json.JSONDecodeError as exc:
        raise FioOutputError(f"fio's JSON output is malformed: {exc}") from None
    if not isinstance(data, dict):
        raise FioOutputError("fio's JSON output is not an object")
    return data


def parse_version(text: str) -> tuple[int, ...]:
    """``fio-3.33`` (or ``fio-2.2.10``, ``fio-3.36-12-gabc``) -> (3, 33); () when unknown."""
    match = re.search(r"(\d+(?:\.\d+)*)", text or "")
    return tuple(int(p) for p in match.group(1).split(".")) if match else ()


def _num(section: dict[str, Any], key: str, default: float = 0.0) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FioOutputError(f"fio's JSON field {key!r} is not a number: {value!r}")
    return float(value)


def _percentiles(table: dict[str, Any], scale_to_us: float) -> dict[float, float]:
    """The wanted percentiles from fio's ``{"99.900000": value}`` table, in microseconds."""
    found: dict[float, float] = {}
    for key, value in (table or {}).items():
        try:
            p = float(key)
        except ValueError:
            continue
        for want in PERCENTILES:
            if abs(p - want) < 1e-6 and isinstance(value, (int, float)):
                found[want] = float(value) * scale_to_us
    return found


def parse_direction(section: dict[str, Any], version: tuple[int, ...]) -> FioDirection:
    """One ``read`` or ``write`` section of a job, whatever fio version wrote it."""
    if not isinstance(section, dict):
        raise FioOutputError(f"fio's job section is not an object: {section!r}")
    # bytes/s from fio 3.2 on; before, only "bw" in KiB/s
    bw = _num(section, "bw_bytes") if "bw_bytes" in section else _num(section, "bw") * 1024.0
    if "io_kbytes" in section:
        io_bytes = int(_num(section, "io_bytes"))
    elif version and version < (2, 21):
        io_bytes = int(_num(section, "io_bytes")) * 1024  # KiB before fio 2.21
    else:
        io_bytes = int(_num(section, "io_bytes"))
    if isinstance(section.get("clat_ns"), dict):
        clat, scale = section["clat_ns"], 1e-3
    elif isinstance(section.get("clat"), dict):
        clat, scale = section["clat"], 1.0
    else:
        clat, scale = {}, 1.0
    # an idle direction's percentile table (fio 2.x) holds zeros, not latencies
    busy = _num(section, "total_ios") > 0 or io_bytes > 0
    return FioDirection(
        iops=_num(section, "iops"),
        bw_bytes=bw,
        io_bytes=io_bytes,
        total_ios=int(_num(section, "total_ios")),
        runtime_ms=int(_num(section, "runtime")),
        clat_mean_us=_num(clat, "mean") * scale,
        clat_max_us=_num(clat, "max") * scale,
        clat_percentiles_us=_percentiles(clat.get("percentile") or {}, scale) if busy else {},
    )


def _merge(parts: list[FioDirection]) -> FioDirection:
    if len(parts) == 1:
        return parts[0]
    ios = sum(p.total_ios for p in parts)
    worst: dict[float, float] = {}
    for p in parts:
        if not p.active:
            continue
        for key, value in p.clat_percentiles_us.items():
            worst[key] = max(worst.get(key, 0.0), value)
    return FioDirection(
        iops=sum(p.iops for p in parts),
        bw_bytes=sum(p.bw_bytes for p in parts),
        io_bytes=sum(p.io_bytes for p in parts),
        total_ios=ios,
        runtime_ms=max(p.runtime_ms for p in parts),
        clat_mean_us=sum(p.clat_mean_us * p.total_ios for p in parts) / ios if ios else 0.0,
        clat_max_us=max(p.clat_max_us for p in parts),
        clat_percentiles_us=worst,
    )


def parse_fio_json(text: str) -> FioRun:
    """fio's ``--output-format=json`` stdout -> FioRun; FioOutputError when it is not that."""
    data = extract_json(text)
    jobs = data.get("jobs")
    if not isinstance(jobs, list) or not jobs:
        raise FioOutputError("fio's JSON output has no jobs")
    version_text = str(data.get("fio version", ""))
    version = parse_version(version_text)
    reads, writes, errors, usr, sys_ = [], [], [], [], []
    for job in jobs:
        if not isinstance(job, dict) or "read" not in job or "write" not in job:
            raise FioOutputError("a fio job in the JSON output has no read or write section")
        reads.append(parse_direction(job["read"], version))
        writes.append(parse_direction(job["write"], version))
        errors.append(int(_num(job, "error")))
        usr.append(_num(job, "usr_cpu"))
        sys_.append(_num(job, "sys_cpu"))
    util = tuple(
        (str(d.get("name", "?")), float(d.get("util", 0.0)))
        for d in data.get("disk_util") or []
        if isinstance(d, dict)
    )
    return FioRun(
        version=version_text,
        jobs=len(jobs),
        read=_merge(reads),
        write=_merge(writes),
        error=next((e for e in errors if e), 0),
        usr_cpu=sum(usr) / len(usr),
        sys_cpu=sum(sys_) / len(sys_),
        disk_util=util,
    )


def stderr_reason(stderr: str, limit: int = 400) -> str:
    """fio's stderr as one line for a verdict's reason (its lines joined, repeats dropped)."""
    lines = list(dict.fromkeys(ln.strip() for ln in (stderr or "").splitlines() if ln.strip()))
    text = "; ".join(lines)
    return text[:limit] + ("..." if len(text) > limit else "")
