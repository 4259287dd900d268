"""fio job profiles, their command lines, and running fio (argv lists with timeouts).

The command lines are pure functions of the profile and the target; ``run_fio`` runs one
job and turns every failure (non-zero exit, a timeout, unreadable output, an error fio
reports in its JSON) into a ProbeError carrying fio's stderr.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hpcbench.core.errors import ProbeError

if TYPE_CHECKING:  # imported where used: `hpcbench list` imports this module for its constants
    from hpcbench.probes.storage.fio import FioRun


@dataclass(frozen=True)
class Profile:
    name: str
    rw: str  # fio's rw=
    bs: str
    random: bool
    reads: bool
    writes: bool


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("randread", "randread", "4k", True, True, False),
        Profile("randwrite", "randwrite", "4k", True, False, True),
        Profile("seqread", "read", "1M", False, True, False),
        Profile("seqwrite", "write", "1M", False, False, True),
        Profile("randrw", "randrw", "4k", True, True, True),
    )
}
ENGINES_AUTO: tuple[str, ...] = ("io_uring", "libaio")
#: seconds a fio run may take beyond its ramp and runtime before it is killed
FIO_SLACK_S = 60.0
#: slowest fill rate assumed for the fill's timeout (bytes/s)
FILL_MIN_RATE = 20e6
FILL_IODEPTH = 16
ENGINE_CHECK_BYTES = 64 * 1024
#: fio's jobs as threads of the fio process, not forked processes: fio puts each forked job in a
#: session of its own, so killing fio (or the probe's process group) would leave the jobs running
THREADS = "--thread"


def fio_filename(path: str) -> str:
    """fio separates file names with ':'; a colon inside a path is escaped."""
    return path.replace(":", "\\:")


def fio_argv(
    profile: Profile,
    filename: str,
    size: int,
    engine: str,
    iodepth: int,
    numjobs: int,
    runtime_s: int,
    ramp_s: int,
    rwmixread: int = 70,
    raw: bool = False,
) -> list[str]:
    """The fio command line of one profile on one file or device (``size`` bytes of it)."""
    argv = [
        "fio",
        THREADS,
        f"--name={profile.name}",
        f"--filename={fio_filename(filename)}",
        f"--ioengine={engine}",
        "--direct=1",
        f"--rw={profile.rw}",
        f"--bs={profile.bs}",
        f"--iodepth={iodepth}",
        f"--numjobs={numjobs}",
        "--group_reporting",
        "--time_based",
        f"--runtime={runtime_s}",
        f"--ramp_time={ramp_s}",
    ]
    if profile.random:
        argv += [f"--size={size}", "--norandommap", "--randrepeat=0"]
    else:  # each sequential job streams through a region of its own
        region = size // numjobs // 2**20 * 2**20
        if region < 2**20:
            raise ProbeError(
                f"{size} bytes cannot be split into {numjobs} sequential regions of 1 MiB or more"
            )
        argv += [f"--size={region}"] + ([f"--offset_increment={region}"] if numjobs > 1 else [])
    if profile.rw == "randrw":
        argv.append(f"--rwmixread={rwmixread}")
    argv += ["--readonly"] if raw else ["--allow_file_create=0"]
    return [*argv, "--output-format=json"]


def fill_argv(filename: str, size: int, engine: str) -> list[str]:
    """Write the whole test file once (random data), so reads hit allocated blocks."""
    return [
        "fio",
        THREADS,
        "--name=fill",
        f"--filename={fio_filename(filename)}",
        f"--ioengine={engine}",
        "--direct=1",
        "--rw=write",
        "--bs=1M",
        f"--iodepth={FILL_IODEPTH}",
        f"--size={size}",
        "--allow_file_create=0",
        "--output-format=json",
    ]


def engine_check_argv(filename: str, engine: str, raw: bool) -> list[str]:
    """A tiny job that only succeeds where ``engine`` works with direct I/O on this target."""
    return [
        "fio",
        THREADS,
        "--name=engine-check",
        f"--filename={fio_filename(filename)}",
        f"--ioengine={engine}",
        "--direct=1",
        f"--rw={'read' if raw else 'write'}",
        "--bs=4k",
        f"--size={ENGINE_CHECK_BYTES}",
        *(["--readonly"] if raw else ["--allow_file_create=0"]),
        "--output-format=json",
    ]


# ---------------------------------------------------------------------------
# Running fio.


def run_fio(argv: list[str], timeout: float, what: str) -> FioRun:
    """Run one fio job; ProbeError with fio's stderr when it fails, times out or reports an error."""
    import subprocess

    from hpcbench.probes.storage.fio import FioOutputError, parse_fio_json, stderr_reason

    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ProbeError(f"fio {what} did not finish within {timeout:.0f} s and was killed") from None
    except OSError as exc:
        raise ProbeError(f"cannot run fio: {exc}", hint="apt-get install fio") from None
    if proc.returncode != 0:
        raise ProbeError(
            f"fio {what} failed (exit {proc.returncode}): {stderr_reason(proc.stderr) or 'no stderr'}"
        )
    try:
        result = parse_fio_json(proc.stdout)
    except FioOutputError as exc:
        raise ProbeError(f"fio {what}: {exc}; stderr: {stderr_reason(proc.stderr) or 'none'}") from None
    if result.error:
        raise ProbeError(
            f"fio {what} reported error {result.error} ({os.strerror(result.error)}): "
            f"{stderr_reason(proc.stderr) or 'no stderr'}"
        )
    return result


def fio_version(timeout: float = 30.0) -> str:
    import subprocess

    try:
        out = subprocess.run(
            ["fio", "--version"], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProbeError(f"cannot run fio --version: {exc}", hint="apt-get install fio") from None
    return out.stdout.strip()


def choose_engine(filename: str, requested: str, raw: bool) -> tuple[str, str]:
    """The ioengine to use and how it was chosen (tried with a tiny direct-I/O job)."""
    candidates = ENGINES_AUTO if requested == "auto" else (requested,)
    failures = []
    for engine in candidates:
        try:
            run_fio(engine_check_argv(filename, engine, raw), FIO_SLACK_S, f"engine check ({engine})")
        except ProbeError as exc:
            failures.append(str(exc))
            continue
        how = "requested" if requested != "auto" else "auto: first of io_uring, libaio that works"
        if failures:
            how += f" ({'; '.join(failures)})"
        return engine, how
    raise ProbeError("; ".join(failures), hint="install fio with io_uring or libaio support, or set ioengine")
