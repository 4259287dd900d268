"""Progress on stderr: a rewritten line on a terminal, plain lines otherwise, nothing with --quiet."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO


class Progress:
    def __init__(
        self, quiet: bool = False, stream: TextIO | None = None, log: Callable[[str], None] | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self.log = log  # --log-file: every plain line, whatever quiet says

    def _say(self, text: str, final: bool) -> None:
        if final and self.log is not None:
            self.log(text)
        if self.quiet:
            return
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def start(self, job: Any, i: int, n: int) -> None:
        if self.tty:
            self._say(f"[{i}/{n}] {job.check.id} {job.subject}: running {job.check.probe} ...", final=False)

    def finish(self, outcome: Any, i: int, n: int) -> None:
        job = outcome.job
        detail = f" ({outcome.reason})" if outcome.reason else ""
        self._say(
            f"[{i}/{n}] {job.check.id} {job.subject}: {outcome.status} in {outcome.duration:.1f} s{detail}",
            final=True,
        )

    def note(self, job: Any, text: str) -> None:
        """A running probe's progress line (a burn's window): rewritten in place on a terminal, a
        plain line otherwise, nothing with --quiet; never in --log-file (it keeps outcomes)."""
        if self.quiet:
            return
        line = f"{job.check.id} {job.subject}: {text}"
        self.stream.write("\r\033[K" + line if self.tty else line + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        self._say(text, final=True)
