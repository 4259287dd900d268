"""The analysis commands' arguments and handlers: compare, fleet, history, report.

cli.py adds these parsers and dispatches to ``HANDLERS``; pandas, numpy and matplotlib are
imported inside the handlers only.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from hpcbench.core.errors import ConfigError

ANALYSIS_EPILOG = """Reads result records only. Bad files (truncated, another schema version, not a record,
another suite's records with --suite) are skipped with a warning on stderr naming the file.
Exit codes: 0 nothing found, 1 something to look at, 2 a node to drain or a regression
beyond the noise, 4 usage error."""


def _fleet_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", help="only this suite's records (others are skipped with a warning)")
    p.add_argument(
        "--k", type=float, default=3.5, help="robust score beyond which a node is an outlier (3.5)"
    )
    p.add_argument(
        "--min-deviation",
        type=float,
        default=0.05,
        help="and by at least this fraction of the fleet median (0.05)",
    )
    p.add_argument("--min-nodes", type=int, default=5, help="nodes a metric needs before scoring (5)")


def add_parsers(sub: Any) -> None:
    """The analysis subcommands on cli.py's subparsers."""
    p = sub.add_parser(
        "compare",
        help="two records: per check the change and whether it is beyond the samples' noise",
        epilog=ANALYSIS_EPILOG,
    )
    p.add_argument("old", help="the earlier result record (or a folder: its newest record)")
    p.add_argument("new", help="the later result record (or a folder: its newest record)")
    p.add_argument("--k", type=float, default=3.0, help="change beyond k x the pooled noise (3)")
    p.add_argument("--format", choices=("table", "json"), default="table")

    p = sub.add_parser(
        "fleet",
        help="every node's latest record against the fleet: outliers, per-GPU outliers, drift",
        epilog=ANALYSIS_EPILOG,
    )
    p.add_argument("dirs", nargs="+", metavar="DIR", help="folders (or files) of result records")
    _fleet_options(p)
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--csv", metavar="FILE", help="also write every node's every score as CSV")

    p = sub.add_parser(
        "history",
        help="one node's trend over its records; degradation against its own rolling median",
        epilog=ANALYSIS_EPILOG,
    )
    p.add_argument("host", help="the node's host name, as in its records")
    p.add_argument(
        "dirs", nargs="*", metavar="DIR", help="record folders (default: the output folder; hpcbench config)"
    )
    p.add_argument("--suite", help="only this suite's records")
    p.add_argument("--window", type=int, default=7, help="records in the rolling median (7)")
    p.add_argument("--tolerance", type=float, default=0.05, help="degraded below 1 - this ratio (0.05)")
    p.add_argument("--all", action="store_true", help="show every series, not only degraded ones")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--csv", metavar="FILE", help="also write every point of every series as CSV")

    p = sub.add_parser(
        "report",
        help="one self-contained HTML report of a fleet: nodes to drain, distributions, per node",
        epilog=ANALYSIS_EPILOG,
    )
    p.add_argument("dirs", nargs="+", metavar="DIR", help="folders (or files) of result records")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the HTML file to write")
    p.add_argument("--max-nodes", type=int, default=40, help="per-node sections, flagged nodes first (40)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    _fleet_options(p)


def _fleet_opts(args: argparse.Namespace) -> Any:
    from hpcbench.analysis.fleet import Options

    if args.k <= 0 or not 0 <= args.min_deviation < 1 or args.min_nodes < 3:
        raise ConfigError("--k must be positive, --min-deviation in [0, 1), --min-nodes at least 3")
    return Options(k=args.k, min_deviation=args.min_deviation, min_nodes=args.min_nodes)


def _load_latest(args: argparse.Namespace) -> Any:
    from hpcbench.analysis import load

    loaded = load.load(args.dirs, latest=True, suite=args.suite)
    if loaded.runs.empty:
        raise ConfigError(f"no usable result records in {' '.join(args.dirs)}")
    return loaded


def cmd_fleet(args: argparse.Namespace) -> int:
    from hpcbench.analysis import fleet, fleet_output

    opts = _fleet_opts(args)
    loaded = _load_latest(args)
    fleets = fleet.analyse(loaded, opts)
    if args.csv:
        fleet_output.write_csv(fleets, args.csv)
    if args.format == "json":
        fleet_output.dump_json(fleets, loaded.skipped)
    else:
        fleet_output.render(fleets)
        if args.csv:
            print(f"wrote {args.csv}")
    return fleet_output.exit_code(fleets)


def cmd_compare(args: argparse.Namespace) -> int:
    from hpcbench.analysis import compare

    if args.k <= 0:
        raise ConfigError("--k must be positive")
    result = compare.run(args.old, args.new, k=args.k)
    if args.format == "json":
        compare.dump_json(result)
    else:
        compare.render(result)
    return compare.exit_code(result)


def cmd_history(args: argparse.Namespace) -> int:
    from hpcbench.analysis import history

    if args.window < 2 or not 0 <= args.tolerance < 1:
        raise ConfigError("--window must be at least 2 and --tolerance in [0, 1)")
    if not args.dirs:
        from hpcbench.engine import config

        args.dirs = [str(config.load().output.value)]
    result = history.run(args.host, args.dirs, suite=args.suite, window=args.window, tolerance=args.tolerance)
    if args.csv:
        history.write_csv(result, args.csv)
    if args.format == "json":
        history.dump_json(result)
    else:
        history.render(result, show_all=args.all)
        if args.csv:
            print(f"wrote {args.csv}")
    return history.exit_code(result)


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hpcbench.analysis import fleet, fleet_output, html

    out = Path(args.output)
    if out.exists() and not args.force:
        raise ConfigError(f"{out} exists; pass --force to overwrite it")
    if args.max_nodes < 0:
        raise ConfigError("--max-nodes must not be negative")
    opts = _fleet_opts(args)
    loaded = _load_latest(args)
    fleets = fleet.analyse(loaded, opts)
    html.write(fleets, loaded, out, opts, max_nodes=args.max_nodes, sources=args.dirs)
    drain = sorted({h for f in fleets for h in f.drain})
    hosts = len(set(loaded.runs["host"]))
    print(f"wrote {out}: {hosts} nodes, {len(drain)} to drain")
    return fleet_output.exit_code(fleets)


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "compare": cmd_compare,
    "fleet": cmd_fleet,
    "history": cmd_history,
    "report": cmd_report,
}
