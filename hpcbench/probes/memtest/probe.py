"""Memory pattern test: HBM on a GPU (host memory with ``device=cpu``), as DCGM's memtest and
memtest86 do it, in torch so the same code runs on both.

``fraction`` of the *free* memory (at most ``max_mib``; on the CPU device 1 GiB unless told) is
allocated in chunks of ``chunk_mib`` as 64-bit words. For each pattern (``calc.PATTERNS``) every
chunk is written, then every chunk is read back and compared on the device with what was
written (generated again for the computed patterns). Any word read back wrong sets ``sanity``:
a FAIL of its own, with the pattern, the count and the first offsets. The test stops at
``max_time_s`` between chunks (the record says how far it got). GB/s tested is recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hpcbench.core.errors import ProbeError
from hpcbench.core.measurement import Measurement
from hpcbench.hw import gpu_probe as gp
from hpcbench.probes.base import GpuProbe, ProbeContext, check, report_progress
from hpcbench.probes.memtest import calc

if TYPE_CHECKING:  # run() imports what it uses: `hpcbench list` reads only the header and Params
    from hpcbench.hw import torch_device as td

NAME = "memtest"
MIB = 2**20
CPU_DEFAULT_MAX_MIB = 1024
GPU_CHUNK_MIB = 1024
CPU_CHUNK_MIB = 64


@dataclass(frozen=True)
class MemtestParams:
    device: int | str = gp.device_field()
    fraction: float = field(default=0.9, metadata={"help": "fraction of the free memory to test (0-0.98]"})
    max_mib: int = field(
        default=0, metadata={"help": "test at most this many MiB; 0 = no cap on a GPU, 1024 on the CPU"}
    )
    chunk_mib: int = field(default=0, metadata={"help": "MiB per chunk; 0 = 1024 on a GPU, 64 on the CPU"})
    patterns: list[str] = field(
        default_factory=lambda: list(calc.PATTERNS), metadata={"help": f"of {', '.join(calc.PATTERNS)}"}
    )
    passes: int = field(default=1, metadata={"help": "times every pattern runs"})
    max_time_s: float = field(
        default=300.0,
        metadata={"help": "stop after this many seconds (between chunks); the record says where"},
    )
    seed: int = field(default=0, metadata={"help": "seed of the random pattern"})

    def __post_init__(self) -> None:
        gp.check_device(NAME, self.device)
        check(0 < self.fraction <= 0.98, NAME, "fraction", f"must be in (0, 0.98], got {self.fraction}")
        check(self.max_mib >= 0, NAME, "max_mib", f"must be >= 0, got {self.max_mib}")
        check(self.chunk_mib >= 0, NAME, "chunk_mib", f"must be >= 0, got {self.chunk_mib}")
        check(bool(self.patterns), NAME, "patterns", "expected at least one pattern")
        for p in self.patterns:
            check(p in calc.PATTERNS, NAME, "patterns", f"unknown {p!r}; known: {', '.join(calc.PATTERNS)}")
        check(self.passes >= 1, NAME, "passes", f"must be >= 1, got {self.passes}")
        check(self.max_time_s > 0, NAME, "max_time_s", f"must be > 0, got {self.max_time_s}")


def free_bytes(torch: Any, rt: td.Runtime) -> tuple[int, int, str]:
    """(free, total, source) bytes of the device's memory."""
    if rt.choice.is_cuda:
        from hpcbench.hw import cuda_only

        free, total = cuda_only.memory_info(torch, rt.choice.cuda_ordinal)
        return free, total, "torch.cuda.mem_get_info"
    import psutil

    vm = psutil.virtual_memory()
    return int(vm.available), int(vm.total), "psutil.virtual_memory().available"


def allocate(torch: Any, device: Any, region: int, chunk: int) -> tuple[list[Any], str]:
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


def write(chunk: Any, want: int | Any) -> None:
    """Write a pattern into a chunk (a word, or a tensor of words)."""
    if isinstance(want, int):
        chunk.fill_(want)
    else:
        chunk.copy_(want)


def test_pattern(
    torch: Any,
    chunks: list[Any],
    scratch: Any,
    name: str,
    passno: int,
    seed: int,
    settle: Callable[[], None],
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
) -> calc.PatternResult:
    """Write every chunk with the pattern, then read each back and compare; stops at ``deadline``."""
    starts, first_word = [], 0
    for c in chunks:
        starts.append(first_word)
        first_word += c.numel()
    t0 = clock()
    written = read = 0
    complete = True
    filled = 0
    for i, c in enumerate(chunks):
        if clock() > deadline:
            complete = False
            break
        write(c, calc.expected(torch, name, c, starts[i], seed + passno, i, scratch))
        written += c.numel() * calc.WORD_BYTES
        filled += 1
    settle()
    mismatches, first = 0, []
    checked = 0
    for i, c in enumerate(chunks[:filled]):
        if clock() > deadline:
            complete = False
            break
        want = calc.expected(torch, name, c, starts[i], seed + passno, i, scratch)
        found = calc.compare(torch, c, want, starts[i] * calc.WORD_BYTES)
        mismatches += found.count
        first.extend(found.first)
        read += c.numel() * calc.WORD_BYTES
        checked += 1
    settle()
    words = sum(c.numel() for c in chunks[:checked])
    return calc.PatternResult(
        name, passno, words, mismatches, tuple(first[: calc.FIRST]), written, read, clock() - t0, complete
    )


def progress_line(passno: int, r: calc.PatternResult) -> str:
    gib = r.words * calc.WORD_BYTES / 2**30
    rate = calc.gbps(r.bytes_written, r.bytes_read, r.seconds)
    return f"pass {passno} {r.pattern}: {gib:.2f} GiB, {r.mismatches} wrong, {rate:.1f} GB/s"


class Memtest(GpuProbe):
    """Pattern test of GPU (or host) memory: every word written and read back, on the device."""

    name = NAME
    description = (
        "Memory pattern test (HBM, or host memory on the CPU device): fixed, walking ones, address, random"
    )
    Params = MemtestParams
    metrics = ("mismatched_words", "bandwidth")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock  # tests pass a clock of their own, so the GB/s are pinned

    def run(self, params: MemtestParams, ctx: ProbeContext) -> list[Measurement]:
        torch, rt, _, _ = gp.open_device(params.device, ctx.inventory)
        free, total, source = free_bytes(torch, rt)
        cap_mib = params.max_mib or (0 if rt.choice.is_cuda else CPU_DEFAULT_MAX_MIB)
        chunk = (params.chunk_mib or (GPU_CHUNK_MIB if rt.choice.is_cuda else CPU_CHUNK_MIB)) * MIB
        chunk = min(chunk, max(int(free * params.fraction) // 2, calc.WORD_BYTES))
        region = calc.region_bytes(free, params.fraction, cap_mib * MIB or None, chunk)
        if region < calc.WORD_BYTES:
            raise ProbeError(
                f"nothing to test: {free / MIB:.0f} MiB free ({source})", hint="free the device's memory"
            )
        started = self.clock()
        deadline = started + params.max_time_s
        chunks, short = allocate(torch, rt.device, region, chunk)
        if not chunks:
            raise ProbeError(f"could not allocate a chunk of {chunk / MIB:.0f} MiB: {short}")
        scratch = torch.empty(max(c.numel() for c in chunks), dtype=torch.int64, device=rt.device)
        results: list[calc.PatternResult] = []
        with torch.no_grad():
            for passno in range(1, params.passes + 1):
                for name in params.patterns:
                    if self.clock() > deadline:
                        break
                    r = test_pattern(
                        torch,
                        chunks,
                        scratch,
                        name,
                        passno,
                        params.seed,
                        rt.clock.settle,
                        deadline,
                        self.clock,
                    )
                    results.append(r)
                    report_progress(
                        ctx,
                        progress_line(passno, r),
                    )
        tested = sum(c.numel() for c in chunks) * calc.WORD_BYTES
        del chunks, scratch
        seconds = self.clock() - started
        return self._measurements(
            params, ctx, rt, results, tested, free, total, source, short, chunk, seconds
        )

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
    ) -> list[Measurement]:
        kind = "GPU" if rt.choice.is_cuda else "host"
        written = sum(r.bytes_written for r in results)
        read = sum(r.bytes_read for r in results)
        seconds = sum(r.seconds for r in results)
        wrong = sum(r.mismatches for r in results)
        done = [f"{r.pattern}" + ("" if r.complete else " (cut short)") for r in results]
        todo = params.passes * len(params.patterns) - len(results)
        share = f"{tested / free:.0%} of the {free / 2**30:.2f} GiB free"
        coverage = f"{tested / 2**30:.2f} GiB of {kind} memory ({share})"
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
        detail = f"{wrong:,} wrong words; {coverage}; patterns {', '.join(done)}"
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
                convention="(bytes written + bytes read back) / seconds of the patterns, 1e9",
                detail=f"{(written + read) / 1e9:.1f} GB moved in {seconds:.2f} s",
                settings={
                    "bytes_written": written,
                    "bytes_read": read,
                    "seconds": round(seconds, 6),
                },
            ),
        ]
