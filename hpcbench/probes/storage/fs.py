"""The storage probe's file-system side: where a target lives, how big a test file may be,
whether direct I/O works, and the test folder that is created and always removed.

Decisions are pure functions (mount lookup, warnings, size choice, staleness); the few
functions that touch the disk say so in their names and docstrings.
"""

from __future__ import annotations

import contextlib
import errno
import json
import mmap
import os
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hpcbench.core.errors import ProbeError
from hpcbench.node.collector import mount_fields

GiB = 2**30
MiB = 2**20
#: the test folder's name starts with this; a folder so named holding OWNER_FILE is ours
TEST_DIR_PREFIX = ".hpcbench-storage-"
OWNER_FILE = "hpcbench-owner.json"
#: default test file: large enough that a device's DRAM cache (a few GiB) cannot hold it
DEFAULT_SIZE = 16 * GiB
#: the smallest test file the probe will shrink to on a small file system
MIN_SIZE = 64 * MiB
#: free space left untouched beyond the test file: the larger of these
MARGIN_BYTES = 1 * GiB
MARGIN_FRACTION = 0.05
#: a direct-I/O write or read of this many bytes, aligned, tests O_DIRECT
DIRECT_IO_BLOCK = 4096

#: file system type -> why a measurement on it does not reflect a local device
FS_WARNINGS: dict[str, str] = {
    "tmpfs": "tmpfs keeps files in memory: the result is memory speed, not a device's",
    "ramfs": "ramfs keeps files in memory: the result is memory speed, not a device's",
    "overlay": "overlay is a layered file system: the result includes its copy-up and lookup costs",
    "aufs": "aufs is a layered file system: the result includes its own overhead",
    "nfs": "NFS is a network file system: the result is the network's and the server's",
    "nfs4": "NFS is a network file system: the result is the network's and the server's",
    "cifs": "CIFS/SMB is a network file system: the result is the network's and the server's",
    "smb3": "CIFS/SMB is a network file system: the result is the network's and the server's",
    "9p": "9p is a network/host-shared file system: the result is not a local device's",
    "virtiofs": "virtiofs is shared from the hypervisor host: the result is the host's, not a local device's",
}
_NETWORK_PREFIXES = ("fuse", "ceph", "lustre", "gpfs", "glusterfs", "beegfs")


@dataclass(frozen=True)
class MountEntry:
    device: str
    mountpoint: str
    fstype: str
    options: str

    @property
    def read_only(self) -> bool:
        return "ro" in self.options.split(",")


def parse_mounts(text: str) -> list[MountEntry]:
    """Every line of /proc/self/mounts (no filtering: /dev/shm counts here too)."""
    return [MountEntry(*fields) for fields in mount_fields(text)]


def mount_of(path: str, mounts: list[MountEntry]) -> MountEntry | None:
    """The mount that holds ``path`` (an absolute, resolved path): the longest mount point
    that is ``path`` or one of its parents; of equal ones, the last mounted."""
    best: MountEntry | None = None
    for m in mounts:
        mp = m.mountpoint.rstrip("/") or "/"
        inside = path == mp or mp == "/" or path.startswith(mp + "/")
        if inside and (best is None or len(mp) >= len(best.mountpoint.rstrip("/") or "/")):
            best = m
    return best


def fs_warning(fstype: str) -> str | None:
    """Why results on this file system type cannot reflect a local device; None when they can."""
    if fstype in FS_WARNINGS:
        return FS_WARNINGS[fstype]
    if fstype.startswith(_NETWORK_PREFIXES):
        return f"{fstype} is a FUSE, network or parallel file system: the result is not a local device's"
    return None


def margin(total_bytes: int) -> int:
    """Free space kept beyond the test file: 1 GiB or 5 % of the file system, the larger."""
    return max(MARGIN_BYTES, int(total_bytes * MARGIN_FRACTION))


@dataclass(frozen=True)
class SizeChoice:
    size: int
    warning: str | None


def _gib(n: int) -> str:
    return f"{n / GiB:.2f} GiB"


def choose_size(requested: int, free: int, total: int, block: int = MiB) -> SizeChoice:
    """The test file's size in bytes, a multiple of ``block``.

    ``requested`` > 0 is taken as given and refused (ProbeError) unless ``free``
    covers it plus the margin. ``requested`` = 0 is DEFAULT_SIZE, shrunk to half of
    what is free beyond the margin on a small file system (with a warning that the
    device's cache may then inflate the result), refused below MIN_SIZE.
    """
    keep = margin(total)
    if requested > 0:
        size = max(block, requested // block * block)
        if free < size + keep:
            raise ProbeError(
                f"not enough free space: a {_gib(size)} test file needs {_gib(size + keep)} free "
                f"(file + margin), {_gib(free)} is free",
                hint="lower size_mib, or free some space",
            )
        return SizeChoice(size, None)
    if free >= DEFAULT_SIZE + keep:
        return SizeChoice(DEFAULT_SIZE, None)
    size = (free - keep) // 2 // block * block
    if size < MIN_SIZE:
        raise ProbeError(
            f"not enough free space: {_gib(free)} free, the margin alone is {_gib(keep)} "
            f"and the smallest test file {MIN_SIZE // MiB} MiB",
            hint="free some space, or point the probe at another directory",
        )
    return SizeChoice(
        size,
        f"test file {_gib(size)} instead of the default {_gib(DEFAULT_SIZE)} (only {_gib(free)} free): "
        "a device cache of that size could serve it, inflating the result",
    )


# ---------------------------------------------------------------------------
# Touching the disk.


def free_and_total(path: str) -> tuple[int, int]:
    """Bytes available to this user and the file system's size (statvfs)."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def device_size(path: str) -> int:
    """A block device's size in bytes (seek to its end)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def is_block_device(path: str) -> bool:
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


def direct_io_refusal(path: str, *, read_only: bool = False) -> str | None:
    """None when ``path`` takes an aligned O_DIRECT write (creating it: never an existing file)
    or, with ``read_only``, an aligned O_DIRECT read; else why the file system refuses direct I/O.

    Errors other than a refusal of O_DIRECT itself (EINVAL, EOPNOTSUPP) are raised as OSError.
    """
    buf = mmap.mmap(-1, DIRECT_IO_BLOCK)  # page-aligned, as O_DIRECT wants
    try:
        if read_only:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
            try:
                os.readv(fd, [buf])
            finally:
                os.close(fd)
        else:
            buf.write(os.urandom(DIRECT_IO_BLOCK))
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o600)
            try:
                os.write(fd, buf)
            finally:
                os.close(fd)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
            return f"{exc.strerror} (errno {exc.errno})"
        raise
    finally:
        buf.close()
    return None


def process_start(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (/proc/PID/stat field 22); None when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text.rsplit(")", 1)[1].split()[19])


def make_test_dir(target: str) -> Path:
    """A fresh folder inside ``target`` (mkdtemp: a new name, never an existing folder), with an
    owner file naming this host, process and its start time, so a leftover can be recognised."""
    path = Path(tempfile.mkdtemp(prefix=TEST_DIR_PREFIX, dir=target))
    owner = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "start": process_start(os.getpid()),
        "created": time.time(),
    }
    (path / OWNER_FILE).write_text(json.dumps(owner))
    return path


def is_stale(owner: dict[str, object], host: str, start_of: Callable[[int], int | None]) -> bool:
    """True when an owner file names this host and a process that no longer runs."""
    pid = owner.get("pid")
    if owner.get("host") != host or not isinstance(pid, int):
        return False
    return start_of(pid) != owner.get("start")


def stale_test_dirs(target: str) -> list[Path]:
    """Test folders in ``target`` left by an hpcbench process of this host that is gone."""
    found = []
    host = socket.gethostname()
    with contextlib.suppress(OSError):
        for entry in os.scandir(target):
            if not entry.name.startswith(TEST_DIR_PREFIX) or not entry.is_dir(follow_symlinks=False):
                continue
            try:
                owner = json.loads(Path(entry.path, OWNER_FILE).read_text())
            except (OSError, ValueError):
                continue  # no owner file: not provably ours, left alone
            if isinstance(owner, dict) and is_stale(owner, host, process_start):
                found.append(Path(entry.path))
    return found


def remove_test_dir(path: Path) -> None:
    """Remove a test folder this probe created (only ever one named TEST_DIR_PREFIX...)."""
    if not path.name.startswith(TEST_DIR_PREFIX):
        raise ValueError(f"refusing to remove {path}: not a storage test folder")
    shutil.rmtree(path, ignore_errors=True)
