"""``--log-file FILE``: progress lines and the one-line summary, appended with a UTC timestamp each.

For cron: each line is ``2026-11-28T02:00:13Z hpcbench[4711] nightly: <text>``, written with one
``write`` on a file opened with O_APPEND, so several runs (or a run and ``slurm-check``) can
share one file. The verdict table never goes here.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

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
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ConfigError(f"--log-file {path}: {exc.strerror}") from None
        return cls(fd, path, suite)

    def line(self, text: str) -> None:
        os.write(self.fd, format_line(text, self.suite, os.getpid()).encode())

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
