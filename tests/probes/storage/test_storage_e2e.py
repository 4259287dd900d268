"""The storage probe end to end through the installed CLI, with real fio on small files.

Every test checks that the probe's test folder is gone afterwards, however the run ended:
success, fio failing, a refused file system, the check's timeout, SIGTERM, SIGINT, and the
probe's child killed outright (then the runner removes what the probe registered).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import Cli, marked_processes, no_marked_processes, wait_for, write
from support.required import need, unavailable

from hpcbench.core.exitcodes import ExitCode
from hpcbench.probes.storage import fs as sfs
from hpcbench.probes.storage.probe import ALL_METRICS

SMALL = ["-p", "size_mib=16", "-p", "runtime_s=1", "-p", "ramp_s=0", "-p", "repeats=1"]
LONG = [
    "-p",
    "size_mib=16",
    "-p",
    "runtime_s=120",
    "-p",
    "ramp_s=0",
    "-p",
    "repeats=1",
    "-p",
    "profiles=randread",
]


def fio_measuring(mark: str, profile: str = "randread") -> bool:
    for p in marked_processes(mark):
        with contextlib.suppress(psutil.Error):
            if p.name() == "fio" and f"--name={profile}" in p.cmdline():
                return True
    return False


def leftover_dirs(target: Path) -> list[Path]:
    return sorted(target.glob(f"{sfs.TEST_DIR_PREFIX}*"))


def probe_json(cli: Cli, *args: str, timeout: float = 300) -> tuple[int, dict[str, Any], str]:
    r = cli("probe", "storage", *args, "--format", "json", timeout=timeout)
    return r.returncode, (json.loads(r.stdout) if r.stdout.strip() else {}), r.stderr


@pytest.fixture(autouse=True)
def _fio(request: pytest.FixtureRequest) -> None:
    """Every test here runs real fio, but the one that hides it on purpose."""
    if request.node.name != "test_fio_missing_is_unknown_with_the_install_hint":
        need("fio", "apt-get install -y fio / dnf install -y fio")


@pytest.fixture()
def target(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@contextlib.contextmanager
def mounted(where: Path, fstype: str, options: str = "") -> Iterator[Path]:
    """A real file system of ``fstype`` mounted at ``where`` (needs root and the mount command:
    skipped elsewhere, a failure with HPCBENCH_REQUIRE_SERVICES=1)."""
    where.mkdir()
    argv = ["mount", "-t", fstype, *(["-o", options] if options else []), fstype, str(where)]
    if shutil.which("mount") is None:
        unavailable("no mount command here (apt-get install mount / dnf install util-linux)")
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        unavailable(
            f"cannot mount {fstype} here ({r.stderr.strip()}): "
            "run the tests as root (in a container: with CAP_SYS_ADMIN)"
        )
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], capture_output=True, timeout=60)


def test_measures_every_profile_and_leaves_the_target_as_it_was(cli: Cli, target: Path) -> None:
    (target / "precious.dat").write_bytes(b"existing data")
    foreign = target / f"{sfs.TEST_DIR_PREFIX}foreign"  # no owner file: not provably ours
    foreign.mkdir()
    before = sorted(p.name for p in target.iterdir())
    code, rec, err = probe_json(cli, "-p", f"targets={target}", *SMALL, "-p", "repeats=2")
    assert code == ExitCode.OK, err
    check = rec["checks"][0]
    assert check["status"] == "ok", check["reason"]
    ms = {m["metric"]: m for m in check["measurements"]}
    assert list(ms) == list(ALL_METRICS)
    for m in ms.values():
        assert len(m["samples"]) == 2 and m["value"] > 0 and m["convention"] == "fio"
    assert ms["randread_iops"]["unit"] == "IOPS" and ms["seqread_bw"]["unit"] == "GB/s"
    assert ms["randwrite_clat_p99"]["unit"] == "us" and not ms["randwrite_clat_p99"]["higher_is_better"]
    s = ms["randread_iops"]["settings"]
    assert s["path"] == str(target) and s["file_size_bytes"] == 16 * 2**20
    assert s["ioengine"] in ("io_uring", "libaio") and s["ioengine_choice"].startswith("auto")
    assert s["fio_version"].startswith("fio-") and s["direct"] is True
    mount = sfs.mount_of(str(target), sfs.parse_mounts(Path("/proc/self/mounts").read_text()))
    assert mount is not None and s["fstype"] == mount.fstype and s["mountpoint"] == mount.mountpoint
    argv = s["fio_argv"]
    assert argv[0] == "fio" and "--rw=randread" in argv and "--direct=1" in argv
    assert f"--filename={s['test_dir']}/fio-test.dat" in argv and s["test_dir"].startswith(str(target))
    assert ms["seqwrite_bw"]["settings"]["fio_argv"] != argv
    assert "--name=fill" in s["fill"]["fio_argv"] and s["fill"]["bw_bytes"] > 0
    assert "--thread" in argv and "--thread" in s["fill"]["fio_argv"]  # killing fio kills its jobs
    run = s["runs"][0]
    assert run["read"]["iops"] == ms["randread_iops"]["samples"][0]
    # nothing left, nothing existing touched
    assert sorted(p.name for p in target.iterdir()) == before
    assert (target / "precious.dat").read_bytes() == b"existing data"


def test_mount_expansion_over_named_targets(cli: Cli, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    code, rec, err = probe_json(
        cli, "--expand", "mount", "-p", f"targets={a},{b}", *SMALL, "-p", "profiles=randread"
    )
    assert code == ExitCode.OK, err
    assert [(c["subject"], c["status"], c["params"]["targets"]) for c in rec["checks"]] == [
        (str(a), "ok", [str(a)]),
        (str(b), "ok", [str(b)]),
    ]
    assert rec["checks"][1]["measurements"][0]["settings"]["path"] == str(b)
    assert leftover_dirs(a) == leftover_dirs(b) == []


def test_several_targets_without_expansion_are_refused(cli: Cli, tmp_path: Path) -> None:
    code, rec, _ = probe_json(cli, "-p", f"targets={tmp_path},{tmp_path}", *SMALL)
    assert code == ExitCode.UNKNOWN
    assert "--expand mount" in rec["checks"][0]["reason"]


def test_stale_folder_of_a_dead_run_is_removed_and_reported(cli: Cli, target: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, timeout=60
    )
    stale = target / f"{sfs.TEST_DIR_PREFIX}old"
    stale.mkdir()
    (stale / "fio-test.dat").write_bytes(b"x" * 4096)
    owner = {"host": socket.gethostname(), "pid": int(dead.stdout), "start": 12345}
    (stale / sfs.OWNER_FILE).write_text(json.dumps(owner))
    code, rec, err = probe_json(cli, "-p", f"targets={target}", *SMALL, "-p", "profiles=randread")
    assert code == ExitCode.OK, err
    measured = rec["checks"][0]["measurements"][0]
    warnings = measured["settings"]["warnings"]
    assert any(str(stale) in w and "left by an hpcbench run" in w for w in warnings)
    assert measured["warnings"] == warnings  # the typed field, which the hints read
    assert leftover_dirs(target) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_measurement_removes_the_test_folder(cli: Cli, target: Path, sig: signal.Signals) -> None:
    proc = cli.popen("probe", "storage", "-p", f"targets={target}", *LONG, "--format", "json")
    try:
        wait_for(lambda: fio_measuring(cli.mark))
        assert len(leftover_dirs(target)) == 1
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == ExitCode.UNKNOWN, err
    rec = json.loads(out)
    assert rec["interrupted"] == sig.name and rec["checks"][0]["status"] == "interrupted"
    assert leftover_dirs(target) == []
    no_marked_processes(cli.mark, timeout=15)  # no fio left running


def test_timeout_kills_fio_and_removes_the_test_folder(cli: Cli, target: Path) -> None:
    code, rec, err = probe_json(cli, "-p", f"targets={target}", *LONG, "--timeout", "8")
    assert code == ExitCode.UNKNOWN, err
    check = rec["checks"][0]
    assert check["status"] == "error" and "timed out after 8 s" in check["reason"]
    assert leftover_dirs(target) == []
    no_marked_processes(cli.mark, timeout=15)


def test_probe_killed_outright_the_runner_removes_the_registered_folder(cli: Cli, target: Path) -> None:
    proc = cli.popen("probe", "storage", "-p", f"targets={target}", *LONG, "--format", "json")
    try:
        wait_for(lambda: fio_measuring(cli.mark))
        workers = [p for p in marked_processes(cli.mark) if "hpcbench.engine.child" in " ".join(p.cmdline())]
        assert len(workers) == 1 and len(leftover_dirs(target)) == 1
        workers[0].send_signal(signal.SIGKILL)  # no handler runs: the probe cannot clean up
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == ExitCode.UNKNOWN, err
    assert "killed by SIGKILL" in json.loads(out)["checks"][0]["reason"]
    assert leftover_dirs(target) == []
    no_marked_processes(cli.mark, timeout=15)


def test_fio_missing_is_unknown_with_the_install_hint(cli: Cli, target: Path) -> None:
    cli.env["PATH"] = str(target)  # a PATH without fio
    code, rec, _ = probe_json(cli, "-p", f"targets={target}", *SMALL)
    assert code == ExitCode.UNKNOWN
    check = rec["checks"][0]
    assert check["verdict"] == "ERROR" and "fio not found" in check["reason"]
    assert check["hint"] == "apt-get install fio"
    r = cli("probe", "storage", "-p", f"targets={target}", *SMALL)
    assert "apt-get install fio" in r.stdout


def test_fio_failing_gives_its_stderr(cli: Cli, target: Path) -> None:
    code, rec, _ = probe_json(cli, "-p", f"targets={target}", *SMALL, "-p", "ioengine=sg")
    assert code == ExitCode.UNKNOWN
    reason = rec["checks"][0]["reason"]
    assert "fio engine check (sg) failed" in reason and "block or character devices" in reason
    assert rec["checks"][0]["measurements"] == [] and leftover_dirs(target) == []


def test_not_enough_free_space_is_refused_before_writing(cli: Cli, target: Path) -> None:
    code, rec, _ = probe_json(cli, "-p", f"targets={target}", *SMALL, "-p", "size_mib=1000000000")
    assert code == ExitCode.UNKNOWN
    assert "not enough free space" in rec["checks"][0]["reason"]
    assert list(target.iterdir()) == []


def test_bad_targets(cli: Cli, tmp_path: Path) -> None:
    code, rec, _ = probe_json(cli, "-p", f"targets={tmp_path / 'absent'}", *SMALL)
    assert code == ExitCode.UNKNOWN and "does not exist" in rec["checks"][0]["reason"]
    r = cli("probe", "storage", "-p", "raw_device=true", "-p", "profiles=randread,randwrite")
    assert r.returncode == ExitCode.USAGE and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "raw_device allows read profiles only" in r.stderr


def test_file_system_refusing_direct_io_measures_nothing(cli: Cli, tmp_path: Path) -> None:
    with mounted(tmp_path / "ramfs", "ramfs") as where:
        code, rec, _ = probe_json(cli, "-p", f"targets={where}", *SMALL)
        check = rec["checks"][0]
        assert code == ExitCode.UNKNOWN and check["verdict"] == "ERROR"
        assert "ramfs file system" in check["reason"] and "refuses direct I/O" in check["reason"]
        assert check["measurements"] == [] and list(where.iterdir()) == []


def _takes_direct_io(folder: Path) -> bool:
    path = str(folder / "odirect-check")
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_DIRECT, 0o600))
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
    return True


def test_tmpfs_is_measured_with_a_warning_in_the_record_and_the_hint(cli: Cli, tmp_path: Path) -> None:
    with mounted(tmp_path / "tmpfs", "tmpfs", "size=2g") as where:
        suite = write(
            tmp_path / "s.toml",
            f"""name = "s"
[[check]]
id = "disk"
probe = "storage"
params = {{ targets = ["{where}"], size_mib = 16, runtime_s = 1, ramp_s = 0, repeats = 1, \
profiles = ["randread"] }}
metrics = ["randread_iops"]
absolute = {{ randread_iops = {{ warn = 1e15 }} }}
""",
        )
        r = cli("run", str(suite), "--format", "json")
        check = json.loads(r.stdout)["checks"][0]
        if not _takes_direct_io(where):  # tmpfs before Linux 6.6 refuses O_DIRECT
            assert "refuses direct I/O" in check["reason"]
            return
        assert r.returncode == ExitCode.WARN, r.stderr
        warnings = check["measurements"][0]["settings"]["warnings"]
        assert check["measurements"][0]["settings"]["fstype"] == "tmpfs"
        assert any("tmpfs keeps files in memory" in w for w in warnings)
        assert "tmpfs keeps files in memory" in check["evaluations"][0]["hint"]
        assert list(where.iterdir()) == []


@pytest.fixture()
def loop_device(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    backing = tmp_path / "disk.img"
    backing.write_bytes(os.urandom(32 * 2**20))
    if shutil.which("losetup") is None:
        unavailable("no losetup command here (apt-get install mount / dnf install util-linux)")
    r = subprocess.run(
        ["losetup", "--find", "--show", str(backing)], capture_output=True, text=True, timeout=60
    )
    if r.returncode != 0:
        unavailable(
            f"no loop device here ({r.stderr.strip()}): run the tests as root with the loop module "
            "(modprobe loop) and /dev/loop-control, or a container with --privileged"
        )
    try:
        yield r.stdout.strip(), backing
    finally:
        subprocess.run(["losetup", "--detach", r.stdout.strip()], capture_output=True, timeout=60)


def test_raw_block_device_is_read_only(cli: Cli, loop_device: tuple[str, Path]) -> None:
    device, backing = loop_device
    digest = hashlib.sha256(backing.read_bytes()).hexdigest()
    code, rec, err = probe_json(
        cli, "-p", f"targets={device}", "-p", "raw_device=true", "-p", "profiles=randread,seqread", *SMALL[2:]
    )
    assert code == ExitCode.OK, err
    check = rec["checks"][0]
    assert [m["metric"] for m in check["measurements"]][::4] == ["randread_iops", "seqread_bw"]
    s = check["measurements"][0]["settings"]
    assert s["raw_device"] and s["device_size_bytes"] == 32 * 2**20 and "--readonly" in s["fio_argv"]
    assert hashlib.sha256(backing.read_bytes()).hexdigest() == digest  # not one byte written
    code, rec, _ = probe_json(cli, "-p", f"targets={device}", *SMALL)  # a device without the flag
    assert code == ExitCode.UNKNOWN and "raw_device = true" in rec["checks"][0]["reason"]


def test_the_probe_itself_cleans_up_on_sigterm(tmp_path: Path, target: Path) -> None:
    """Without the runner (no cleanup list): the probe's own SIGTERM handler removes its folder."""
    job = {
        "probe": "storage",
        "params": {"targets": [str(target)], "size_mib": 16, "runtime_s": 120, "ramp_s": 0, "repeats": 1},
        "subject": "node",
        "inventory": {},
        "workdir": "",
        "timeout": None,
    }
    job_file, out_file = write(tmp_path / "job.json", json.dumps(job)), tmp_path / "out.json"
    mark = f"{os.getpid()}-{time.monotonic_ns()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpcbench.engine.child", str(job_file), str(out_file)],
        env={**os.environ, "HPCBENCH_TEST_MARK": mark},
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: fio_measuring(mark))
        assert len(leftover_dirs(target)) == 1
        os.killpg(proc.pid, signal.SIGTERM)  # as the runner stops a child: its whole group
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    out = json.loads(out_file.read_text())
    assert out["status"] == "error" and out["reason"] == "interrupted by SIGTERM"
    assert leftover_dirs(target) == []
