"""What a test needs from this machine (a command, a service, root, a torch feature), and what
happens when it is missing.

On a developer's machine a test whose tool or service is absent is skipped with the reason. In CI
``HPCBENCH_REQUIRE_SERVICES=1`` (any value but empty or ``0``) turns that skip into a failure that
names what is missing and how to install it, so nothing is skipped silently where everything
should run: ``.ci/run`` sets it and installs what the tests need. ``conftest.py`` also turns any
other skip into a failure under the same variable.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

ENV = "HPCBENCH_REQUIRE_SERVICES"


def required() -> bool:
    """True in CI: every environment-dependent test must run."""
    return os.environ.get(ENV, "") not in ("", "0")


def unavailable(what: str) -> NoReturn:
    """Skip this test because ``what`` (one line: what is missing and how to get it) — or, with
    HPCBENCH_REQUIRE_SERVICES=1, fail with that line."""
    if required():
        pytest.fail(f"{ENV}=1 but {what}", pytrace=False)
    pytest.skip(what)


def need(command: str, install: str) -> None:
    """At the start of a test that runs ``command``: skip at once with one line naming it and how
    to install it (fail, under HPCBENCH_REQUIRE_SERVICES), never a failure after a timeout."""
    import shutil

    if shutil.which(command) is None:
        unavailable(f"{command} not found on PATH ({install}; make test installs it as root)")
