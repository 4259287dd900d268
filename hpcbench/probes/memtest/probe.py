"""Memory pattern test: HBM on a GPU (host memory with ``device=cpu``), as DCGM's memtest and
memtest86 do it, in torch so the same code runs on both.

``fraction`` of the *free* memory (at most ``max_mib``; on the CPU device 1 GiB unless told) is
allocated in chunks of ``chunk_mib`` as 64-bit words. Each pattern (``calc.PATTERNS``) is written
and read back chunk by chunk on the device (``passes``), the device waited for after each chunk so
that ``max_time_s`` holds on a GPU. ``passes`` runs every pattern that many times; 0 repeats them
until ``max_time_s`` (the acceptance suite tests HBM for minutes so). A word read back wrong sets
``sanity``: a FAIL of its own, naming the pattern, the count and the device addresses.

With ECC on (the default, and what gpu_health requires) a weak cell reads back right: the GPU
corrects it and counts it. So the GPU's ECC counters (volatile corrected and uncorrected), its
row-remapping counters and the XIDs of its kernel log are read before and after the test, as the
burn reads them (``hw.counter_watch``), and judged the same way; an uncorrectable error surfaces
as a CUDA exception ("uncorrectable ECC error encountered"), which becomes a FAIL naming the GPU,
the pattern and how far the test got, with the counters read after it. A test that ended
(``max_time_s``) before one pattern covered the region could not measure it: ERROR, never PASS.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

from hpcbench.core.errors import ProbeError
from hpcbench.hw import counter_watch as cw
from hpcbench.hw import gpu_probe as gp

if TYPE_CHECKING:  # run() imports what it uses: `hpcbench list` reads only the header and Params
    from hpcbench.core.measurement import Measurement, Unmeasured
    from hpcbench.hw import torch_device as td
    from hpcbench.node.inventory import Inventory

from hpcbench.core.items import to_measurements
from hpcbench.probes.base import GpuProbe, ProbeContext, check, report_progress
from hpcbench.probes.memtest import calc

NAME = "memtest"
MIB = 2**20
CPU_DEFAULT_MAX_MIB = 1024
GPU_CHUNK_MIB = 1024
CPU_CHUNK_MIB = 64


@dataclass(frozen=True)
class MemtestParams:
    device: int | str = field(
        default="auto", metadata={"help": "auto (GPU 0, else CPU), cpu, or a GPU index (hpcbench inventory)"}
    )
    fraction: float = field(default=0.9, metadata={"help": "fraction of the free memory to test (0-0.98]"})
    max_mib: int = field(
        default=0, metadata={"help": "test at most this many MiB; 0 = no cap on a GPU, 1024 on the CPU"}
    )
    chunk_mib: int = field(default=0, metadata={"help": "MiB per chunk; 0 = 1024 on a GPU, 64 on the CPU"})
    patterns: list[str] = field(
        default_factory=lambda: list(calc.DEFAULT_PATTERNS),
        metadata={"help": f"of {', '.join(calc.PATTERNS)}"},
    )
    passes: int = field(default=1, metadata={"help": "times every pattern runs; 0 = until max_time_s"})
    max_time_s: float = field(
        default=300.0,
        metadata={"help": "stop after this many seconds (between chunks); the record says where"},
    )
    retention_s: float = field(
        default=30.0, metadata={"help": "pause of the retention pattern between its write and its read"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the random pattern"})
    kernel_log: str = field(
        default="auto",
        metadata={"help": "XID source: auto (journalctl, else dmesg), journalctl, dmesg, none, or a file"},
    )
    xid_ignore: list[int] = field(
        default_factory=list,
        metadata={"help": "XIDs not counted; [] = every XID (the GPU is the test's alone)"},
    )

    def __post_init__(self) -> None:
        problem = gp.check_device_param(self.device)
        check(problem is None, NAME, "device", problem or "")
        check(0 < self.fraction <= 0.98, NAME, "fraction", f"must be in (0, 0.98], got {self.fraction}")
        check(self.max_mib >= 0, NAME, "max_mib", f"must be >= 0, got {self.max_mib}")
        check(self.chunk_mib >= 0, NAME, "chunk_mib", f"must be >= 0, got {self.chunk_mib}")
        check(bool(self.patterns), NAME, "patterns", "expected at least one pattern")
        for p in self.patterns:
            check(p in calc.PATTERNS, NAME, "patterns", f"unknown {p!r}; known: {', '.join(calc.PATTERNS)}")
        check(self.passes >= 0, NAME, "passes", f"must be >= 0 (0 = until max_time_s), got {self.passes}")
        check(self.max_time_s > 0, NAME, "max_time_s", f"must be > 0, got {self.max_time_s}")
        check(self.retention_s >= 0, NAME, "retention_s", f"must be >= 0, got {self.retention_s}")
        check(bool(self.kernel_log.strip()), NAME, "kernel_log", "must not be empty")
        check(all(c >= 0 for c in self.xid_ignore), NAME, "xid_ignore", "XIDs are >= 0")


def free_bytes(torch: Any, rt: td.Runtime) -> tuple[int, int, str]:
    """(free, total, source) bytes of the device's memory."""
    if rt.choice.is_cuda:
        from hpcbench.hw import cuda_only

        free, total = cuda_only.memory_info(torch, rt.choice.cuda_ordinal)
        return free, total, "torch.cuda.mem_get_info"
    import psutil

    vm = psutil.virtual_memory()
    return int(vm.available), int(vm.total), "psutil.virtual_memory().available"


def allocate_chunks(torch: Any, device: Any, region: int, chunk: int) -> tuple[list[Any], str]:
    """Chunks of int64 words summing to ``region`` bytes (the last one smaller), as many as the
    device gives; the reason it gave fewer, if it did."""
    chunks: list[Any] = []
    left = region
    while left >= calc.WORD_BYTES:
        size = min(chunk, left)
        try:
            chunks.append(torch.empty(size // calc.WORD_BYTES, dtype=torch.int64, device=device))
        except (RuntimeError, MemoryError) as exc:  # torch.cuda.OutOfMemoryError is a RuntimeError
            return (
                chunks,
                f"allocation stopped after {sum(c.numel() for c in chunks) * 8 / MIB:.0f} MiB: {exc}",
            )
        left -= size - size % calc.WORD_BYTES
    return chunks, ""


def progress_line(passno: int, r: calc.PatternResult) -> str:
    gib = r.words * calc.WORD_BYTES / 2**30
    rate = calc.gbps(r.bytes_written, r.bytes_read, r.seconds)
    return f"pass {passno} {r.pattern}: {gib:.2f} GiB, {r.mismatches} wrong, {rate:.1f} GB/s"


def schedule(params: MemtestParams, over: Callable[[], bool]) -> Iterator[tuple[int, str]]:
    """(pass, pattern) in order: every pattern ``passes`` times, or again and again until ``over()``
    (``passes`` 0); nothing more once ``over()``."""
    passno = 0
    while params.passes == 0 or passno < params.passes:
        passno += 1
        for name in params.patterns:
            if over():
                return
            yield passno, name


class Memtest(GpuProbe):
    """Pattern test of GPU (or host) memory: every word written and read back, on the device, with
    the GPU's error counters read around it."""

    name: ClassVar[str] = NAME
    description: ClassVar[str] = (
        "Memory pattern test (HBM, or host memory on the CPU device): fixed, walking ones, address, "
        "random, moving inversions, retention; ECC, row-remap and XID counters around it"
    )
    Params: ClassVar[type] = MemtestParams
    metrics: ClassVar[tuple[str, ...]] = ("mismatched_words", "bandwidth", *cw.METRICS)

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        nvml: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        allocate: Callable[[Any, Any, int, int], tuple[list[Any], str]] | None = None,
    ) -> None:
        self.clock = clock  # tests pass a clock of their own, so the GB/s are pinned
        self.nvml = nvml  # None: pynvml (tests inject a fake)
        self.sleep = sleep
        self.allocate = allocate or allocate_chunks  # tests inject memory with a fault of its own

    def watch(self, rt: td.Runtime, params: MemtestParams, inventory: Inventory) -> cw.CounterWatch:
        """The GPU's counters and XIDs around the test (nothing on the CPU device)."""
        index = rt.choice.nvml_index if rt.choice.is_cuda else None
        bus = next((d.pci_bus_id for d in inventory.gpus.devices if d.index == index), None)
        why = (
            "the CPU device has no NVML counters"
            if not rt.choice.is_cuda
            else "GPU not in the NVML inventory"
        )
        return cw.CounterWatch(
            index,
            bus,
            kernel_log=params.kernel_log,
            xid_ignore=tuple(params.xid_ignore),
            nvml=self.nvml,
            during="the memtest",
            why_none=why,
        )

    def run(self, params: MemtestParams, ctx: ProbeContext) -> list[Measurement | Unmeasured]:
        from hpcbench.probes.memtest.passes import Env, Progress, Region, run_pattern

        os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
        import torch

        from hpcbench.hw import torch_device as td

        rt = td.prepare(torch, params.device, ctx.inventory)
        free, total, source = free_bytes(torch, rt)
        cap_mib = params.max_mib or (0 if rt.choice.is_cuda else CPU_DEFAULT_MAX_MIB)
        chunk = (params.chunk_mib or (GPU_CHUNK_MIB if rt.choice.is_cuda else CPU_CHUNK_MIB)) * MIB
        chunk = min(chunk, max(int(free * params.fraction) // 2, calc.WORD_BYTES))
        region = calc.region_bytes(free, params.fraction, cap_mib * MIB or None, chunk)
        if region < calc.WORD_BYTES:
            raise ProbeError(
                f"nothing to test: {free / MIB:.0f} MiB free ({source})", hint="free the device's memory"
            )
        watch = self.watch(rt, params, ctx.inventory)
        watch.begin()
        started = self.clock()
        chunks, short = self.allocate(torch, rt.device, region, chunk)
        if not chunks:
            watch.end()
            raise ProbeError(f"could not allocate a chunk of {chunk / MIB:.0f} MiB: {short}")
        mem = Region(chunks)
        tested = mem.words * calc.WORD_BYTES
        scratch = torch.empty(max(c.numel() for c in chunks), dtype=torch.int64, device=rt.device)
        env = Env(
            torch,
            mem,
            scratch,
            params.seed,
            started + params.max_time_s,
            rt.clock.settle,
            self.clock,
            self.sleep,
            params.retention_s,
            Progress(len(chunks)),
        )
        results: list[calc.PatternResult] = []
        fault: BaseException | None = None
        try:
            with torch.no_grad():
                for passno, name in schedule(params, lambda: self.clock() > env.deadline):
                    r = run_pattern(env, name, passno)
                    results.append(r)
                    report_progress(ctx, progress_line(passno, r))
        except RuntimeError as exc:
            if not cw.is_cuda_error(exc):
                raise
            fault = exc
        finally:
            watch.end()
        items = watch.items()
        reason = None
        if fault is not None:
            reason = cw.fault_reason(ctx.subject, fault, f"the memtest, {env.progress.where(tested)}", items)
            if reason is None:
                raise fault
        del chunks, scratch, mem, env.region, env.scratch
        seconds = self.clock() - started
        out, uncovered = self._measurements(
            params, ctx, rt, results, tested, free, total, source, short, chunk, seconds
        )
        out[0].settings.update(watch.settings())
        if fault is not None:
            out[0] = replace(out[0], sanity=reason)
            out[0].settings["stopped_by"] = " ".join(str(fault).split())[:300]
        if fault is not None:  # the FAIL says how far it got
            uncovered = [u for u in uncovered if u.metric != "mismatched_words"]
        return [*out, *uncovered, *to_measurements(items, ctx.subject, {}, cw.convention)]

    @staticmethod
    def _measurements(
        params: MemtestParams,
        ctx: ProbeContext,
        rt: td.Runtime,
        results: list[calc.PatternResult],
        tested: int,
        free: int,
        total: int,
        source: str,
        short: str,
        chunk: int,
        elapsed: float,
    ) -> tuple[list[Measurement], list[Unmeasured]]:
        """The pattern test's measurements, and the metric it could not measure when the time
        ran out before any pattern covered the region."""
        from hpcbench.core.measurement import Measurement, Unmeasured

        kind = "GPU" if rt.choice.is_cuda else "host"
        written = sum(r.bytes_written for r in results)
        read = sum(r.bytes_read for r in results)
        seconds = sum(r.seconds for r in results)
        wrong = sum(r.mismatches for r in results)
        done = [f"{r.pattern}" + ("" if r.complete else " (cut short)") for r in results]
        share = f"{tested / free:.0%} of the {free / 2**30:.2f} GiB free"
        coverage = f"{tested / 2**30:.2f} GiB of {kind} memory ({share})"
        passes_done = max((r.passno for r in results if r.complete), default=0)
        if params.passes == 0:
            coverage += (
                f"; {len(results)} pattern run(s) in {params.max_time_s:g} s (pass {passes_done} the last)"
            )
        else:
            todo = params.passes * len(params.patterns) - len(results)
            if todo or not all(r.complete for r in results):
                coverage += f"; max_time_s {params.max_time_s:g} reached with {todo} pattern run(s) left"
        settings: dict[str, Any] = {
            "device": rt.info,
            "free_bytes": free,
            "total_bytes": total,
            "free_source": source,
            "fraction": params.fraction,
            "tested_bytes": tested,
            "chunk_bytes": chunk,
            "allocation": short or "as planned",
            "patterns": [r.as_dict() for r in results],
            "passes": params.passes,
            "seed": params.seed,
            "max_time_s": params.max_time_s,
            "seconds": round(elapsed, 3),
            "word_bytes": calc.WORD_BYTES,
        }
        sanity = calc.mismatch_reason(ctx.subject, results, kind)
        uncovered: list[Unmeasured] = []
        detail = f"{wrong:,} wrong words; {coverage}; patterns {', '.join(done)}"
        if not calc.covered(results):
            furthest = max(results, key=lambda r: r.chunks_done, default=None)
            got = (
                f" ({furthest.pattern}: {furthest.chunks_done} of {furthest.chunks_total} chunks)"
                if furthest
                else ""
            )
            uncovered.append(
                Unmeasured(
                    "mismatched_words",
                    "could_not_measure",
                    f"max_time_s {params.max_time_s:g} s ended before any pattern covered the "
                    f"{tested / 2**30:.2f} GiB tested{got}: raise max_time_s or test less memory (max_mib)",
                )
            )
        return [
            Measurement.from_samples(
                "mismatched_words",
                [float(wrong)],
                "count",
                ctx.subject,
                higher_is_better=False,
                convention="64-bit words read back different from what was written",
                settings=settings,
                sanity=sanity,
                detail=detail,
            ),
            Measurement.from_samples(
                "bandwidth",
                [calc.gbps(written, read, seconds)],
                "GB/s",
                ctx.subject,
                convention="device memory traffic of the patterns' kernels (written + read) / their "
                "seconds, 1e9",
                detail=f"{(written + read) / 1e9:.1f} GB moved in {seconds:.2f} s "
                f"({sum(r.words for r in results) * calc.WORD_BYTES / 1e9:.1f} GB of words checked)",
                settings={
                    "bytes_written": written,
                    "bytes_read": read,
                    "seconds": round(seconds, 6),
                },
            ),
        ], uncovered
