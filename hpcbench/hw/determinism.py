"""The environment that makes a GPU compute the same bits every time, enforced, not assumed.

- ``PYTORCH_TUNABLEOP_ENABLED=1`` (inherited from a user's shell or a container image) makes torch
  pick GEMM algorithms by timing them: two runs, or two GPUs, may then compute different bits, which
  the burn would report as silent data corruption. Children run with it ``0``.
- cuBLAS is deterministic only with ``CUBLAS_WORKSPACE_CONFIG`` ``:4096:8`` or ``:16:8`` (cuBLAS
  documentation, "Results reproducibility"); with any other value torch's deterministic mode raises
  instead of running. Children run with ``:4096:8`` unless the environment already had a valid one.

``overrides`` is pure: what to set, given an environment. The runner sets it in every child's
environment, with what the environment had (``BEFORE_ENV``, JSON) so a probe records it;
``enforce`` applies it in the process itself (a probe run outside the runner, e.g. in a test).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, MutableMapping
from typing import Any

VALID_WORKSPACE = (":4096:8", ":16:8")
WORKSPACE = ":4096:8"
TUNABLEOP = "PYTORCH_TUNABLEOP_ENABLED"
CUBLAS = "CUBLAS_WORKSPACE_CONFIG"
#: the child's copy of what the parent's environment had for the variables overridden (JSON)
BEFORE_ENV = "HPCBENCH_ENV_BEFORE"


def overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables to set so that torch and cuBLAS compute deterministically."""
    out = {}
    if environ.get(TUNABLEOP) != "0":
        out[TUNABLEOP] = "0"
    if environ.get(CUBLAS) not in VALID_WORKSPACE:
        out[CUBLAS] = WORKSPACE
    return out


def child_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``overrides`` plus ``BEFORE_ENV``: what the environment had for each (null: unset)."""
    changed = overrides(environ)
    if not changed:
        return {}
    before = {name: environ.get(name) for name in changed}
    return {**changed, BEFORE_ENV: json.dumps(before, sort_keys=True)}


def enforce(environ: MutableMapping[str, str] | None = None) -> dict[str, Any]:
    """Set ``overrides`` in ``environ`` (this process's by default; before torch starts CUDA) and
    return what the record keeps: each variable's value now and, where it was changed (here or by
    the runner), what the environment had."""
    env = os.environ if environ is None else environ
    before: dict[str, Any] = {}
    with contextlib.suppress(ValueError):
        before.update(json.loads(env.get(BEFORE_ENV, "") or "{}"))
    for name, value in overrides(env).items():
        before.setdefault(name, env.get(name))
        env[name] = value
    return {
        name: {"now": env.get(name), **({"was": before[name]} if name in before else {})}
        for name in (TUNABLEOP, CUBLAS)
    }
