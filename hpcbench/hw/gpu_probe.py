"""The opening the GPU compute probes (gemm, attention, burn, memtest, gpu_membw) share.

Each of them takes a ``device`` parameter (``auto``, ``cpu`` or a GPU index, checked by
``check_device``), sets CUDA's environment before CUDA starts, imports torch, resolves the
device (``torch_device.prepare``) and leaves out the dtypes the device cannot do
(``open_device``); the timed ones (gemm, attention) also make the cache flush and describe their
timing the same way (``open_timed``). The class header they share (``requires``, ``expands``, the
clock tests pass) is ``hpcbench.probes.base.GpuProbe``.

Importing this module imports neither torch nor NVML: ``hpcbench list`` reads the probes' Params.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from hpcbench.core.errors import ParamError, ProbeSkip

if TYPE_CHECKING:  # imported where a probe opens its device, not when `hpcbench list` reads the Params
    from hpcbench.hw.torch_device import Clock, Runtime

DEVICE_HELP = "auto (GPU 0, else CPU), cpu, or a GPU index (hpcbench inventory)"
TELEMETRY_HELP = "NVML sampling period, s; 0 = off"
STATISTIC = "median of the timed calls (best and every sample kept)"


def device_field(help: str = DEVICE_HELP) -> Any:
    """The ``device`` parameter of a GPU probe (default ``auto``)."""
    return field(default="auto", metadata={"help": help})


def telemetry_field(default: float = 0.1) -> Any:
    """The ``telemetry_interval`` parameter: the NVML sampler's period while the probe runs."""
    return field(default=default, metadata={"help": TELEMETRY_HELP})


def check_device_param(value: int | str) -> str | None:
    """None when ``value`` is a valid ``device`` parameter, else what is wrong with it."""
    if isinstance(value, bool):
        return f"expected 'auto', 'cpu' or a GPU index, got {value!r}"
    if isinstance(value, int):
        return None if value >= 0 else f"a GPU index must be >= 0, got {value}"
    if value in ("auto", "cpu"):
        return None
    return f"expected 'auto', 'cpu' or a GPU index (see hpcbench inventory), got {value!r}"


def check_device(probe: str, device: int | str) -> None:
    """ParamError when ``device`` is not ``auto``, ``cpu`` or a GPU index (for Params.__post_init__)."""
    problem = check_device_param(device)
    if problem is not None:
        raise ParamError(probe, "device", problem)


class Opened(NamedTuple):
    """A GPU probe's device, opened: torch, the runtime, and the requested dtypes split into
    those that run here and those that cannot (dtype -> reason)."""

    torch: Any
    rt: Runtime
    dtypes: list[str]
    skipped: dict[str, str]


def open_device(
    device: int | str,
    inventory: Any,
    *,
    dtypes: Sequence[str] = (),
    threads: int = 0,
    clock: Clock | None = None,
    environ: Mapping[str, str] | None = None,
) -> Opened:
    """Set the environment CUDA reads when it starts (GPU ordinals in PCI bus order, then
    ``environ``; a value already set wins), import torch, resolve ``device`` on this node
    (``torch_device.prepare``: ProbeSkip where it does not apply, ProbeError where it cannot
    run) and sort ``dtypes`` into those the device runs and those it cannot; ProbeSkip with
    every reason when dtypes were asked for and none runs. ``clock`` replaces the device's
    own (tests pass fixed timings)."""
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # before CUDA starts
    for key, value in (environ or {}).items():
        os.environ.setdefault(key, value)
    import torch

    from hpcbench.hw import torch_device as td

    rt = td.prepare(torch, device, inventory, threads, clock=clock)
    skipped = td.unsupported_dtypes(torch, rt, list(dtypes))
    runs = [d for d in dtypes if d not in skipped]
    if dtypes and not runs:
        raise ProbeSkip("; ".join(skipped.values()))
    return Opened(torch, rt, runs, skipped)


class TimedParams(Protocol):
    """The parameters a timed GPU probe (gemm, attention) has besides its own."""

    device: int | str
    dtypes: list[str]
    threads: int
    flush_cache: bool
    repeats: int
    warmup: int
    warmup_s: float
    seed: int


def open_timed(
    params: TimedParams, inventory: Any, layout: str, clock: Clock | None = None
) -> tuple[Opened, Any, dict[str, Any]]:
    """``open_device`` for a timed probe, then the cache flush between its timed calls
    (``torch_device.make_flush``) and the settings each of its measurements carries: the device,
    the operands' layout, the timer, the flush, the timing parameters and the dtypes left out."""
    from hpcbench.hw import torch_device as td

    opened = open_device(params.device, inventory, dtypes=params.dtypes, threads=params.threads, clock=clock)
    flush, flush_info = td.make_flush(opened.torch, opened.rt, params.flush_cache)
    common = {
        "device": opened.rt.info,
        "layout": layout,
        "timer": opened.rt.clock.name,
        "cache_flush": flush_info,
        "repeats": params.repeats,
        "warmup": params.warmup,
        "warmup_s": params.warmup_s,
        "seed": params.seed,
        "skipped_dtypes": opened.skipped,
    }
    return opened, flush, common
