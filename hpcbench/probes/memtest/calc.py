"""Pure helpers of the memtest probe: the patterns, the expected words of a stretch of memory,
the comparison of what was read back with them (bounded in memory), where a wrong word is, the
size of the tested region, the traffic and its rate.

Memory is tested in 64-bit words (torch int64). The patterns, as memtest86 and DCGM's memtest use
them: every word 0x00..00, 0xFF..FF, 0x55..55, 0xAA..AA (neighbouring bits opposite, then swapped);
walking ones (word i holds bit i mod 64 alone: data lines one at a time); each word holding its
own byte offset in the tested region (``address``: unique across chunks, so a write that lands in
another chunk, an aliased address, shows as that chunk's offsets); seeded random words
(reproducible, so the expected words are generated again for the comparison instead of being
stored); ``moving_inversions`` (a March test at chunk granularity: write 0x00..00 everywhere; in
ascending chunk order read 0x00..00 and write 0xFF..FF; in descending order read 0xFF..FF and
write 0x00..00; read 0x00..00 everywhere) and ``retention`` (seeded random words, a pause of
``retention_s``, then the read: bits that fade while the memory is left alone).

A wrong word is named by its device address (the chunk's ``data_ptr`` plus its byte offset), its
chunk and its offset in the chunk.

Traffic (GB/s = bytes / seconds / 1e9) counts what each kernel moves in device memory: a fixed
pattern's fill writes the chunk once; a computed pattern writes its expected words into a scratch
buffer, then copies them (read + write); the read-back of a fixed pattern reads the chunk, of a
computed one writes the expected words again and reads both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WORD_BYTES = 8
#: fixed patterns: every byte of every word
FIXED = {"0x00": 0x00, "0xff": 0xFF, "0x55": 0x55, "0xaa": 0xAA}
PATTERNS: tuple[str, ...] = (*FIXED, "walking_ones", "address", "random", "moving_inversions", "retention")
#: what runs unless told: every pattern but the retention pause (it waits ``retention_s``)
DEFAULT_PATTERNS: tuple[str, ...] = PATTERNS[:-1]
#: patterns whose expected words are computed into a scratch buffer (not one word)
COMPUTED = ("walking_ones", "address", "random", "retention")
FIRST = 5
#: words of a chunk searched at once for the first wrong ones (bounds the index tensor)
SCAN_WORDS = 1 << 20


def as_int64(unsigned: int) -> int:
    """An unsigned 64-bit word as the signed int64 torch stores."""
    unsigned &= (1 << 64) - 1
    return unsigned - (1 << 64) if unsigned >= 1 << 63 else unsigned


def fixed_word(name: str) -> int:
    """The int64 word of a fixed pattern: its byte repeated eight times."""
    byte = FIXED[name]
    return as_int64(int.from_bytes(bytes([byte]) * WORD_BYTES, "little"))


def expected(
    torch: Any, name: str, chunk: Any, first_word: int, seed: int, index: int, out: Any
) -> int | Any:
    """What ``chunk`` (int64 words, the ``index``-th chunk, its first word the ``first_word``-th of
    the region) must hold under pattern ``name``: an int for a fixed pattern, else ``out`` filled."""
    if name in FIXED:
        return fixed_word(name)
    n = chunk.numel()
    view = out[:n]
    if name == "walking_ones":
        torch.arange(first_word, first_word + n, dtype=torch.int64, device=chunk.device, out=view)
        view.remainder_(64)
        torch.bitwise_left_shift(torch.ones((), dtype=torch.int64, device=chunk.device), view, out=view)
        return view
    if name == "address":  # each word's byte offset in the tested region
        start = WORD_BYTES * first_word
        torch.arange(
            start, start + WORD_BYTES * n, WORD_BYTES, dtype=torch.int64, device=chunk.device, out=view
        )
        return view
    if name in ("random", "retention"):
        salt = 1 if name == "retention" else 0
        gen = torch.Generator(device=chunk.device).manual_seed((seed * 1_000_003 + index) * 2 + salt)
        view.random_(-(2**63), 2**63 - 1, generator=gen)  # the sign bit too
        return view
    raise ValueError(f"unknown pattern {name!r}; known: {', '.join(PATTERNS)}")


@dataclass(frozen=True)
class WordMismatch:
    """Words of a chunk that differ from what was written: how many, and the first few as (word
    index in the chunk, word found, word expected), both unsigned."""

    count: int
    first: tuple[tuple[int, int, int], ...] = ()


def compare(
    torch: Any, actual: Any, want: int | Any, first: int = FIRST, scan: int = SCAN_WORDS
) -> WordMismatch:
    """``actual`` (int64 words) against ``want`` (a word or a tensor of words), on their device;
    changes neither. The first wrong words are searched ``scan`` words at a time, so a chunk that
    is wrong everywhere never allocates an index per word."""
    bad = actual != want
    count = int(bad.sum().item())
    if not count:
        return WordMismatch(0)
    idx: list[int] = []
    for lo in range(0, bad.numel(), scan):
        part = bad[lo : lo + scan]
        if bool(part.any()):
            idx += [lo + int(i) for i in part.nonzero().reshape(-1)[: first - len(idx)].tolist()]
        if len(idx) >= first:
            break
    at = torch.tensor(idx, dtype=torch.int64, device=actual.device)
    found = actual[at].tolist()
    wanted = [want] * len(found) if isinstance(want, int) else want[at].tolist()
    mask = (1 << 64) - 1
    return WordMismatch(
        count, tuple((i, int(f) & mask, int(w) & mask) for i, f, w in zip(idx, found, wanted, strict=True))
    )


@dataclass(frozen=True)
class Located:
    """A wrong word where the GPU has it: device address, chunk index, byte offset in the chunk."""

    address: int
    chunk: int
    offset: int
    found: int
    expected: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "address": f"0x{self.address:x}",
            "chunk": self.chunk,
            "offset": f"0x{self.offset:x}",
            "found": f"0x{self.found:016x}",
            "expected": f"0x{self.expected:016x}",
        }


def locate(m: WordMismatch, chunk_index: int, base_address: int) -> tuple[Located, ...]:
    """The first wrong words of chunk ``chunk_index`` (its first byte at ``base_address``)."""
    return tuple(
        Located(base_address + WORD_BYTES * i, chunk_index, WORD_BYTES * i, f, e) for i, f, e in m.first
    )


@dataclass(frozen=True)
class PatternResult:
    """One pattern over the tested region: mismatching words and where, bytes moved, seconds, and
    how far it got (``chunks_done`` of ``chunks_total`` read back; ``complete`` when all were)."""

    pattern: str
    passno: int
    words: int
    mismatches: int
    first: tuple[Located, ...]
    bytes_written: int
    bytes_read: int
    seconds: float
    complete: bool = True
    chunks_done: int = 0
    chunks_total: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "pattern": self.pattern,
            "pass": self.passno,
            "words": self.words,
            "mismatches": self.mismatches,
            "first": [f.as_dict() for f in self.first],
            "bytes_written": self.bytes_written,
            "bytes_read": self.bytes_read,
            "seconds": round(self.seconds, 6),
            "complete": self.complete,
            "chunks": [self.chunks_done, self.chunks_total],
        }


def write_traffic(name: str, words: int) -> tuple[int, int]:
    """(bytes written, bytes read) of writing ``words`` words of pattern ``name`` into a chunk."""
    n = WORD_BYTES * words
    return (2 * n, n) if name in COMPUTED else (n, 0)


def read_traffic(name: str, words: int) -> tuple[int, int]:
    """(bytes written, bytes read) of reading ``words`` words back and comparing them."""
    n = WORD_BYTES * words
    return (n, 2 * n) if name in COMPUTED else (0, n)


def gbps(bytes_written: int, bytes_read: int, seconds: float) -> float:
    """GB/s: bytes written plus bytes read, per second, 1e9."""
    return (bytes_written + bytes_read) / seconds / 1e9 if seconds > 0 else 0.0


def region_bytes(free: int, fraction: float, cap: int | None, chunk: int) -> int:
    """Bytes to test: ``fraction`` of ``free`` memory less one chunk (the expected words of the
    computed patterns), at most ``cap``, in whole 64-bit words."""
    size = int(free * fraction) - chunk
    if cap:
        size = min(size, cap)
    return max(size - size % WORD_BYTES, 0)


def mismatch_reason(subject: str, results: list[PatternResult], device: str) -> str | None:
    """``gpu3: 1 of 16,777,216 words read back wrong under pattern random (pass 1); first at device
    address 0x7f3a00001f40 (chunk 2, byte 0x1f40 of it): 0x..., expected 0x... (bits 0x... flipped);
    3 patterns affected``; None when every word was right."""
    bad = [r for r in results if r.mismatches]
    if not bad:
        return None
    r = bad[0]
    f = r.first[0]
    text = (
        f"{subject}: {r.mismatches:,} of {r.words:,} words read back wrong under pattern {r.pattern} "
        f"(pass {r.passno}); first at {device} address 0x{f.address:x} (chunk {f.chunk}, byte 0x{f.offset:x} "
        f"of it): 0x{f.found:016x}, expected 0x{f.expected:016x} (bits 0x{f.found ^ f.expected:016x} flipped)"
    )
    if len(bad) > 1:
        total = sum(b.mismatches for b in bad)
        text += f"; {total:,} wrong words under {len(bad)} patterns: " + ", ".join(
            f"{b.pattern} {b.mismatches:,}" for b in bad
        )
    return text


def covered(results: list[PatternResult]) -> bool:
    """Whether at least one pattern wrote and read back every chunk of the tested region."""
    return any(r.complete for r in results)
