"""``hpcbench slurm-check``'s command line, apart from the command (``hpcbench.cli.slurm``), so
that building the parser (``hpcbench --help``) imports neither the record nor subprocess."""

from __future__ import annotations

from typing import Any

from hpcbench.core.exitcodes import ExitCode

#: --drain-on's choices: the run's code at which the node is drained
DRAIN_ON = {"FAIL": ExitCode.FAIL, "UNKNOWN": ExitCode.UNKNOWN, "WARN": ExitCode.WARN}


def add_parser(sub: Any, add_run_options: Any) -> None:
    p = sub.add_parser(
        "slurm-check",
        help="run a suite; drain this Slurm node on failure, resume it when hpcbench had drained it",
        epilog="On FAIL (or --drain-on) the node is drained with reason 'hpcbench: <verdict> "
        "<check(subjects)>...', unless someone else already took it out of service; on OK or WARN a "
        "node drained by hpcbench is resumed, never one drained by anyone else; UNKNOWN leaves it "
        "alone. Exit codes: 2 the run reached --drain-on (so a Prolog fails the job's launch), 0 "
        "otherwise (also when nothing could be judged), 3 scontrol failed, 4 usage error.",
    )
    p.add_argument("suite", nargs="?", default="quick", help="suite file or bundled name (default: quick)")
    p.add_argument(
        "--node", metavar="NAME", help="Slurm node name (default: $SLURMD_NODENAME, else hostname)"
    )
    p.add_argument(
        "--drain-on",
        choices=tuple(DRAIN_ON),
        default="FAIL",
        help="drain when the run is this bad or worse (order OK < WARN < UNKNOWN < FAIL; default FAIL)",
    )
    p.add_argument(
        "--scontrol", metavar="PATH", help="the scontrol program (default: on PATH, else /usr/bin)"
    )
    add_run_options(p)
