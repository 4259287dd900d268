"""What the runner hands a probe's child process and what the child hands back: frozen
dataclasses, written and read through the typed codec the record uses (``hpcbench.core.codec``),
so a field that does not fit is a DecodeError naming it, never a KeyError in the runner.

The child's file may hold NaN (Python's JSON extension: a probe's provenance can contain one); the
record written from it never does (``json_safe``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hpcbench.core import codec
from hpcbench.core.atomic import write_json
from hpcbench.core.measurement import Measurement, Unmeasured
from hpcbench.node.inventory import Inventory


@dataclass(frozen=True)
class ChildJob:
    """One probe on one subject: its parameters (the parsed Params' values), the node's
    inventory, the scratch folder, the timeout and the GPUs the run may use."""

    probe: str
    subject: str
    params: dict[str, Any] = field(default_factory=dict)
    inventory: Inventory = field(default_factory=Inventory)
    workdir: str = ""
    timeout: float | None = None
    gpus: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ChildResult:
    """What the probe's child reports: ``ok`` with what the probe returned, ``skip`` (does not
    apply here) or ``error`` with the reason (and the traceback in ``detail`` for a probe's bug)."""

    status: Literal["ok", "skip", "error"]
    reason: str = ""
    hint: str = ""
    detail: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    measurements: tuple[Measurement, ...] = ()
    unmeasured: tuple[Unmeasured, ...] = ()


def write(path: str | Path, obj: ChildJob | ChildResult) -> Path:
    return write_json(path, codec.encode(obj), allow_nan=True, durable=False)


def read_job(path: str | Path) -> ChildJob:
    result: ChildJob = codec.decode(ChildJob, json.loads(Path(path).read_text()), "job")
    return result


def _unreadable(exc: Exception) -> ChildResult:
    return ChildResult("error", reason=f"the probe's child wrote no readable result: {exc}")


def decode_result(data: Any) -> ChildResult:
    """A child's result from its JSON form (the out.json of a child of its own, a line of the
    no-load batch); where it is no result, an ``error`` result that says what was wrong."""
    try:
        result: ChildResult = codec.decode(ChildResult, data, "result")
    except ValueError as exc:  # DecodeError: a child that wrote nonsense
        return _unreadable(exc)
    return result


def read_result(path: str | Path) -> ChildResult:
    """``decode_result`` of a child's out.json; an ``error`` result where it cannot be read."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        return _unreadable(exc)
    return decode_result(data)
