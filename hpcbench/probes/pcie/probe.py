"""PCIe bandwidth between host and one GPU, and the link's state under load.

As nvbandwidth measures it: copy-engine copies (cudaMemcpyAsync, here torch's
non-blocking ``copy_``) of 512 MiB between pinned host memory and the GPU, each timed
with CUDA events, the median of ``repeats`` reported. ``h2d`` and ``d2h`` alone, and
``bidirectional``: both at once on two streams, counted as the bytes of both directions
over the time until both ended (each direction's own rate is in the settings).

Before anything is allocated the process is bound to the GPU's local CPUs from NVML
(nvmlDeviceGetCpuAffinity) with ``os.sched_setaffinity``, so the pinned buffers are first
touched on the GPU's NUMA node (nvmlDeviceGetMemoryAffinity, recorded). The current PCIe
link generation and width are read while copies are in flight, because an idle link
downtrains to save power; ``link_gen_deficit`` and ``link_width_deficit`` are the
generations and lanes below the link's maximum (what GPU and slot can both do). The
suites fail any deficit, with the reason "running Gen4 x16 under load; the link can do
Gen5 x16". Subjects run one after another (``concurrent = False``): GPUs behind one PCIe
switch or root port share its bandwidth.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from hpcbench.core.errors import ProbeError
from hpcbench.probes.base import ProbeContext, Requirement, check

if TYPE_CHECKING:  # imported where used: `hpcbench list` reads only the header and Params
    from hpcbench.core.measurement import Measurement, Unmeasured

NAME = "pcie"
METRICS = ("h2d", "d2h", "bidirectional", "link_gen_deficit", "link_width_deficit")
CONVENTION = "nvbandwidth (copy-engine memcpy, pinned host memory, median; GB/s = 1e9 B/s)"
#: copies queued while the link state is read, and how the reads are spaced
LOAD_COPIES = 20
LINK_READS = 4
LINK_READ_PAUSE_S = 0.02


class Engine(Protocol):
    """Timed transfers of ``nbytes`` each way (``pcie_cuda.CudaEngine`` on a GPU)."""

    nbytes: int

    def h2d(self) -> float: ...

    def d2h(self) -> float: ...

    def bidir(self) -> tuple[float, float, float]: ...

    def start_load(self, copies: int) -> None: ...

    def finish_load(self) -> None: ...

    def verify(self) -> str | None: ...


@dataclass(frozen=True)
class PcieParams:
    gpu: int = field(default=0, metadata={"help": "GPU index (NVML's; expand = gpu sets it)"})
    size_mib: int = field(default=512, metadata={"help": "MiB per transfer (nvbandwidth: 512)"})
    repeats: int = field(default=10, metadata={"help": "timed transfers per direction (>= 2; median)"})
    warmup: int = field(default=3, metadata={"help": "untimed transfers per direction first"})
    bind: bool = field(default=True, metadata={"help": "bind to the GPU's local CPUs (NVML affinity)"})

    def __post_init__(self) -> None:
        check(self.gpu >= 0, NAME, "gpu", f"must be >= 0, got {self.gpu}")
        check(self.size_mib >= 1, NAME, "size_mib", f"must be >= 1, got {self.size_mib}")
        check(self.repeats >= 2, NAME, "repeats", f"must be >= 2, got {self.repeats}")
        check(self.warmup >= 0, NAME, "warmup", f"must be >= 0, got {self.warmup}")


@dataclass(frozen=True)
class Transfers:
    """Seconds of each timed transfer, the link as read under load, and the verification."""

    h2d: list[float]
    d2h: list[float]
    bidir: list[tuple[float, float, float]]
    link_samples: list[tuple[int | None, int | None]]
    sanity: str | None


def measure(
    engine: Engine,
    read_link: Callable[[], tuple[int | None, int | None]],
    warmup: int,
    repeats: int,
    load_copies: int = LOAD_COPIES,
) -> Transfers:
    """Warm up, read the link state while copies are in flight, time each direction, verify."""
    for _ in range(warmup):
        engine.h2d()
        engine.d2h()
        engine.bidir()
    engine.start_load(load_copies)
    samples = []
    for _ in range(LINK_READS):
        time.sleep(LINK_READ_PAUSE_S)
        samples.append(read_link())
    engine.finish_load()
    h2d = [engine.h2d() for _ in range(repeats)]
    d2h = [engine.d2h() for _ in range(repeats)]
    bidir = [engine.bidir() for _ in range(repeats)]
    return Transfers(h2d, d2h, bidir, samples, engine.verify())


def bind_cpus(local: list[int], allowed: set[int]) -> list[int]:
    """The GPU's local CPUs this process may use; [] when none (then it stays unbound)."""
    return sorted(set(local) & allowed)


def link_deficits(
    samples: list[tuple[int | None, int | None]], max_gen: int | None, max_width: int | None
) -> tuple[int | None, int | None, str]:
    """(generations below the max, lanes below the max, the detail) from the link under load.

    The best generation and width seen among the reads count (the link may retrain up
    while the first copies run); None where NVML gave no value.
    """
    gens = [g for g, _ in samples if g]
    widths = [w for _, w in samples if w]
    gen, width = (max(gens) if gens else None), (max(widths) if widths else None)
    gen_def = max(max_gen - gen, 0) if gen is not None and max_gen else None
    width_def = max(max_width - width, 0) if width is not None and max_width else None
    now = f"Gen{gen or '?'} x{width or '?'}"
    best = f"Gen{max_gen or '?'} x{max_width or '?'}"
    if gen_def or width_def:
        detail = f"running {now} under load; the link can do {best}"
    else:
        detail = f"{now} under load, the link's maximum {best}"
    return gen_def, width_def, detail


def gbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e9


def build_measurements(
    result: Transfers, nbytes: int, link: dict[str, Any], subject: str, settings: dict[str, Any]
) -> list[Measurement | Unmeasured]:
    """The five measurements; link metrics NVML could not give are listed as not measured."""
    import statistics

    from hpcbench.core.measurement import Measurement, Unmeasured

    gen_def, width_def, detail = link_deficits(
        result.link_samples, link.get("max_gen"), link.get("max_width")
    )
    deficits = (("link_gen_deficit", gen_def, "generations"), ("link_width_deficit", width_def, "lanes"))
    why = link.get("unsupported") or "NVML gave no current or maximum link state"
    absent = [Unmeasured(metric, "not_measured", why) for metric, value, _ in deficits if value is None]
    common = {
        **settings,
        "bidirectional_h2d_gbps": statistics.median(gbps(nbytes, t) for _, t, _ in result.bidir),
        "bidirectional_d2h_gbps": statistics.median(gbps(nbytes, t) for _, _, t in result.bidir),
    }
    out: list[Measurement | Unmeasured] = []
    for metric, seconds, moved in (
        ("h2d", result.h2d, nbytes),
        ("d2h", result.d2h, nbytes),
        ("bidirectional", [total for total, _, _ in result.bidir], 2 * nbytes),
    ):
        out.append(
            Measurement.from_samples(
                metric,
                [gbps(moved, t) for t in seconds],
                "GB/s",
                subject,
                statistic="median",
                convention=CONVENTION,
                settings={**common, "bytes_per_transfer": moved},
                sanity=result.sanity,
            )
        )
    link_settings = {"link": link, "link_samples": result.link_samples}
    for metric, value, unit in deficits:
        if value is not None:
            out.append(
                Measurement.from_samples(
                    metric,
                    [float(value)],
                    unit,
                    subject,
                    higher_is_better=False,
                    convention="NVML, read under load",
                    settings=link_settings,
                    detail=detail,
                )
            )
    return out + absent


def _nvml_link(nv: Any, handle: Any) -> dict[str, Any]:
    from hpcbench.node import nvml as seam

    readings = seam.pcie_link(nv, handle)
    link: dict[str, Any] = {k: r.value for k, r in readings.items() if r.ok}
    why = [f"{k}: {r.unsupported or r.error}" for k, r in readings.items() if not r.ok and k != "gpu_max_gen"]
    if why:
        link["unsupported"] = "; ".join(why)
    return link


class Pcie:
    """Host<->device bandwidth of one GPU over PCIe, bound to its NUMA node, and its link state."""

    name: ClassVar[str] = NAME
    description: ClassVar[str] = (
        "PCIe host<->device bandwidth per GPU (pinned, 512 MiB, as nvbandwidth) and link state under load"
    )
    Params: ClassVar[type] = PcieParams
    requires: ClassVar[tuple[Requirement, ...]] = (Requirement("gpu"), Requirement("idle_gpu"))
    expands: ClassVar[dict[str, str]] = {"gpu": "gpu"}
    metrics: ClassVar[tuple[str, ...]] = METRICS
    #: one GPU at a time: GPUs behind one switch or root port share its bandwidth
    concurrent: ClassVar[bool] = False

    def __init__(self, nvml: Any = None) -> None:
        self.nvml = nvml

    def run(self, params: PcieParams, ctx: ProbeContext) -> list[Measurement | Unmeasured]:
        from hpcbench.node import nvml as seam

        nnodes = max(len(ctx.inventory.numa.nodes), 1)
        settings: dict[str, Any] = {
            "size_bytes": params.size_mib * 2**20,
            "repeats": params.repeats,
            "warmup": params.warmup,
        }
        with contextlib.ExitStack() as stack:
            try:
                nv = stack.enter_context(seam.session(self.nvml))
            except ImportError as exc:
                nv, unavailable = None, f"NVML unavailable: {exc}"
            except Exception as exc:
                if not type(exc).__name__.startswith("NVMLError"):
                    raise
                nv, unavailable = None, f"NVML: {seam.error_text(exc)}"
            if nv is None:
                settings["binding"] = f"not bound: {unavailable}"
                return self._transfer(
                    params, ctx, settings, {"unsupported": unavailable}, lambda: (None, None)
                )
            handle = seam.read(nv, nv.nvmlDeviceGetHandleByIndex, params.gpu)
            if not handle.ok:
                raise ProbeError(f"GPU {params.gpu}: {handle.error or handle.unsupported}")
            settings.update(self._bind(nv, handle.value, params.bind, nnodes))  # before torch allocates

            def read_link() -> tuple[int | None, int | None]:
                now = seam.pcie_link(nv, handle.value)
                return now["curr_gen"].value, now["curr_width"].value

            return self._transfer(params, ctx, settings, _nvml_link(nv, handle.value), read_link)

    @staticmethod
    def _bind(nv: Any, handle: Any, bind: bool, nnodes: int) -> dict[str, Any]:
        """Bind this process to the GPU's local CPUs (before torch allocates anything)."""
        from hpcbench.node import nvml as seam

        # a mask for at least 1024 CPUs: CPU numbers can exceed the count when some are offline
        cpus = seam.cpu_affinity(nv, handle, max(os.cpu_count() or 1, 1024))
        nodes = seam.memory_affinity(nv, handle, max(nnodes, 64))
        out: dict[str, Any] = {"gpu_local_cpus": cpus.value, "gpu_numa_nodes": nodes.value}
        chosen = bind_cpus(cpus.value or [], os.sched_getaffinity(0))
        if not bind:
            out["binding"] = "not bound (bind = false)"
        elif not cpus.ok or not chosen:
            out["binding"] = (
                f"not bound: {cpus.unsupported or cpus.error or 'none of the local CPUs is allowed'}"
            )
        else:
            os.sched_setaffinity(0, chosen)
            out["binding"] = f"bound to {len(chosen)} CPUs local to the GPU"
        out["cpus"] = sorted(os.sched_getaffinity(0))
        return out

    @staticmethod
    def _transfer(
        params: PcieParams,
        ctx: ProbeContext,
        settings: dict[str, Any],
        link: dict[str, Any],
        read_link: Callable[[], tuple[int | None, int | None]],
    ) -> list[Measurement | Unmeasured]:
        import torch

        from hpcbench.hw.torch_device import prepare
        from hpcbench.probes.pcie.cuda import CudaEngine

        rt = prepare(torch, params.gpu, ctx.inventory)
        assert rt.choice.cuda_ordinal is not None  # an int device is CUDA or raised
        nbytes = params.size_mib * 2**20
        engine = CudaEngine(torch, rt.choice.cuda_ordinal, nbytes)
        result = measure(engine, read_link, params.warmup, params.repeats)
        settings = {**settings, "device": rt.info, "timer": "torch.cuda.Event on two streams"}
        return build_measurements(result, nbytes, link, ctx.subject, settings)
