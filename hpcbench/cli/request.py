"""The run request: what a command line asks of one run, parsed and checked once.

``from_args`` is the one place that reads the argparse namespace of ``run``, ``probe`` and
``slurm-check`` (every one of their parsers declares the same run options, ``add_run_options``);
what it builds travels down typed: the site configuration takes its ``output`` and ``lock_file``,
the plan its selection, the runner its ``force``, the emitter its format. A bad option is a
ConfigError naming it (exit 4) before anything runs.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hpcbench.core import timeparse, trust
from hpcbench.core.errors import ConfigError

Format = Literal["table", "json", "nagios"]


@dataclass(frozen=True)
class RunRequest:
    """One run's options, checked (the suite itself is loaded by the command)."""

    baseline: str | None = None
    output: str | None = None
    lock_file: str | None = None
    format: Format = "table"
    quiet: bool = False
    force: bool = False
    only: str | None = None
    skip: str | None = None
    gpus: str | None = None
    dry_run: bool = False
    deadline_s: float | None = None
    max_age_s: float | None = None
    max_age_text: str = ""
    log_file: Path | None = None
    junit: Path | None = None
    prometheus_dir: Path | None = None

    @property
    def selection(self) -> str:
        """``--only A --skip B`` as given (the record's ``suite.selection``)."""
        return " ".join(f"--{k} {v}" for k, v in (("only", self.only), ("skip", self.skip)) if v)


def parse_duration(text: str, option: str = "--max-age") -> float:
    """A duration option's seconds (hpcbench.core.timeparse's grammar); ConfigError naming the option."""
    try:
        return timeparse.parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"{option} {text!r}: {exc}") from None


def writable_dir(option: str, given: str, folder: Path) -> None:
    where = "" if Path(given) == folder else f" {folder}"
    if not folder.is_dir():
        raise ConfigError(f"{option} {given}: no such folder{where}")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{option} {given}: folder{where} not writable")
    trust.check(folder, f"{option} {given}: folder")


def _file_option(option: str, given: str | None) -> Path | None:
    """A file a report is written to: not a folder, in a writable folder."""
    if not given:
        return None
    if Path(given).is_dir():
        raise ConfigError(f"{option} {given}: is a folder")
    writable_dir(option, given, Path(given).parent)
    if option == "--junit":
        trust.check_target(given, option)
    return Path(given)


def from_args(args: argparse.Namespace) -> RunRequest:
    """The checked request of a parsed ``run``/``probe``/``slurm-check`` command line."""
    if args.prometheus_textfile:
        writable_dir("--prometheus-textfile", args.prometheus_textfile, Path(args.prometheus_textfile))
    return RunRequest(
        baseline=args.baseline,
        output=args.output,
        lock_file=args.lock_file,
        format=args.format,
        quiet=args.quiet,
        force=args.force,
        only=args.only,
        skip=args.skip,
        gpus=args.gpus,
        dry_run=args.dry_run,
        deadline_s=parse_duration(args.deadline, "--deadline") if args.deadline is not None else None,
        max_age_s=parse_duration(args.max_age) if args.max_age is not None else None,
        max_age_text=args.max_age or "",
        log_file=_file_option("--log-file", args.log_file),
        junit=_file_option("--junit", args.junit),
        prometheus_dir=Path(args.prometheus_textfile) if args.prometheus_textfile else None,
    )
