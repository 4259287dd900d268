"""``--log-file FILE``: progress lines and the one-line summary, appended with a UTC timestamp each.

For cron: each line is ``2026-11-28T02:00:13Z hpcbench[4711] nightly: <text>``, written with one
``write`` on a file opened with O_APPEND, so several runs (or a run and ``slurm-check``) can
share one file. The verdict table never goes here. The file is opened with O_NOFOLLOW and
written only when it is a regular file of the running user with one name; as root, in a
folder no other user can write (hpcbench.core.trust).
"""

from __future__ import annotations

import errno
import os
from datetime import datetime
from pathlib import Path

from hpcbench.core import trust
from hpcbench.core.errors import ConfigError
from hpcbench.core.timeparse import utc_stamp


def format_line(text: str, suite: str, pid: int, now: datetime | None = None) -> str:
    one = " ".join(text.split())  # a reason with a newline stays one line
    return f"{utc_stamp(now)} hpcbench[{pid}] {suite}: {one}\n"


class RunLog:
    """An append-only log file; ``line(text)`` writes one timestamped line."""

    def __init__(self, fd: int, path: Path, suite: str) -> None:
        self.fd = fd
        self.path = path
        self.suite = suite

    @classmethod
    def open(cls, path: Path, suite: str) -> RunLog:
        """Opens (creates) ``path`` for appending; ConfigError with a one-line reason when it cannot."""
        if path.is_dir():
            raise ConfigError(f"--log-file {path}: is a folder")
        trust.check(path.parent, f"--log-file {path}: folder")
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as exc:
            why = "is a symbolic link (never followed)" if exc.errno == errno.ELOOP else exc.strerror
            raise ConfigError(f"--log-file {path}: {why}") from None
        why = trust.own_file(os.fstat(fd), os.geteuid())
        if why:
            os.close(fd)
            raise trust.Untrusted(f"--log-file {path}: refused: {why}")
        return cls(fd, path, suite)

    def line(self, text: str) -> None:
        os.write(self.fd, format_line(text, self.suite, os.getpid()).encode())

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
