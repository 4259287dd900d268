"""Test probes: a fixed value, a hang, a crash, an exception, escaping children, unmet requirements."""

from __future__ import annotations

import ctypes
import os
import subprocess
import time
from dataclasses import dataclass, field

from hpcbench.core.measurement import Measurement
from hpcbench.probes.base import ProbeContext, Requirement, check


@dataclass(frozen=True)
class FixedParams:
    value: float = field(default=100.0, metadata={"help": "the value to report"})
    metric: str = "score"
    unit: str = "GB/s"
    higher_is_better: bool = True
    sanity: str = field(default="", metadata={"help": "non-empty: report a wrong result with this reason"})
    sleep: float = field(default=0.0, metadata={"help": "seconds to sleep before answering"})
    subject_values: list[float] = field(default_factory=list, metadata={"help": "value per numa subject"})
    numa_node: int | None = None

    def __post_init__(self) -> None:
        check(self.value >= 0, "fixed", "value", f"must be >= 0, got {self.value}")
        check(self.sleep >= 0, "fixed", "sleep", f"must be >= 0, got {self.sleep}")


class Fixed:
    name = "fixed"
    description = "Reports a value given as a parameter (for tests)"
    Params = FixedParams
    requires: tuple[Requirement, ...] = ()
    expands = {"numa": "numa_node"}

    def run(self, params: FixedParams, ctx: ProbeContext) -> list[Measurement]:
        time.sleep(params.sleep)
        value = params.value
        if params.numa_node is not None and params.subject_values:
            value = params.subject_values[params.numa_node % len(params.subject_values)]
        return [
            Measurement.from_samples(
                params.metric,
                [value, value * 0.99, value * 0.98],
                params.unit,
                ctx.subject,
                higher_is_better=params.higher_is_better,
                sanity=params.sanity or None,
                settings={"pid": os.getpid()},
            )
        ]


@dataclass(frozen=True)
class NoParams:
    pass


class Hang:
    name = "hang"
    description = "Never returns (for tests)"
    Params = NoParams
    requires: tuple[Requirement, ...] = ()
    expands: dict[str, str] = {}

    def run(self, params: NoParams, ctx: ProbeContext) -> list[Measurement]:
        while True:
            time.sleep(1)


@dataclass(frozen=True)
class DetachParams:
    hang: bool = field(default=False, metadata={"help": "hang after starting the children"})


class Detach:
    name = "detach"
    description = "Starts two sleepers in sessions of their own, as fio does with its jobs (for tests)"
    Params = DetachParams
    requires: tuple[Requirement, ...] = ()
    expands: dict[str, str] = {}

    def run(self, params: DetachParams, ctx: ProbeContext) -> list[Measurement]:
        for _ in range(2):
            subprocess.Popen(["sleep", "600"], start_new_session=True, stdin=subprocess.DEVNULL)
        while params.hang:
            time.sleep(1)
        return [Measurement.from_samples("score", [1.0], "GB/s", ctx.subject)]


@dataclass(frozen=True)
class CrashParams:
    how: str = field(default="segfault", metadata={"help": "segfault | abort | exit"})

    def __post_init__(self) -> None:
        check(self.how in ("segfault", "abort", "exit"), "crash", "how", "expected segfault, abort or exit")


class Crash:
    name = "crash"
    description = "Kills its own process (for tests)"
    Params = CrashParams
    requires: tuple[Requirement, ...] = ()
    expands: dict[str, str] = {}

    def run(self, params: CrashParams, ctx: ProbeContext) -> list[Measurement]:
        if params.how == "abort":
            os.abort()
        if params.how == "exit":
            os._exit(7)
        ctypes.string_at(0)  # dereferences NULL: SIGSEGV
        return []


class Boom:
    name = "boom"
    description = "Raises an exception (for tests)"
    Params = NoParams
    requires: tuple[Requirement, ...] = ()
    expands: dict[str, str] = {}

    def run(self, params: NoParams, ctx: ProbeContext) -> list[Measurement]:
        raise RuntimeError("the probe blew up on purpose")


class NeedsTool:
    name = "needs_tool"
    description = "Needs a program that is not installed (for tests)"
    Params = NoParams
    requires = (
        Requirement("binary", "hpcbench-no-such-tool", install="apt-get install hpcbench-no-such-tool"),
    )
    expands: dict[str, str] = {}

    def run(self, params: NoParams, ctx: ProbeContext) -> list[Measurement]:
        raise AssertionError("the runner must not start a probe whose requirement is unmet")


class NeedsGpu(NeedsTool):
    name = "needs_gpu"
    description = "Needs a GPU (for tests)"
    requires = (Requirement("gpu"),)


@dataclass(frozen=True)
class GpuParams:
    gpu: int | None = field(default=None, metadata={"help": "the GPU (NVML index) of this subject"})


class Visible:
    name = "visible"
    description = "Reports the GPUs its child process was given (for tests)"
    Params = GpuParams
    requires: tuple[Requirement, ...] = ()
    expands = {"gpu": "gpu"}

    def run(self, params: GpuParams, ctx: ProbeContext) -> list[Measurement]:
        settings = {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "gpus": ctx.gpus}
        value = float(len(ctx.gpus)) if ctx.gpus is not None else -1.0
        return [Measurement.from_samples("gpus", [value], "count", ctx.subject, settings=settings)]
