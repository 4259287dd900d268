"""One run at a time per node: an flock'ed file that names its holder.

The lock is a file only its user can have made: its folder belongs to the running user (or
root) and no one else can write it (``/run/hpcbench/``, made 0755 when missing, for root; see
``config.default_lock``), the file is opened with ``O_NOFOLLOW`` (a planted symbolic link is
refused, never followed), created with ``O_EXCL`` mode 0600 (no other user can open it to hold
its flock), and an existing one is used only when it is a regular file of the running user with
one name. Anything else is ``trust.Untrusted`` (exit 4) naming the path and why; the file is
truncated and written only after those checks.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
from pathlib import Path
from typing import Any

from hpcbench import trust
from hpcbench.errors import LockHeld
from hpcbench.trust import Untrusted

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
            os.close(fd)
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
