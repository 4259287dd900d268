"""CPU memory bandwidth: STREAM's four kernels (copy, scale, add, triad) in torch.

The kernels run on float64 CPU tensors with in-place ``out=`` operations, so
no temporaries are allocated in the timed loop; bytes are counted the way
STREAM counts them (copy and scale move 16 B per element, add and triad 24 B)
and GB/s is 1e9 B/s. After the timed loop the arrays are validated against
STREAM's scalar recurrence (``checkSTREAMresults``); a wrong result sets
``sanity`` on every measurement instead of raising. Copy and scale also run as
complex128 multiplications (``kernel_variants``: same values, same bytes), and
each kernel reports its faster implementation.

With ``numa_node`` set, the process is pinned to that node's CPUs before torch
is imported (and every thread already running is pinned too), OpenMP binding
is requested, and the arrays are first touched by torch's parallel fill, so
their pages land on the pinned node.

torch is imported inside ``run()`` only: ``hpcbench list`` imports this module
and must start fast.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from hpcbench.core.errors import ProbeError
from hpcbench.probes.base import ProbeContext, Requirement, check

if TYPE_CHECKING:  # run() imports what it uses: `hpcbench list` reads only the header and Params
    from hpcbench.core.measurement import Measurement
    from hpcbench.hw.torch_device import Clock
    from hpcbench.node.inventory import Inventory

KERNELS: tuple[str, ...] = ("copy", "scale", "add", "triad")
#: arrays each kernel reads plus writes (STREAM's counting)
_ARRAYS_MOVED = {"copy": 2, "scale": 2, "add": 3, "triad": 3}
ITEMSIZE = 8  # float64
SCALAR = 3.0  # STREAM's scalar
EPSILON = 1e-13  # STREAM's tolerance for float64
FALLBACK_ARRAY_BYTES = 256 * 2**20  # per array, when the LLC size is unknown
MIN_ARRAY_ELEMENTS = 1024
#: the three arrays use at most this fraction of the node's memory by default
MEMORY_FRACTION = 0.25
#: beyond this many iterations STREAM's recurrence (x15 per iteration) overflows float64
MAX_ITERATIONS = 250


def stream_bytes(kernel: str, n: int, itemsize: int = ITEMSIZE) -> int:
    """Bytes one kernel moves over ``n`` elements, counted as STREAM counts them."""
    if kernel not in _ARRAYS_MOVED:
        raise ValueError(f"unknown STREAM kernel {kernel!r}; known: {', '.join(KERNELS)}")
    return _ARRAYS_MOVED[kernel] * itemsize * n


def default_array_size(llc_bytes: int | None, mem_bytes: int | None, itemsize: int = ITEMSIZE) -> int:
    """Elements per array: 4x the last-level cache (STREAM's rule), capped by memory.

    Unknown LLC: 256 MiB per array. The three arrays never take more than a
    quarter of the node's memory.
    """
    per_array = 4 * llc_bytes if llc_bytes else FALLBACK_ARRAY_BYTES
    if mem_bytes:
        per_array = min(per_array, int(mem_bytes * MEMORY_FRACTION / 3))
    return max(MIN_ARRAY_ELEMENTS, per_array // itemsize)


def expected_values(iterations: int, scalar: float = SCALAR) -> tuple[float, float, float]:
    """The values of a, b, c after STREAM's init and ``iterations`` rounds of the four kernels."""
    a, b, c = 1.0, 2.0, 0.0
    a = 2.0 * a  # STREAM's init scales a once (its timer-granularity test)
    for _ in range(iterations):
        c = a
        b = scalar * c
        c = a + b
        a = b + scalar * c
    return a, b, c


def validate_stream(arrays: dict[str, Any], iterations: int, scalar: float = SCALAR) -> str | None:
    """None when each array's average relative error is below 1e-13, else a one-line reason.

    ``arrays`` maps ``a``, ``b``, ``c`` to torch tensors or numpy arrays.
    """
    expected = dict(zip("abc", expected_values(iterations, scalar), strict=True))
    failures = []
    for name in "abc":
        want = expected[name]
        err = float(abs(arrays[name] - want).mean()) / abs(want) if want else float(abs(arrays[name]).mean())
        if not err <= EPSILON:  # NaN fails too
            failures.append(f"array {name} average relative error {err:.3g} (expected value {want:.6g})")
    if not failures:
        return None
    return f"STREAM validation failed after {iterations} iterations: " + "; ".join(failures)


def numa_cpus(inventory: Inventory, node: int) -> list[int]:
    """The CPUs of NUMA node ``node`` from the inventory; ProbeError when it is not there."""
    nodes = inventory.numa.nodes
    for entry in nodes:
        if entry.id == node:
            cpus = sorted(set(entry.cpus))
            if not cpus:
                raise ProbeError(f"NUMA node {node} has no CPUs in the inventory")
            return cpus
    known = ", ".join(str(e.id) for e in nodes) or "none"
    raise ProbeError(f"NUMA node {node} is not in this node's inventory (known NUMA nodes: {known})")


def _pin(cpus: list[int]) -> list[int]:
    """Pin every thread of this process to ``cpus``; the CPUs actually allowed afterwards."""
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as exc:
        raise ProbeError(f"cannot pin to CPUs {cpus}: {exc}") from None
    try:  # threads already running (e.g. an OpenMP pool) do not inherit the new mask
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = []
    for tid in tids:
        with contextlib.suppress(OSError):  # the thread has exited
            os.sched_setaffinity(tid, cpus)
    return sorted(os.sched_getaffinity(0))


def _parallel_backend(torch: Any) -> str:
    for line in torch.__config__.parallel_info().splitlines():
        if line.startswith("ATen parallel backend:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def stream_kernels(torch: Any, a: Any, b: Any, c: Any) -> dict[str, Callable[[], Any]]:
    """STREAM's four kernels on float64 tensors, in place (no temporaries), in STREAM's order."""
    return {
        "copy": lambda: c.copy_(a),
        "scale": lambda: torch.mul(c, SCALAR, out=b),
        "add": lambda: torch.add(a, b, out=c),
        "triad": lambda: torch.add(b, c, alpha=SCALAR, out=a),
    }


def kernel_variants(torch: Any, a: Any, b: Any, c: Any) -> dict[str, dict[str, Callable[[], Any]]]:
    """Each kernel's implementations: the same result and the same bytes, other instructions.

    ``plain`` is torch's own kernel. ``complex128`` runs copy and scale on complex views of the
    arrays (pairs of float64), multiplying by the real 1 and by STREAM's scalar: every float64
    comes out exactly as the plain kernel writes it, but the loop spends more instructions per
    cache line. Where torch's wide-vector copy and scale issue memory operations too densely
    (AMD Zen 4 at high bandwidth: 7-12% below gcc's SSE2 STREAM), that pacing recovers the loss.
    The probe times every implementation in every iteration and reports, per kernel, the one with
    the shorter median call; the others' samples stay in the settings.
    """
    variants = {kernel: {"plain": fn} for kernel, fn in stream_kernels(torch, a, b, c).items()}
    if a.numel() % 2 == 0:  # complex views need whole pairs
        ac, bc, cc = (t.view(torch.complex128) for t in (a, b, c))
        variants["copy"]["complex128"] = lambda: torch.mul(ac, 1.0, out=cc)
        variants["scale"]["complex128"] = lambda: torch.mul(cc, SCALAR, out=bc)
    return variants


def choose_variants(times: dict[str, dict[str, list[float]]]) -> dict[str, str]:
    """Per kernel, the implementation with the shortest median call; ``plain`` on a tie."""
    from hpcbench.core.stats import fastest

    return {
        kernel: fastest(by_name, prefer="plain") if any(by_name.values()) else "plain"
        for kernel, by_name in times.items()
    }


def time_kernel(fn: Callable[[], Any], clock: Clock | None = None) -> float:
    """Seconds one kernel call takes: ``time.perf_counter`` around it (CPU ops are synchronous),
    or the marks of ``clock`` (tests pass one with fixed timings)."""
    from hpcbench.hw.torch_device import PerfCounterClock

    clock = clock or PerfCounterClock()
    begin = clock.start()
    fn()
    end = clock.stop()
    return clock.seconds([(begin, end)])[0]


def time_variants(
    variants: dict[str, dict[str, Callable[[], Any]]],
    warmup: int,
    repeats: int,
    clock: Clock | None = None,
) -> dict[str, dict[str, list[float]]]:
    """Seconds per call of every implementation of every kernel, ``repeats`` timed iterations after
    ``warmup`` untimed ones. Within an iteration a kernel's implementations run one after another
    (their order alternating by iteration), so they meet the same conditions; each writes the
    same values however often it runs, so STREAM's validation still counts iterations."""
    times: dict[str, dict[str, list[float]]] = {k: {name: [] for name in variants[k]} for k in KERNELS}
    for iteration in range(warmup + repeats):
        for kernel in KERNELS:
            names = list(variants[kernel])
            for name in names if iteration % 2 == 0 else names[::-1]:
                fn = variants[kernel][name]
                if iteration < warmup:
                    fn()
                else:
                    times[kernel][name].append(time_kernel(fn, clock))
    return times


@dataclass(frozen=True)
class CpuMembwParams:
    array_size: int = field(default=0, metadata={"help": "elements per array; 0 = 4x the last-level cache"})
    threads: int = field(default=0, metadata={"help": "threads; 0 = all CPUs of the subject"})
    repeats: int = field(default=10, metadata={"help": "timed iterations of the four kernels (>= 2)"})
    warmup: int = field(default=2, metadata={"help": "untimed iterations before the timed ones"})
    huge_pages: bool = field(
        default=True,
        metadata={"help": "back the arrays with transparent huge pages (torch's THP_MEM_ALLOC_ENABLE)"},
    )
    numa_node: int | None = field(
        default=None,
        metadata={"help": "pin to this NUMA node's CPUs and memory (first touch); None = no pinning"},
    )

    def __post_init__(self) -> None:
        name = "cpu_membw"
        check(self.array_size >= 0, name, "array_size", f"must be >= 0 (0 = auto), got {self.array_size}")
        check(self.threads >= 0, name, "threads", f"must be >= 0 (0 = all CPUs), got {self.threads}")
        check(self.repeats >= 2, name, "repeats", f"must be >= 2, got {self.repeats}")
        check(self.warmup >= 0, name, "warmup", f"must be >= 0, got {self.warmup}")
        check(
            self.repeats + self.warmup <= MAX_ITERATIONS,
            name,
            "repeats",
            f"repeats + warmup must be <= {MAX_ITERATIONS} (STREAM's check values overflow float64 beyond)",
        )
        node = self.numa_node
        check(node is None or node >= 0, name, "numa_node", f"must be >= 0 or None, got {node}")


class CpuMembw:
    """STREAM copy/scale/add/triad bandwidth of the CPU memory, optionally per NUMA node."""

    name: ClassVar[str] = "cpu_membw"
    description: ClassVar[str] = "CPU memory bandwidth: STREAM copy, scale, add, triad (GB/s, torch float64)"
    Params: ClassVar[type] = CpuMembwParams
    requires: ClassVar[tuple[Requirement, ...]] = ()
    expands: ClassVar[dict[str, str]] = {"numa": "numa_node"}
    metrics: ClassVar[tuple[str, ...]] = KERNELS

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock  # None: time.perf_counter (tests pass fixed timings)

    def run(self, params: CpuMembwParams, ctx: ProbeContext) -> list[Measurement]:
        from hpcbench.core.measurement import Conditions, Measurement

        inventory = ctx.inventory
        mem_bytes = inventory.memory.total_bytes
        n = params.array_size or default_array_size(inventory.cpu.llc_bytes, mem_bytes)
        if mem_bytes and 3 * n * ITEMSIZE > 0.8 * mem_bytes:
            raise ProbeError(
                f"3 arrays of {n} float64 ({3 * n * ITEMSIZE / 2**30:.1f} GiB) do not fit in "
                f"{mem_bytes / 2**30:.1f} GiB of memory",
                hint="lower array_size",
            )

        torch_preloaded = "torch" in sys.modules
        if params.numa_node is not None:
            # before torch: its OpenMP pool inherits the mask and binds within it
            cpus = _pin(numa_cpus(inventory, params.numa_node))
            os.environ.setdefault("OMP_PROC_BIND", "close")
            os.environ.setdefault("OMP_PLACES", "cores")
        else:
            cpus = sorted(os.sched_getaffinity(0))
        threads = params.threads or len(cpus)

        if params.huge_pages and not torch_preloaded:
            # torch's CPU allocator then aligns large blocks to 2 MiB and madvises huge pages:
            # fewer TLB misses, and on VMs a far steadier number
            os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

        import torch

        torch.set_num_threads(threads)
        with torch.no_grad():
            a = torch.empty(n, dtype=torch.float64)
            b = torch.empty(n, dtype=torch.float64)
            c = torch.empty(n, dtype=torch.float64)
            # parallel first touch: each thread faults in its own pages on its own node
            a.fill_(1.0)
            b.fill_(2.0)
            c.fill_(0.0)
            a.mul_(2.0)
            times = time_variants(kernel_variants(torch, a, b, c), params.warmup, params.repeats, self.clock)
            sanity = validate_stream({"a": a, "b": b, "c": c}, params.warmup + params.repeats)
            del a, b, c

        settings = {
            "array_elements": n,
            "array_bytes_each": n * ITEMSIZE,
            "threads": threads,
            "cpus": cpus,
            "numa_node": params.numa_node,
            "dtype": "float64",
            "torch_version": torch.__version__,
            "torch_parallel_backend": _parallel_backend(torch),
            "torch_threads": torch.get_num_threads(),
            "torch_preloaded": torch_preloaded,
            "huge_pages": params.huge_pages and os.environ.get("THP_MEM_ALLOC_ENABLE") == "1",
            "omp_proc_bind": os.environ.get("OMP_PROC_BIND"),
            "omp_places": os.environ.get("OMP_PLACES"),
            "repeats": params.repeats,
            "warmup": params.warmup,
            "scalar": SCALAR,
        }
        chosen = choose_variants(times)
        gbs = {
            k: {name: [stream_bytes(k, n) / t / 1e9 for t in ts] for name, ts in by.items()}
            for k, by in times.items()
        }
        return [
            Measurement.from_samples(
                kernel,
                gbs[kernel][chosen[kernel]],
                "GB/s",
                ctx.subject,
                statistic="best",
                convention="STREAM",
                settings={
                    **settings,
                    "implementation": chosen[kernel],
                    "other_implementations_gbs": {
                        name: samples for name, samples in gbs[kernel].items() if name != chosen[kernel]
                    },
                },
                sanity=sanity,
                conditions=Conditions(
                    threads=threads, cpus=tuple(cpus) if params.numa_node is not None else ()
                ),
            )
            for kernel in KERNELS
        ]
