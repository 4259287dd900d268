"""One run at a time per node: an flock'ed file that names its holder."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from hpcbench.core.errors import LockHeld


class RunLock:
    """Context manager: holds the node's lock or raises LockHeld naming the holder."""

    def __init__(self, path: Path, holder: dict[str, Any]) -> None:
        self.path = path
        self.holder = holder
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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
