"""Pure decisions of the ``collectives`` probe: sizes, nccl-tests' bandwidth factors, check data.

No torch here, no I/O: everything the probe decides about numbers is a function
of its arguments and is tested on its own.

Conventions follow nccl-tests (``PERFORMANCE.md``):

- ``size`` is the bytes nccl-tests prints in its ``size`` column: for all-reduce
  the buffer of each rank; for all-gather the whole *output* buffer (n chunks);
  for reduce-scatter the whole *input* buffer (n chunks). Element counts of
  all-gather and reduce-scatter are rounded down to a multiple of the ranks, as
  nccl-tests does.
- ``algbw = size / time``; ``busbw = algbw * factor`` with factor 2(n-1)/n for
  all-reduce and (n-1)/n for all-gather and reduce-scatter. GB/s is 1e9 B/s.
- ``time`` of a size is the per-iteration time of a loop of back-to-back
  iterations, averaged over the ranks (nccl-tests' default ``-a 1``).
- The average bus bandwidth is the plain mean of busbw over the sizes of the
  sweep (nccl-tests' "Avg bus bandwidth").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: `hpcbench list` imports this module for its constants
    pass

OPS: tuple[str, ...] = ("all_reduce", "all_gather", "reduce_scatter")
DTYPES: dict[str, int] = {"float32": 4, "float64": 8}
#: check data: rank r holds ((j + STRIDE*r) mod MODULUS) + 1 at global index j (integers, exact sums)
MODULUS = 251
STRIDE = 7
GiB = 2**30
MiB = 2**20
GPU_MAX_BYTES = 8 * GiB
CPU_MAX_BYTES = 64 * MiB
#: a GPU sweep's largest buffer takes at most this fraction of the smallest free GPU memory
GPU_MEMORY_FRACTION = 0.4
#: a CPU sweep's buffers (all ranks together) take at most this fraction of the node's memory
CPU_MEMORY_FRACTION = 0.25
#: float32 check sums are exact below 2**24
EXACT_LIMIT = {"float32": 2**24, "float64": 2**53}


def bus_factor(op: str, ranks: int) -> float:
    """nccl-tests' busbw / algbw factor: 2(n-1)/n for all-reduce, (n-1)/n for gather and scatter."""
    if ranks < 1:
        raise ValueError(f"ranks must be >= 1, got {ranks}")
    if op == "all_reduce":
        return 2 * (ranks - 1) / ranks
    if op in ("all_gather", "reduce_scatter"):
        return (ranks - 1) / ranks
    raise ValueError(f"unknown collective {op!r}; known: {', '.join(OPS)}")


def algbw_gbs(size_bytes: int, seconds: float) -> float:
    """Algorithm bandwidth in GB/s (1e9 B/s): the bytes of the size column over the time."""
    return size_bytes / seconds / 1e9


def busbw_gbs(op: str, size_bytes: int, seconds: float, ranks: int) -> float:
    return algbw_gbs(size_bytes, seconds) * bus_factor(op, ranks)


def sweep_sizes(min_bytes: int, max_bytes: int) -> list[int]:
    """min_bytes, doubling, up to and including max_bytes (nccl-tests ``-b -e -f 2``)."""
    if min_bytes < 1 or max_bytes < min_bytes:
        raise ValueError(f"need 1 <= min_bytes <= max_bytes, got {min_bytes}, {max_bytes}")
    sizes = []
    size = min_bytes
    while size <= max_bytes:
        sizes.append(size)
        size *= 2
    return sizes


@dataclass(frozen=True)
class OpShape:
    """Element counts of one collective at one size, as nccl-tests rounds them."""

    op: str
    size_bytes: int  # what the size column shows, after rounding
    count: int  # elements of the size column's buffer
    input_count: int  # elements each rank sends
    output_count: int  # elements each rank receives


def op_shape(op: str, size_bytes: int, itemsize: int, ranks: int) -> OpShape | None:
    """The buffers of ``op`` at ``size_bytes``; None when the size rounds to no element."""
    count = size_bytes // itemsize
    if op == "all_reduce":
        if count == 0:
            return None
        return OpShape(op, count * itemsize, count, count, count)
    bus_factor(op, ranks)  # validates op
    chunk = count // ranks
    if chunk == 0:
        return None
    count = chunk * ranks
    if op == "all_gather":
        return OpShape(op, count * itemsize, count, chunk, count)
    return OpShape(op, count * itemsize, count, count, chunk)


def floor_pow2(n: int) -> int:
    return 1 << (n.bit_length() - 1) if n >= 1 else 0


def default_max_bytes(
    backend: str, ranks: int, free_gpu_bytes: int | None = None, node_memory_bytes: int | None = None
) -> int:
    """The largest size of the sweep: 8 GiB on GPUs capped by free memory, 64 MiB on CPUs.

    Capped to a power of two that leaves room for the check data and the
    library's own buffers; at least 8 bytes.
    """
    if backend == "nccl":
        cap = GPU_MAX_BYTES
        if free_gpu_bytes:
            cap = min(cap, floor_pow2(int(free_gpu_bytes * GPU_MEMORY_FRACTION)))
    else:
        cap = CPU_MAX_BYTES
        if node_memory_bytes:
            # each rank holds about two buffers of the largest size
            cap = min(cap, floor_pow2(int(node_memory_bytes * CPU_MEMORY_FRACTION / (2 * max(ranks, 1)))))
    return max(cap, 8)


def timing_scale_exponent(ranks: int, iterations: int, limit: int = 100) -> int:
    """2**-e scales in-place all-reduce data so that n**iterations growth stays finite.

    An in-place sum multiplies the values by about n per iteration; starting
    from [1, 2) * 2**-e keeps float32 away from overflow for up to ``limit``
    bits of growth (and away from denormals, which would slow a CPU down).
    """
    if ranks < 2:
        return 0
    return min(limit, math.ceil(math.log2(ranks) * iterations))


def pattern(rank: int, index: int) -> int:
    """The check value rank ``rank`` holds at global index ``index`` (an integer 1..MODULUS)."""
    return (index + STRIDE * rank) % MODULUS + 1


def reduce_table(ranks: int) -> list[int]:
    """sum over ranks of pattern(r, j), indexed by j mod MODULUS (the exact all-reduce result)."""
    return [sum((c + STRIDE * r) % MODULUS + 1 for r in range(ranks)) for c in range(MODULUS)]


def check_exact(dtype: str, ranks: int) -> bool:
    """Whether the check sums are exact integers in ``dtype`` at this many ranks."""
    return ranks * MODULUS < EXACT_LIMIT[dtype]


def rank_average(per_rank_seconds: list[float]) -> float:
    """The time nccl-tests reports by default: the mean over ranks."""
    import statistics

    return statistics.fmean(per_rank_seconds)


def slowest(per_rank_seconds: list[float]) -> tuple[int, float]:
    """(rank, spread): the slowest rank and its time over the fastest rank's time."""
    worst = max(range(len(per_rank_seconds)), key=per_rank_seconds.__getitem__)
    fastest = min(per_rank_seconds)
    return worst, (per_rank_seconds[worst] / fastest if fastest > 0 else float("inf"))


def table_rows(
    op: str, shapes: list[OpShape], times: list[list[float]], wrong: list[list[int]], ranks: int
) -> list[dict[str, Any]]:
    """The per-size table of one op.

    ``times[r][k]``: rank r's seconds per iteration at size k; ``wrong[r][k]``:
    rank r's wrong elements at size k (nccl-tests' #wrong).
    """
    rows = []
    for k, shape in enumerate(shapes):
        per_rank = [times[r][k] for r in range(ranks)]
        seconds = rank_average(per_rank)
        worst, spread = slowest(per_rank)
        rows.append(
            {
                "size_bytes": shape.size_bytes,
                "count": shape.count,
                "time_us": seconds * 1e6,
                "algbw_gbs": algbw_gbs(shape.size_bytes, seconds),
                "busbw_gbs": busbw_gbs(op, shape.size_bytes, seconds, ranks),
                "wrong": sum(wrong[r][k] for r in range(ranks)),
                "rank_time_us": [t * 1e6 for t in per_rank],
                "slowest_rank": worst,
                "rank_spread": spread,
            }
        )
    return rows


def wrong_summary(op: str, shapes: list[OpShape], wrong: list[list[int]]) -> str | None:
    """None when every element was right, else the one-line sanity reason."""
    bad_sizes = [s.size_bytes for k, s in enumerate(shapes) if any(w[k] for w in wrong)]
    if not bad_sizes:
        return None
    total = sum(sum(w) for w in wrong)
    bad_ranks = [r for r, w in enumerate(wrong) if any(w)]
    sizes = ", ".join(human_size(s) for s in bad_sizes[:4]) + (" ..." if len(bad_sizes) > 4 else "")
    return (
        f"{op}: {total} wrong element(s) (nccl-tests #wrong) at {sizes} "
        f"on rank(s) {', '.join(map(str, bad_ranks))}"
    )


def human_size(n: int) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"
