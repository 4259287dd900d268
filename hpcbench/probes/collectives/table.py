"""The per-size table of collectives checks, laid out like nccl-tests' output, from a result record.

    python -m hpcbench.probes.collectives.table RECORD.json

prints, for each collectives check and op, the columns of nccl-tests'
``*_perf`` (size, count, type, redop, time, algbw, busbw, #wrong), so the two
can be read side by side. Reads the record's JSON only: the sweep is in each measurement's
settings, the provenance of the busbw it reports, decoded into ``Sweep`` by the record's codec (a
record whose sweep lacks a field is refused with one line, exit 4).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpcbench.core import codec
from hpcbench.core.exitcodes import ExitCode

_COLUMNS = "{:>12} {:>12} {:>8} {:>6} {:>10} {:>8} {:>8} {:>7}"
HEADER = "#" + _COLUMNS.format("size", "count", "type", "redop", "time", "algbw", "busbw", "#wrong")[1:]
UNITS = ("#" + _COLUMNS.format("(B)", "(elements)", "", "", "(us)", "(GB/s)", "(GB/s)", "")[1:]).rstrip()
#: nccl-tests' names of the data types
TYPES = {"float32": "float", "float64": "double"}


@dataclass(frozen=True)
class Row:
    """One size of an op's sweep (``calc.table_rows``), as the record keeps it."""

    size_bytes: int
    count: int
    time_us: float
    algbw_gbs: float
    busbw_gbs: float
    wrong: int


@dataclass(frozen=True)
class Sweep:
    """What the table of one op is printed from: the fields of a collectives measurement's
    provenance (``settings``) that ``probe.measurements`` writes, decoded by the record's codec."""

    op: str
    world_size: int
    backend: str
    dtype: str
    in_place: bool
    bus_factor: float
    slowest_rank: int
    slowest_rank_host: str
    table: tuple[Row, ...]


def op_tables(record: dict[str, Any]) -> list[tuple[str, Sweep]]:
    """(check/subject, sweep) of every op of every collectives check in the record (one per op);
    DecodeError (a ValueError) naming the field of a sweep that is not one."""
    found = []
    for i, check in enumerate(record.get("checks", [])):
        if check.get("probe") != "collectives":
            continue
        seen = set()
        for j, m in enumerate(check.get("measurements", [])):
            provenance = m.get("settings") or {}
            if "table" not in provenance:
                continue
            sweep: Sweep = codec.decode(Sweep, provenance, f"checks.{i}.measurements.{j}.settings")
            if sweep.op not in seen:
                seen.add(sweep.op)
                found.append((f"{check['id']}/{check['subject']}", sweep))
    return found


def format_op(check: str, sweep: Sweep) -> list[str]:
    redop = "sum" if sweep.op in ("all_reduce", "reduce_scatter") else "none"
    lines = [
        f"# {check}: {sweep.op}, {sweep.world_size} ranks, {sweep.backend}, "
        f"{'in-place' if sweep.in_place else 'out-of-place'}, "
        f"busbw factor {sweep.bus_factor:.4g}, "
        f"slowest rank {sweep.slowest_rank} ({sweep.slowest_rank_host})",
        HEADER,
        UNITS,
    ]
    dtype = TYPES.get(sweep.dtype, sweep.dtype)
    for row in sweep.table:
        lines.append(
            _COLUMNS.format(
                row.size_bytes,
                row.count,
                dtype,
                redop,
                f"{row.time_us:.1f}",
                f"{row.algbw_gbs:.3f}",
                f"{row.busbw_gbs:.3f}",
                row.wrong,
            )
        )
    if sweep.table:
        average = sum(r.busbw_gbs for r in sweep.table) / len(sweep.table)
        lines.append(f"# Avg bus bandwidth    : {average:.4g}")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m hpcbench.probes.collectives.table RECORD.json", file=sys.stderr)
        return ExitCode.USAGE
    try:
        record = json.loads(Path(argv[0]).read_bytes())
    except (OSError, ValueError) as exc:  # no such file, not JSON
        print(f"hpcbench: error: {argv[0]}: not a readable result record: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    if not isinstance(record, dict):
        print(f"hpcbench: error: {argv[0]}: not an hpcbench result record", file=sys.stderr)
        return ExitCode.USAGE
    try:
        tables = op_tables(record)
    except ValueError as exc:  # codec.DecodeError: a sweep with a field missing or of another type
        print(f"hpcbench: error: {argv[0]}: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    if not tables:
        print(f"hpcbench: error: {argv[0]}: no collectives check with a measured table", file=sys.stderr)
        return ExitCode.USAGE
    try:
        for check, sweep in tables:
            print("\n".join(format_op(check, sweep)), flush=True)
    except BrokenPipeError:  # e.g. piped into head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
