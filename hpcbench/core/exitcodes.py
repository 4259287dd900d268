"""Exit codes, Nagios-compatible, so cron, CI and monitoring read them as they are."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The process exit code of every hpcbench command.

    OK       0  every check passed, was skipped as not applicable, or had no
                baseline where the suite does not require one
    WARN     1  at least one check is below its warning threshold
    FAIL     2  at least one check is below its failure threshold or computed
                a wrong result (Nagios CRITICAL)
    UNKNOWN  3  something could not be measured (crash, timeout, missing tool,
                interrupted run, another run holds the lock) or a required
                baseline is missing
    USAGE    4  bad command line, suite, baseline or parameter; nothing was run

    A run's code is that of its worst check, ordered OK < WARN < UNKNOWN < FAIL:
    a proven failure outranks an unknown, and an unknown is never hidden
    behind an OK or a WARN.
    """

    OK = 0
    WARN = 1
    FAIL = 2
    UNKNOWN = 3
    USAGE = 4

    @property
    def severity(self) -> int:
        """The code's place in SEVERITY (USAGE, which no check yields, ranks above them all)."""
        return SEVERITY.index(self) if self in SEVERITY else len(SEVERITY)


#: the one order of run codes, least severe first: OK < WARN < UNKNOWN < FAIL
SEVERITY: tuple[ExitCode, ...] = (ExitCode.OK, ExitCode.WARN, ExitCode.UNKNOWN, ExitCode.FAIL)


def worst(codes: list[ExitCode] | tuple[ExitCode, ...]) -> ExitCode:
    """The most severe of several run codes (OK when there are none)."""
    return max(codes, key=lambda c: c.severity, default=ExitCode.OK)
