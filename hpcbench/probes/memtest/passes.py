"""One pattern over the tested region, on the device: written chunk by chunk, then read back and
compared chunk by chunk (``calc``'s patterns; ``moving_inversions`` and ``retention`` as their
own sequences).

The device is waited for after every chunk (``settle``: ``torch.cuda.synchronize`` on a GPU), so
the deadline is checked against work done, not work queued: a GPU's writes are asynchronous, and
a loop that only queued them would pass the deadline check at once and then run for minutes.
``Progress`` says where the test is (pattern, pass, phase, chunk), for a CUDA error that ends it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hpcbench.probes.memtest import calc


@dataclass
class Region:
    """The tested memory: its chunks (int64 words) and the region word index each one starts at."""

    chunks: list[Any]
    starts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.starts:
            first = 0
            for c in self.chunks:
                self.starts.append(first)
                first += c.numel()

    @property
    def words(self) -> int:
        return sum(c.numel() for c in self.chunks)


@dataclass
class Progress:
    """Where the test is: pattern, pass, phase (write, read...) and chunk (0-based) of ``chunks``."""

    chunks: int = 0
    pattern: str = ""
    passno: int = 0
    phase: str = ""
    chunk: int = 0
    bytes_done: int = 0  # region bytes the pattern had written when it stopped

    def at(self, phase: str, chunk: int) -> None:
        self.phase, self.chunk = phase, chunk

    def where(self, region_bytes: int) -> str:
        """``pattern random (pass 1), read of chunk 12 of 124, 123.5 GiB written of 123.5``."""
        return (
            f"pattern {self.pattern} (pass {self.passno}), {self.phase} of chunk {self.chunk + 1} of "
            f"{self.chunks}, {size(self.bytes_done)} written of {size(region_bytes)}"
        )


def size(n: int) -> str:
    """``123.5 GiB``; ``3 MiB`` under a GiB."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def write(chunk: Any, want: int | Any) -> None:
    """Write a pattern into a chunk (a word, or a tensor of words)."""
    if isinstance(want, int):
        chunk.fill_(want)
    else:
        chunk.copy_(want)


@dataclass
class Env:
    """What every pattern run needs: the region, a scratch buffer, the seed, the device's wait,
    the deadline and the clocks (tests pass their own), the retention pause."""

    torch: Any
    region: Region
    scratch: Any
    seed: int
    deadline: float
    settle: Callable[[], None] = lambda: None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    retention_s: float = 0.0
    progress: Progress = field(default_factory=Progress)


@dataclass
class _Tally:
    written: int = 0
    read: int = 0
    mismatches: int = 0
    first: list[calc.Located] = field(default_factory=list)

    def traffic(self, moved: tuple[int, int]) -> None:
        self.written += moved[0]
        self.read += moved[1]

    def found(self, m: calc.WordMismatch, chunk: int, base: int) -> None:
        self.mismatches += m.count
        if len(self.first) < calc.FIRST:
            self.first += calc.locate(m, chunk, base)[: calc.FIRST - len(self.first)]


def run_pattern(env: Env, name: str, passno: int) -> calc.PatternResult:
    """Pattern ``name`` (pass ``passno``) over the region; stops at the deadline."""
    env.progress.pattern, env.progress.passno, env.progress.bytes_done = name, passno, 0
    if name == "moving_inversions":
        return _moving_inversions(env, passno)
    torch, chunks, starts = env.torch, env.region.chunks, env.region.starts
    t0 = env.clock()
    tally = _Tally()
    complete, filled, checked = True, 0, 0
    for i, c in enumerate(chunks):
        if env.clock() > env.deadline:
            complete = False
            break
        env.progress.at("write", i)
        write(c, calc.expected(torch, name, c, starts[i], env.seed + passno, i, env.scratch))
        env.settle()
        tally.traffic(calc.write_traffic(name, c.numel()))
        env.progress.bytes_done += c.numel() * calc.WORD_BYTES
        filled += 1
    if name == "retention" and complete:
        pause = min(env.retention_s, max(env.deadline - env.clock(), 0.0))
        env.progress.at("retention pause", filled - 1)
        env.sleep(pause)
        complete = pause >= env.retention_s
    for i, c in enumerate(chunks[:filled]):
        if env.clock() > env.deadline:
            complete = False
            break
        env.progress.at("read", i)
        want = calc.expected(torch, name, c, starts[i], env.seed + passno, i, env.scratch)
        tally.found(calc.compare(torch, c, want), i, int(c.data_ptr()))
        tally.traffic(calc.read_traffic(name, c.numel()))
        checked += 1
    env.settle()
    complete = complete and checked == len(chunks)
    words = sum(c.numel() for c in chunks[:checked])
    return calc.PatternResult(
        name,
        passno,
        words,
        tally.mismatches,
        tuple(tally.first),
        tally.written,
        tally.read,
        env.clock() - t0,
        complete,
        checked,
        len(chunks),
    )


def _moving_inversions(env: Env, passno: int) -> calc.PatternResult:
    """March at chunk granularity: up(w0); up(r0, w1); down(r1, w0); up(r0)."""
    torch, chunks = env.torch, env.region.chunks
    zero, ones = calc.fixed_word("0x00"), calc.fixed_word("0xff")
    order = list(range(len(chunks)))
    steps: list[tuple[str, list[int], int | None, int | None]] = [
        ("write 0s", order, None, zero),
        ("read 0s, write 1s", order, zero, ones),
        ("read 1s, write 0s", order[::-1], ones, zero),
        ("read 0s", order, zero, None),
    ]
    t0 = env.clock()
    tally = _Tally()
    complete, checked = True, 0
    for phase, indices, read_word, write_word in steps:
        checked = 0
        for i in indices:
            if env.clock() > env.deadline:
                complete = False
                break
            c = chunks[i]
            env.progress.at(phase, i)
            if read_word is not None:
                tally.found(calc.compare(torch, c, read_word), i, int(c.data_ptr()))
                tally.traffic((0, c.numel() * calc.WORD_BYTES))
            if write_word is not None:
                c.fill_(write_word)
                tally.traffic((c.numel() * calc.WORD_BYTES, 0))
                if read_word is None:
                    env.progress.bytes_done += c.numel() * calc.WORD_BYTES
            env.settle()
            checked += 1
        if not complete:
            break
    words = env.region.words if complete else sum(chunks[i].numel() for i in range(checked))
    return calc.PatternResult(
        "moving_inversions",
        passno,
        words,
        tally.mismatches,
        tuple(tally.first),
        tally.written,
        tally.read,
        env.clock() - t0,
        complete,
        checked if complete else 0,
        len(chunks),
    )
