"""The storage probe's pure parts: fio command lines, sizes, mounts, warnings, parameters,
measurements from captured fio output, and the runner's mount expansion."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hpcbench.core.errors import ParamError, ProbeError
from hpcbench.engine.plan import Unrunnable, expand, local_mounts
from hpcbench.engine.runner import _remove_registered
from hpcbench.engine.suite import CheckSpec
from hpcbench.node.inventory import Inventory
from hpcbench.probes.base import CLEANUP_LIST, ProbeContext, build_params, register_cleanup
from hpcbench.probes.storage import fs as sfs
from hpcbench.probes.storage.fio import parse_fio_json
from hpcbench.probes.storage.jobs import PROFILES, engine_check_argv, fill_argv, fio_argv, fio_filename
from hpcbench.probes.storage.probe import (
    ALL_METRICS,
    Storage,
    auto_numjobs,
    metric_names,
    profile_measurements,
)

FIXTURES = Path(__file__).parent / "fixtures" / "fio"
GiB, MiB = 2**30, 2**20


def _opts(argv: list[str]) -> dict[str, str]:
    return dict(a[2:].partition("=")[::2] for a in argv[1:])


# -- command lines -----------------------------------------------------------------


def test_random_profile_argv() -> None:
    argv = fio_argv(PROFILES["randread"], "/mnt/x/f", 4 * GiB, "io_uring", 64, 4, 10, 3)
    assert argv[0] == "fio" and argv[-1] == "--output-format=json"
    o = _opts(argv)
    assert o["rw"] == "randread" and o["bs"] == "4k" and o["direct"] == "1"
    assert o["iodepth"] == "64" and o["numjobs"] == "4" and o["ioengine"] == "io_uring"
    assert o["runtime"] == "10" and o["ramp_time"] == "3" and "time_based" in o
    assert o["size"] == str(4 * GiB) and "group_reporting" in o and "norandommap" in o
    assert o["allow_file_create"] == "0" and "readonly" not in o


def test_mix_and_sequential_regions() -> None:
    o = _opts(fio_argv(PROFILES["randrw"], "/f", GiB, "libaio", 32, 2, 5, 1, rwmixread=70))
    assert o["rw"] == "randrw" and o["rwmixread"] == "70"
    o = _opts(fio_argv(PROFILES["seqwrite"], "/f", GiB, "libaio", 16, 4, 5, 1))
    assert o["rw"] == "write" and o["bs"] == "1M"
    assert o["size"] == o["offset_increment"] == str(GiB // 4)  # each job its own quarter
    o = _opts(fio_argv(PROFILES["seqread"], "/f", GiB + 123, "libaio", 16, 1, 5, 1))
    assert o["size"] == str(GiB) and "offset_increment" not in o
    with pytest.raises(ProbeError, match="sequential regions"):
        fio_argv(PROFILES["seqread"], "/f", 3 * MiB, "libaio", 16, 4, 5, 1)


def test_raw_device_argv_is_read_only() -> None:
    for name in ("randread", "seqread"):
        o = _opts(fio_argv(PROFILES[name], "/dev/nvme0n1", 100 * GiB, "io_uring", 64, 4, 5, 1, raw=True))
        assert "readonly" in o and "allow_file_create" not in o
    o = _opts(engine_check_argv("/dev/nvme0n1", "io_uring", raw=True))
    assert o["rw"] == "read" and "readonly" in o


def test_fill_and_filename_escaping() -> None:
    o = _opts(fill_argv("/a:b/f", GiB, "libaio"))
    assert o["filename"] == "/a\\:b/f" and o["rw"] == "write" and o["size"] == str(GiB)
    assert o["allow_file_create"] == "0"
    assert fio_filename("/plain/path") == "/plain/path"


def test_auto_numjobs() -> None:
    assert [auto_numjobs(n) for n in (1, 2, 3, 4, 64)] == [1, 2, 3, 4, 4]


# -- sizes, mounts, warnings -----------------------------------------------------------


def test_size_choice() -> None:
    big = sfs.choose_size(0, free=500 * GiB, total=1000 * GiB)
    assert big.size == sfs.DEFAULT_SIZE and big.warning is None
    small = sfs.choose_size(0, free=10 * GiB, total=20 * GiB)  # margin 1 GiB
    assert small.size == 4.5 * GiB and "instead of the default" in (small.warning or "")
    assert sfs.choose_size(100 * MiB + 5, free=10 * GiB, total=20 * GiB).size == 100 * MiB
    with pytest.raises(ProbeError, match="not enough free space"):
        sfs.choose_size(10 * GiB, free=10 * GiB, total=20 * GiB)
    with pytest.raises(ProbeError, match="not enough free space"):
        sfs.choose_size(0, free=GiB + 50 * MiB, total=10 * GiB)
    assert sfs.margin(100 * GiB) == 5 * GiB and sfs.margin(GiB) == GiB


MOUNTS = """/dev/nvme0n1p2 / ext4 rw,relatime 0 0
tmpfs /dev/shm tmpfs rw,nosuid 0 0
/dev/nvme1n1 /mnt/scratch xfs rw,noatime 0 0
server:/export /mnt/scratch/nfs nfs4 rw,vers=4.2 0 0
/dev/sda1 /mnt/with\\040space ext4 ro,relatime 0 0
"""


def test_mount_lookup() -> None:
    mounts = sfs.parse_mounts(MOUNTS)
    assert sfs.mount_of("/home/u", mounts).mountpoint == "/"  # type: ignore[union-attr]
    assert sfs.mount_of("/mnt/scratch", mounts).fstype == "xfs"  # type: ignore[union-attr]
    assert sfs.mount_of("/mnt/scratch/a/b", mounts).device == "/dev/nvme1n1"  # type: ignore[union-attr]
    assert sfs.mount_of("/mnt/scratchy", mounts).mountpoint == "/"  # type: ignore[union-attr]
    assert sfs.mount_of("/mnt/scratch/nfs/x", mounts).fstype == "nfs4"  # type: ignore[union-attr]
    spaced = sfs.mount_of("/mnt/with space/d", mounts)
    assert spaced is not None and spaced.read_only and spaced.device == "/dev/sda1"
    assert sfs.mount_of("/x", []) is None


def test_fs_warnings() -> None:
    for fstype in ("tmpfs", "overlay", "nfs", "nfs4", "fuse.sshfs", "lustre", "virtiofs"):
        assert sfs.fs_warning(fstype), fstype
    for fstype in ("ext4", "xfs", "btrfs"):
        assert sfs.fs_warning(fstype) is None


def test_stale_owner_decision() -> None:
    def alive(pid: int) -> int | None:
        return {10: 555}.get(pid)

    assert sfs.is_stale({"host": "h", "pid": 11, "start": 1}, "h", alive)  # gone
    assert sfs.is_stale({"host": "h", "pid": 10, "start": 1}, "h", alive)  # pid reused
    assert not sfs.is_stale({"host": "h", "pid": 10, "start": 555}, "h", alive)  # running
    assert not sfs.is_stale({"host": "other", "pid": 11, "start": 1}, "h", alive)  # not our host
    assert not sfs.is_stale({"host": "h"}, "h", alive)


def test_remove_test_dir_refuses_other_folders(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a storage test folder"):
        sfs.remove_test_dir(tmp_path)
    assert tmp_path.is_dir()


# -- parameters ------------------------------------------------------------------------


def test_params_validation() -> None:
    p = build_params(Storage, {"targets": "/a,/b", "profiles": "randread,seqread"}, from_text=True)
    assert p.targets == ["/a", "/b"] and p.profiles == ["randread", "seqread"]
    with pytest.raises(ParamError, match="raw_device allows read profiles only"):
        build_params(Storage, {"raw_device": True})
    assert build_params(Storage, {"raw_device": True, "profiles": ["randread", "seqread"]}).raw_device
    for bad in (
        {"profiles": ["nope"]},
        {"profiles": []},
        {"runtime_s": 0},
        {"iodepth": 0},
        {"ioengine": "io uring"},
        {"rwmixread": 100},
        {"size_mib": -1},
        {"targets": [""]},
    ):
        with pytest.raises(ParamError):
            build_params(Storage, bad)


def test_metric_names() -> None:
    assert metric_names("randread") == [
        "randread_iops",
        "randread_clat_p50",
        "randread_clat_p99",
        "randread_clat_p999",
    ]
    assert metric_names("seqwrite")[0] == "seqwrite_bw"
    assert len(ALL_METRICS) == len(set(ALL_METRICS)) == 20


# -- measurements from captured fio output --------------------------------------------


def test_measurements_from_captured_runs() -> None:
    runs = [
        parse_fio_json((FIXTURES / f"fio-{v}-io_uring-randread.json").read_text()) for v in ("3.33", "3.42")
    ]
    ms = {m.metric: m for m in profile_measurements(PROFILES["randread"], runs, "/mnt/x", {"k": 1})}
    assert list(ms) == metric_names("randread")
    iops = ms["randread_iops"]
    assert iops.unit == "IOPS" and iops.higher_is_better and iops.statistic == "median"
    assert iops.samples == (runs[0].read.iops, runs[1].read.iops)
    assert iops.value == pytest.approx((runs[0].read.iops + runs[1].read.iops) / 2)
    p99 = ms["randread_clat_p99"]
    assert p99.unit == "us" and not p99.higher_is_better and p99.convention == "fio"
    assert p99.samples == (runs[0].read.clat_us(99.0), runs[1].read.clat_us(99.0))
    assert iops.subject == "/mnt/x" and iops.settings == {"k": 1}

    seq = parse_fio_json((FIXTURES / "fio-2.21-libaio-seqwrite.json").read_text())
    bw = profile_measurements(PROFILES["seqwrite"], [seq], "node", {})[0]
    assert bw.metric == "seqwrite_bw" and bw.unit == "GB/s" and bw.value == seq.write.bw_bytes / 1e9

    mix = parse_fio_json((FIXTURES / "fio-3.1-libaio-randrw.json").read_text())
    got = {m.metric: m.value for m in profile_measurements(PROFILES["randrw"], [mix], "node", {})}
    assert got["randrw_read_iops"] == mix.read.iops and got["randrw_write_iops"] == mix.write.iops
    assert got["randrw_write_clat_p99"] == mix.write.clat_us(99.0)


def _fio_json(version: str, read: dict, write: dict | None = None) -> str:
    """One job's output in fio's JSON layout, with chosen numbers (fields as the captures have them)."""
    idle = {"io_bytes": 0, "bw": 0, "iops": 0.0, "runtime": 0, "total_ios": 0}
    job = {"jobname": "t", "error": 0, "read": read, "write": write or idle, "usr_cpu": 1.0, "sys_cpu": 2.0}
    return json.dumps({"fio version": version, "jobs": [job]})


def test_reported_iops_bandwidth_and_latency_are_fios_in_si_units() -> None:
    """What the user reads, from fio's own numbers: IOPS as fio reports them, GB/s = bytes/s / 1e9,
    latency percentiles in microseconds (fio 3.x reports nanoseconds, fio < 3 microseconds; before
    3.2 bandwidth only in KiB/s), the value the median of the repeats."""
    pct_ns = {"50.000000": 81920, "99.000000": 203776, "99.900000": 362496}
    new = {
        "io_bytes": 25_000_000_000, "io_kbytes": 24_414_062, "bw_bytes": 2_500_000_000, "bw": 2_441_406,
        "iops": 2384.185791, "runtime": 10_000, "total_ios": 23_842,
        "clat_ns": {"min": 1000, "max": 900_000, "mean": 90_000.5, "percentile": pct_ns},
    }  # fmt: skip
    old = {  # fio 2.2.10: io_bytes and bw in KiB, clat in us
        "io_bytes": 24_414_062, "bw": 2_441_406, "iops": 2384.185791, "runtime": 10_000, "total_ios": 23_842,
        "clat": {"min": 1, "max": 900, "mean": 90.0, "percentile": {k: v / 1000 for k, v in pct_ns.items()}},
    }  # fmt: skip
    runs = [parse_fio_json(_fio_json("fio-3.33", new)), parse_fio_json(_fio_json("fio-2.2.10", old))]
    seq = {m.metric: m for m in profile_measurements(PROFILES["seqread"], runs, "node", {})}
    assert seq["seqread_bw"].samples == (2.5, 2_441_406 * 1024 / 1e9)  # 2.5 GB/s; 2.499999744 GB/s
    assert seq["seqread_bw"].value == pytest.approx((2.5 + 2.499999744) / 2, rel=1e-12)
    for suffix, us in (("p50", 81.92), ("p99", 203.776), ("p999", 362.496)):
        m = seq[f"seqread_clat_{suffix}"]
        assert m.samples == pytest.approx((us, us), rel=1e-12) and m.unit == "us" and not m.higher_is_better
    assert runs[1].read.io_bytes == 24_414_062 * 1024 and runs[0].read.io_bytes == 25_000_000_000

    rand = parse_fio_json(_fio_json("fio-3.33", {**new, "iops": 612_345.25}))
    iops = profile_measurements(PROFILES["randread"], [rand], "node", {})[0]
    assert (iops.metric, iops.value, iops.unit) == ("randread_iops", 612_345.25, "IOPS")

    mix = parse_fio_json(_fio_json("fio-3.33", {**new, "iops": 300.5}, {**new, "iops": 100.25}))
    got = {m.metric: m.value for m in profile_measurements(PROFILES["randrw"], [mix], "node", {})}
    assert got["randrw_read_iops"] == 300.5 and got["randrw_write_iops"] == 100.25
    assert got["randrw_read_clat_p99"] == pytest.approx(203.776, rel=1e-12)


def test_missing_percentiles_are_an_error() -> None:
    run = parse_fio_json((FIXTURES / "fio-3.33-io_uring-seqwrite.json").read_text())
    with pytest.raises(ProbeError, match="no p50 completion latency"):
        profile_measurements(PROFILES["seqread"], [run], "node", {})  # a read profile, write-only data


# -- the runner's mount expansion and cleanup list ---------------------------------------


INVENTORY = Inventory.from_dict(
    {
        "storage": {
            "mounts": [
                {"mountpoint": "/", "device": "/dev/vda", "fstype": "ext4", "options": "rw"},
                {"mountpoint": "/etc/hosts", "device": "/dev/vda", "fstype": "ext4", "options": "rw"},
                {"mountpoint": "/mnt/nvme0", "device": "/dev/nvme0n1", "fstype": "xfs", "options": "rw"},
                {
                    "mountpoint": "/boot/efi",
                    "device": "/dev/sda1",
                    "fstype": "vfat",
                    "options": "ro,relatime",
                },
                {"mountpoint": "/snap/core/1", "device": "/dev/loop3", "fstype": "squashfs", "options": "rw"},
                {"mountpoint": "/mnt/nfs", "device": "srv:/x", "fstype": "nfs4", "options": "rw"},
            ]
        }
    }
)


def test_local_mounts_leave_out_ro_loop_bind_and_network() -> None:
    assert local_mounts(INVENTORY) == ["/", "/mnt/nvme0"]


def test_mount_expansion_uses_named_targets_or_local_mounts() -> None:
    check = CheckSpec(id="s", probe="storage", params={"runtime_s": 1}, expand="mount")
    jobs = expand(check, Storage, INVENTORY)
    assert isinstance(jobs, list)
    assert [(j.subject, j.params["targets"], j.params["runtime_s"]) for j in jobs] == [
        ("/", ["/"], 1),
        ("/mnt/nvme0", ["/mnt/nvme0"], 1),
    ]
    named = CheckSpec(id="s", probe="storage", params={"targets": ["/a", "/b"]}, expand="mount")
    jobs = expand(named, Storage, INVENTORY)
    assert isinstance(jobs, list)
    assert [(j.subject, j.params["targets"]) for j in jobs] == [("/a", ["/a"]), ("/b", ["/b"])]
    assert expand(check, Storage, Inventory.from_dict({"storage": {"mounts": []}})) == Unrunnable(
        "skip", "no local block-device mounts on this node"
    )


def test_registered_folders_are_removed(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    left = tmp_path / ".hpcbench-storage-x"
    (left / "sub").mkdir(parents=True)
    (left / "sub" / "f").write_bytes(b"x")
    keep = tmp_path / "keep"
    keep.write_text("not a folder: never removed")
    register_cleanup(ProbeContext(workdir=str(scratch)), left)
    register_cleanup(ProbeContext(workdir=str(scratch)), keep)
    register_cleanup(ProbeContext(workdir=""), tmp_path)  # no workdir: nothing registered
    assert (scratch / CLEANUP_LIST).read_text().splitlines() == [str(left), str(keep)]
    _remove_registered(scratch / CLEANUP_LIST)
    assert not left.exists() and keep.read_text().startswith("not a folder")
    _remove_registered(tmp_path / "absent.list")  # no list: nothing to do


def test_stale_test_dirs_found_only_with_our_dead_owner(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    stale = tmp_path / f"{sfs.TEST_DIR_PREFIX}stale"
    stale.mkdir()
    (stale / sfs.OWNER_FILE).write_text(
        json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout), "start": 1})
    )
    unowned = tmp_path / f"{sfs.TEST_DIR_PREFIX}unowned"  # no owner file: not provably ours
    unowned.mkdir()
    live = sfs.make_test_dir(str(tmp_path))  # this process: alive
    assert json.loads((live / sfs.OWNER_FILE).read_text())["pid"] == os.getpid()
    assert sfs.stale_test_dirs(str(tmp_path)) == [stale]
