"""Storage: IOPS, bandwidth and completion latency of a directory's device, through fio.

Five job profiles (4k random read, 4k random write, 1M sequential read, 1M sequential
write, 4k 70/30 random read/write), each with direct I/O, time-based with a ramp, on a
test file in a fresh folder inside the target; io_uring where it works, libaio otherwise
(tried with a tiny fio job first, and recorded). fio's JSON gives IOPS, bandwidth (GB/s =
1e9 B/s) and the completion-latency (clat) percentiles p50, p99 and p99.9 (us).

Safety: the test folder is new (mkdtemp) and removed on success, failure, timeout,
SIGTERM and SIGINT (and listed for the runner, which removes it should the child be
killed outright); no existing file is opened for writing; free space must cover the test
file plus a margin; a file system that refuses O_DIRECT is reported, not measured; raw
block devices only with ``raw_device = true`` and only read profiles (fio ``--readonly``).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from hpcbench.core.errors import ProbeError
from hpcbench.probes.base import ProbeContext, Requirement, check, register_cleanup
from hpcbench.probes.storage.jobs import (
    FILL_MIN_RATE,
    FIO_SLACK_S,
    PROFILES,
    Profile,
    choose_engine,
    fill_argv,
    fio_argv,
    fio_version,
    run_fio,
)

if TYPE_CHECKING:  # imported where used: `hpcbench list` reads only the header and Params
    from hpcbench.core.measurement import Measurement
    from hpcbench.probes.storage.fio import FioRun

LATENCY_SUFFIX = {50.0: "p50", 99.0: "p99", 99.9: "p999"}
MAX_AUTO_NUMJOBS = 4


def auto_numjobs(cpus: int) -> int:
    return max(1, min(MAX_AUTO_NUMJOBS, cpus))


def metric_names(profile: str) -> list[str]:
    """The metrics a profile reports, in order."""
    p = PROFILES[profile]
    if p.name == "randrw":
        return ["randrw_read_iops", "randrw_write_iops", "randrw_read_clat_p99", "randrw_write_clat_p99"]
    head = f"{p.name}_iops" if p.random else f"{p.name}_bw"
    return [head, *(f"{p.name}_clat_{s}" for s in LATENCY_SUFFIX.values())]


ALL_METRICS: tuple[str, ...] = tuple(m for name in PROFILES for m in metric_names(name))


@dataclass(frozen=True)
class StorageParams:
    targets: list[str] = field(
        default_factory=list,
        metadata={
            "help": "directories to test (with expand=mount: one subject each; empty: the local "
            "block-device mounts); empty without expansion: the current directory"
        },
    )
    profiles: list[str] = field(
        default_factory=lambda: list(PROFILES),
        metadata={"help": f"job profiles, in order: {', '.join(PROFILES)}"},
    )
    size_mib: int = field(
        default=0, metadata={"help": "test file size in MiB; 0 = 16 GiB, less on a small disk (warned)"}
    )
    runtime_s: int = field(default=10, metadata={"help": "seconds measured per profile and repeat"})
    ramp_s: int = field(default=3, metadata={"help": "seconds run before measuring (fio ramp_time)"})
    repeats: int = field(default=3, metadata={"help": "fio runs per profile; the value is their median"})
    iodepth: int = field(default=64, metadata={"help": "queue depth per job of the random profiles"})
    numjobs: int = field(
        default=0, metadata={"help": f"jobs of the random profiles; 0 = CPUs, at most {MAX_AUTO_NUMJOBS}"}
    )
    seq_iodepth: int = field(default=16, metadata={"help": "queue depth per job of the sequential profiles"})
    seq_numjobs: int = field(
        default=1, metadata={"help": "jobs of the sequential profiles (each its own region)"}
    )
    rwmixread: int = field(default=70, metadata={"help": "percent reads of the randrw profile"})
    ioengine: str = field(default="auto", metadata={"help": "fio ioengine; auto = io_uring, else libaio"})
    raw_device: bool = field(
        default=False, metadata={"help": "targets are block devices, read profiles only (fio --readonly)"}
    )

    def __post_init__(self) -> None:
        n = "storage"
        check(all(isinstance(t, str) and t.strip() for t in self.targets), n, "targets", "empty target")
        check(bool(self.profiles), n, "profiles", "expected at least one profile")
        for p in self.profiles:
            check(p in PROFILES, n, "profiles", f"unknown profile {p!r}; known: {', '.join(PROFILES)}")
        check(len(set(self.profiles)) == len(self.profiles), n, "profiles", "a profile is listed twice")
        check(self.size_mib >= 0, n, "size_mib", f"must be >= 0 (0 = auto), got {self.size_mib}")
        check(1 <= self.runtime_s <= 3600, n, "runtime_s", f"must be 1..3600, got {self.runtime_s}")
        check(0 <= self.ramp_s <= 600, n, "ramp_s", f"must be 0..600, got {self.ramp_s}")
        check(1 <= self.repeats <= 100, n, "repeats", f"must be 1..100, got {self.repeats}")
        for key in ("iodepth", "seq_iodepth"):
            v = getattr(self, key)
            check(1 <= v <= 4096, n, key, f"must be 1..4096, got {v}")
        check(0 <= self.numjobs <= 256, n, "numjobs", f"must be 0..256 (0 = auto), got {self.numjobs}")
        check(1 <= self.seq_numjobs <= 256, n, "seq_numjobs", f"must be 1..256, got {self.seq_numjobs}")
        check(1 <= self.rwmixread <= 99, n, "rwmixread", f"must be 1..99, got {self.rwmixread}")
        check(
            self.ioengine.replace("_", "").isalnum() and self.ioengine.islower(),
            n,
            "ioengine",
            f"expected 'auto' or a fio engine name such as io_uring, libaio, psync; got {self.ioengine!r}",
        )
        if self.raw_device:
            writes = [p for p in self.profiles if PROFILES[p].writes]
            check(
                not writes,
                n,
                "profiles",
                f"raw_device allows read profiles only (randread, seqread); remove {', '.join(writes)}",
            )


def profile_measurements(
    profile: Profile,
    runs: list[FioRun],
    subject: str,
    settings: dict[str, Any],
    warnings: tuple[str, ...] = (),
) -> list[Measurement]:
    """The profile's metrics from its repeats: the median of the runs, every run a sample."""
    from hpcbench.core.measurement import Measurement

    def lat(direction: str, p: float) -> list[float]:
        values = [getattr(r, direction).clat_us(p) for r in runs]
        if any(v is None for v in values):
            raise ProbeError(f"fio reported no p{p:g} completion latency for {profile.name} {direction}s")
        return [float(v) for v in values if v is not None]

    def make(metric: str, samples: list[float], unit: str, higher: bool) -> Measurement:
        return Measurement.from_samples(
            metric,
            samples,
            unit,
            subject,
            higher_is_better=higher,
            statistic="median",
            convention="fio",
            settings=settings,
            warnings=warnings,  # a tmpfs or a small file: said as a hint
        )

    out = []
    if profile.name == "randrw":
        out.append(make("randrw_read_iops", [r.read.iops for r in runs], "IOPS", True))
        out.append(make("randrw_write_iops", [r.write.iops for r in runs], "IOPS", True))
        out.append(make("randrw_read_clat_p99", lat("read", 99.0), "us", False))
        out.append(make("randrw_write_clat_p99", lat("write", 99.0), "us", False))
        return out
    direction = "read" if profile.reads else "write"
    sides = [getattr(r, direction) for r in runs]
    if profile.random:
        out.append(make(f"{profile.name}_iops", [s.iops for s in sides], "IOPS", True))
    else:
        out.append(make(f"{profile.name}_bw", [s.bw_bytes / 1e9 for s in sides], "GB/s", True))
    for p, suffix in LATENCY_SUFFIX.items():
        out.append(make(f"{profile.name}_clat_{suffix}", lat(direction, p), "us", False))
    return out


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGINT raise ProbeError (so ``finally`` blocks remove the test folder)."""
    import signal

    def handler(signum: int, _frame: object) -> None:
        raise ProbeError(f"interrupted by {signal.Signals(signum).name}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Hold SIGTERM/SIGINT back (e.g. while creating or removing the test folder)."""
    import signal

    mask = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, mask)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, mask)


# ---------------------------------------------------------------------------
# The probe.


@dataclass(frozen=True)
class Target:
    """A file (or raw device) ready to measure: its path, size, and what is known about it."""

    path: str
    filename: str
    size: int
    settings: dict[str, Any]
    #: what the operator should know of the target (a tmpfs, a file smaller than asked)
    warnings: tuple[str, ...] = ()


class Storage:
    """fio's IOPS, bandwidth and clat percentiles of a directory's (or a raw device's) storage."""

    name: ClassVar[str] = "storage"
    description: ClassVar[str] = (
        "Storage IOPS, bandwidth (GB/s) and completion latency (us) through fio: 4k random read/write, "
        "1M sequential read/write, 70/30 random mix; direct I/O"
    )
    Params: ClassVar[type] = StorageParams
    requires: ClassVar[tuple[Requirement, ...]] = (
        Requirement("binary", "fio", install="apt-get install fio"),
    )
    expands: ClassVar[dict[str, str]] = {"mount": "targets"}
    metrics: ClassVar[tuple[str, ...]] = ALL_METRICS

    def run(self, params: StorageParams, ctx: ProbeContext) -> list[Measurement]:
        targets = params.targets or ["."]
        if len(targets) > 1:
            raise ProbeError(
                f"{len(targets)} targets in one check: measure each as its own subject with "
                'expand = "mount" in the suite (hpcbench probe storage --expand mount -p targets=A,B)'
            )
        with stop_on_signals():
            if params.raw_device:
                return self._raw(params, ctx, targets[0])
            return self._directory(params, ctx, targets[0])

    # -- targets -----------------------------------------------------------------
    def _raw(self, params: StorageParams, ctx: ProbeContext, target: str) -> list[Measurement]:
        from hpcbench.probes.storage import fs as sfs  # here: `hpcbench list` imports only the header

        path = os.path.realpath(target)
        if not sfs.is_block_device(path):
            raise ProbeError(f"{target} is not a block device (raw_device = true takes block devices only)")
        try:
            refusal = sfs.direct_io_refusal(path, read_only=True)
            dev_size = sfs.device_size(path)
        except OSError as exc:
            raise ProbeError(f"cannot read {target}: {exc.strerror or exc}") from None
        if refusal:
            raise ProbeError(f"{target} refuses direct I/O (O_DIRECT: {refusal}); nothing measured")
        size = min(params.size_mib * sfs.MiB, dev_size) if params.size_mib else dev_size
        settings = {"target": target, "path": path, "device": path, "fstype": "", "raw_device": True}
        settings |= {"device_size_bytes": dev_size, "warnings": []}
        engine, how = choose_engine(path, params.ioengine, raw=True)
        return measure_profiles(params, Target(path, path, size, settings), engine, how, ctx.subject)

    def _directory(self, params: StorageParams, ctx: ProbeContext, target: str) -> list[Measurement]:
        from hpcbench.probes.storage import fs as sfs

        path = os.path.realpath(target)
        if sfs.is_block_device(path):
            raise ProbeError(
                f"{target} is a block device: raw devices are measured only with raw_device = true "
                "(read profiles only)"
            )
        if not os.path.isdir(path):
            raise ProbeError(
                f"target {target} is not a directory"
                if os.path.exists(path)
                else f"target {target} does not exist"
            )
        try:
            mounts = sfs.parse_mounts(Path("/proc/self/mounts").read_text())
        except OSError:
            mounts = []
        mount = sfs.mount_of(path, mounts) or sfs.MountEntry("", "", "unknown", "")
        if mount.read_only:
            raise ProbeError(f"{target} is on a read-only mount ({mount.mountpoint}, {mount.fstype})")
        warnings = [w for w in (sfs.fs_warning(mount.fstype),) if w]
        for stale in sfs.stale_test_dirs(path):
            with signals_blocked():
                sfs.remove_test_dir(stale)
            warnings.append(f"removed {stale}, a test folder left by an hpcbench run that is gone")
        settings: dict[str, Any] = {
            "target": target,
            "path": path,
            "mountpoint": mount.mountpoint,
            "device": mount.device,
            "fstype": mount.fstype,
            "mount_options": mount.options,
            "raw_device": False,
            "size_auto": params.size_mib == 0,
            "warnings": warnings,
        }
        with signals_blocked():
            try:
                test_dir = sfs.make_test_dir(path)
            except OSError as exc:
                raise ProbeError(f"cannot create a test folder in {target}: {exc.strerror or exc}") from None
            register_cleanup(ctx, test_dir)
        try:
            filename = str(test_dir / "fio-test.dat")
            settings["test_dir"] = str(test_dir)
            try:
                refusal = sfs.direct_io_refusal(filename)
            except OSError as exc:
                raise ProbeError(f"cannot write a test file in {target}: {exc.strerror or exc}") from None
            if refusal:
                raise ProbeError(
                    f"the {mount.fstype} file system at {mount.mountpoint or path} refuses direct I/O "
                    f"(O_DIRECT: {refusal}); nothing measured rather than the page cache",
                    hint="point the probe at a directory on a file system that supports O_DIRECT",
                )
            free, total = sfs.free_and_total(path)
            choice = sfs.choose_size(params.size_mib * sfs.MiB, free, total)
            if choice.warning:
                warnings.append(choice.warning)
            settings |= {"free_bytes_before": free, "fs_size_bytes": total}
            try:  # full size now: fio would delete and re-create a shorter file
                os.truncate(filename, choice.size)
            except OSError as exc:
                raise ProbeError(f"cannot size the test file in {target}: {exc.strerror or exc}") from None
            engine, how = choose_engine(filename, params.ioengine, raw=False)
            fill = fill_argv(filename, choice.size, engine)
            started = time.monotonic()
            filled = run_fio(fill, max(120.0, choice.size / FILL_MIN_RATE), "filling the test file")
            settings["fill"] = {
                "fio_argv": fill,
                "seconds": round(time.monotonic() - started, 3),
                "bw_bytes": filled.write.bw_bytes,
            }
            return measure_profiles(
                params,
                Target(path, filename, choice.size, settings, tuple(warnings)),
                engine,
                how,
                ctx.subject,
            )
        finally:
            with signals_blocked():
                sfs.remove_test_dir(test_dir)


def measure_profiles(
    params: StorageParams, t: Target, engine: str, how: str, subject: str
) -> list[Measurement]:
    """Run the profiles of ``params`` on a prepared target: ``repeats`` fio runs each."""
    numjobs = params.numjobs or auto_numjobs(len(os.sched_getaffinity(0)))
    common = {
        **t.settings,
        "file_size_bytes": t.size,
        "ioengine": engine,
        "ioengine_choice": how,
        "fio_version": fio_version(),
        "direct": True,
        "runtime_s": params.runtime_s,
        "ramp_s": params.ramp_s,
        "repeats": params.repeats,
    }
    out: list[Measurement] = []
    for name in params.profiles:
        profile = PROFILES[name]
        depth, jobs = (
            (params.iodepth, numjobs) if profile.random else (params.seq_iodepth, params.seq_numjobs)
        )
        argv = fio_argv(
            profile,
            t.filename,
            t.size,
            engine,
            depth,
            jobs,
            params.runtime_s,
            params.ramp_s,
            params.rwmixread,
            params.raw_device,
        )
        timeout = params.runtime_s + params.ramp_s + FIO_SLACK_S
        runs = [run_fio(argv, timeout, name) for _ in range(params.repeats)]
        settings = {
            **common,
            "profile": name,
            "rw": profile.rw,
            "bs": profile.bs,
            "iodepth": depth,
            "numjobs": jobs,
            "fio_argv": argv,
            "runs": [r.as_dict() for r in runs],
        }
        if name == "randrw":
            settings["rwmixread"] = params.rwmixread
        out += profile_measurements(profile, runs, subject, settings, t.warnings)
    return out
