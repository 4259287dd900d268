"""The per-size table of collectives checks, laid out like nccl-tests' output, from a result record.

    python -m hpcbench.probes.collectives.table RECORD.json

prints, for each collectives check and op, the columns of nccl-tests'
``*_perf`` (size, count, type, redop, time, algbw, busbw, #wrong), so the two
can be read side by side. Reads the record's JSON only (the sweep is in each measurement's
settings, the provenance of the busbw it reports).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from hpcbench.core.exitcodes import ExitCode

_COLUMNS = "{:>12} {:>12} {:>8} {:>6} {:>10} {:>8} {:>8} {:>7}"
HEADER = "#" + _COLUMNS.format("size", "count", "type", "redop", "time", "algbw", "busbw", "#wrong")[1:]
UNITS = ("#" + _COLUMNS.format("(B)", "(elements)", "", "", "(us)", "(GB/s)", "(GB/s)", "")[1:]).rstrip()
#: nccl-tests' names of the data types
TYPES = {"float32": "float", "float64": "double"}


def op_tables(record: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(check id, settings) of every op of every collectives check in the record (one per op)."""
    found = []
    for check in record.get("checks", []):
        if check.get("probe") != "collectives":
            continue
        seen = set()
        for m in check.get("measurements", []):
            settings = m.get("settings") or {}
            op = settings.get("op")
            if op and op not in seen and "table" in settings:
                seen.add(op)
                found.append((f"{check['id']}/{check['subject']}", settings))
    return found


def format_op(check: str, settings: dict[str, Any]) -> list[str]:
    op = settings["op"]
    redop = "sum" if op in ("all_reduce", "reduce_scatter") else "none"
    lines = [
        f"# {check}: {op}, {settings['world_size']} ranks, {settings['backend']}, "
        f"{'in-place' if settings['in_place'] else 'out-of-place'}, "
        f"busbw factor {settings['bus_factor']:.4g}, "
        f"slowest rank {settings['slowest_rank']} ({settings['slowest_rank_host']})",
        HEADER,
        UNITS,
    ]
    dtype = TYPES.get(settings["dtype"], settings["dtype"])
    for row in settings["table"]:
        lines.append(
            _COLUMNS.format(
                row["size_bytes"],
                row["count"],
                dtype,
                redop,
                f"{row['time_us']:.1f}",
                f"{row['algbw_gbs']:.3f}",
                f"{row['busbw_gbs']:.3f}",
                row["wrong"],
            )
        )
    rows = settings["table"]
    average = sum(r["busbw_gbs"] for r in rows) / len(rows)
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
    tables = op_tables(record)
    if not tables:
        print(f"hpcbench: error: {argv[0]}: no collectives check with a measured table", file=sys.stderr)
        return ExitCode.USAGE
    try:
        for check, settings in tables:
            print("\n".join(format_op(check, settings)), flush=True)
    except BrokenPipeError:  # e.g. piped into head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
