"""One run at a time per node: an flock'ed file that names its holder.

The lock is a file only its user can have made: its folder belongs to the running user (or
root) and no one else can write it (``/run/hpcbench/``, made 0755 when missing, for root; see
``config.default_lock``), the file is opened with ``O_NOFOLLOW`` (a planted symbolic link is
refused, never followed), created with ``O_EXCL`` mode 0600 (no other user can open it to hold
its flock), and an existing one is used only when it is a regular file of the running user with
one name. Anything else is ``trust.Untrusted`` (exit 4) naming the path and why; the file is
truncated and written only after those checks. A lock held by a process of another user (one
that opened a lock an older hpcbench left readable) is refused the same way, naming the holder
(``/proc/locks``), rather than taken for another run.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
from pathlib import Path
from typing import Any

from hpcbench.core import trust
from hpcbench.core.errors import LockHeld
from hpcbench.core.trust import Untrusted

FILE_MODE = 0o600
DIR_MODE = 0o755


def lock_folder(folder: Path, euid: int) -> None:
    """Makes ``folder`` (0755) when missing; Untrusted unless it is a folder of the running user
    or root that no one else can write (and, as root, nothing above it another user controls)."""
    trust.check(folder.parent, "lock folder", euid, ancestor=True)  # nothing made through a planted link
    try:
        folder.mkdir(mode=DIR_MODE, parents=True)
    except FileExistsError:
        pass
    except OSError as exc:
        raise Untrusted(f"lock folder {folder}: cannot create: {exc.strerror}") from None
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode):
        raise Untrusted(f"lock folder {folder}: refused: not a folder (a symbolic link or a file)")
    who = trust.writers(st, euid)
    if st.st_uid not in (0, euid):
        who = [f"user {trust.user_name(st.st_uid)} (uid {st.st_uid}, the owner)"]
    if who:
        raise Untrusted(
            f"lock folder {folder}: refused: can be written by {', '.join(who)} "
            f"({stat.filemode(st.st_mode)}); another user could plant or hold the lock"
        )
    trust.check(folder, "lock folder", euid)


def open_lock(path: Path, euid: int | None = None) -> int:
    """The lock file's descriptor, created or opened safely (see the module's text)."""
    euid = os.geteuid() if euid is None else euid
    lock_folder(path.parent, euid)
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            why = "is a symbolic link (never followed)" if exc.errno == errno.ELOOP else exc.strerror
            raise Untrusted(f"lock {path}: refused: {why}") from None
    except OSError as exc:
        raise Untrusted(f"lock {path}: cannot create: {exc.strerror}") from None
    st = os.fstat(fd)
    why = trust.own_file(st, euid)
    if why:
        os.close(fd)
        raise Untrusted(f"lock {path}: refused: {why}")
    if stat.S_IMODE(st.st_mode) != FILE_MODE:
        os.fchmod(fd, FILE_MODE)  # ours: an older lock others could open (and flock) no more
    return fd


class RunLock:
    """Context manager: holds the node's lock or raises LockHeld naming the holder."""

    def __init__(self, path: Path, holder: dict[str, Any], euid: int | None = None) -> None:
        self.path = path
        self.holder = holder
        self.euid = euid
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        fd = open_lock(self.path, self.euid)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = _read_holder(fd)
            st = os.fstat(fd)
            os.close(fd)
            _refuse_foreign_holder(self.path, st, os.geteuid() if self.euid is None else self.euid)
            raise LockHeld(f"another hpcbench run holds {self.path}: {info}") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({**self.holder, "pid": os.getpid()}).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def flock_holders(proc_locks: str, dev: int, ino: int) -> list[int]:
    """The pids holding an flock on the file (``dev``, ``ino``) in /proc/locks' text (pure;
    waiters, the ``->`` lines, are not holders)."""
    want = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    pids = []
    for line in proc_locks.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == want and fields[4].isdigit():
            pids.append(int(fields[4]))
    return pids


def _refuse_foreign_holder(path: Path, st: os.stat_result, euid: int) -> None:
    """Untrusted when the lock's holder runs as another user: a file that was readable once (an
    older hpcbench made it 0644) let that user open it and hold its flock for as long as they like."""
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            pids = flock_holders(fh.read(), st.st_dev, st.st_ino)
    except OSError:
        return
    for pid in pids:
        try:
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            continue
        if uid != euid:
            raise Untrusted(
                f"lock {path}: refused: held by pid {pid} of user {trust.user_name(uid)} (uid {uid}), "
                "not a run of the running user's; it is 0600 now, so once that process ends no other "
                "user can open it again"
            )


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        return "holder unknown"
    parts = [f"pid {data.get('pid', '?')}"]
    for key in ("run_id", "suite", "started"):
        if data.get(key):
            parts.append(f"{key.replace('_', ' ')} {data[key]}")
    return ", ".join(parts)
