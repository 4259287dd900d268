"""Pure helpers of the memtest probe: the patterns, the expected words of a stretch of memory,
the comparison of what was read back with them, the size of the tested region and its rate.

Memory is tested in 64-bit words (torch int64). The patterns, as memtest86 and DCGM's memtest use
them: every word 0x00..00, 0xFF..FF, 0x55..55, 0xAA..AA (neighbouring bits opposite, then swapped);
walking ones (word i holds bit i mod 64 alone: address and data lines one at a time); each word
holding its own address (its byte address on the device: aliasing addresses show as another
word's address); seeded random words (reproducible, so the expected words are generated again
for the comparison instead of being stored).

GB/s tested = (bytes written + bytes read back) / seconds / 1e9: each pattern writes the tested
region once and reads it once; the seconds include generating the expected words on the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WORD_BYTES = 8
#: fixed patterns: every byte of every word
FIXED = {"0x00": 0x00, "0xff": 0xFF, "0x55": 0x55, "0xaa": 0xAA}
PATTERNS: tuple[str, ...] = (*FIXED, "walking_ones", "address", "random")
FIRST = 5


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
    if name == "address":
        base = int(chunk.data_ptr())
        torch.arange(
            base, base + WORD_BYTES * n, WORD_BYTES, dtype=torch.int64, device=chunk.device, out=view
        )
        return view
    if name == "random":
        gen = torch.Generator(device=chunk.device).manual_seed(seed * 1_000_003 + index)
        view.random_(-(2**63), 2**63 - 1, generator=gen)  # the sign bit too
        return view
    raise ValueError(f"unknown pattern {name!r}; known: {', '.join(PATTERNS)}")


@dataclass(frozen=True)
class WordMismatch:
    """Words that differ from what was written: how many, and the first few as (byte offset in the
    tested region, word found, word expected), both unsigned."""

    count: int
    first: tuple[tuple[int, int, int], ...] = ()


def compare(torch: Any, actual: Any, want: int | Any, byte_offset: int, first: int = FIRST) -> WordMismatch:
    """``actual`` (int64 words) against ``want`` (a word or a tensor of words), on their device;
    changes neither. ``byte_offset``: where ``actual`` starts in the tested region."""
    bad = actual != want
    count = int(bad.sum().item())
    if not count:
        return WordMismatch(0)
    idx = bad.nonzero().reshape(-1)[:first]
    found = actual[idx].tolist()
    wanted = [want] * len(found) if isinstance(want, int) else want[idx].tolist()
    mask = (1 << 64) - 1
    return WordMismatch(
        count,
        tuple(
            (byte_offset + WORD_BYTES * int(i), int(f) & mask, int(w) & mask)
            for i, f, w in zip(idx.tolist(), found, wanted, strict=True)
        ),
    )


@dataclass(frozen=True)
class PatternResult:
    """One pattern over the tested region: mismatching words and where, bytes moved, seconds."""

    pattern: str
    passno: int
    words: int
    mismatches: int
    first: tuple[tuple[int, int, int], ...]
    bytes_written: int
    bytes_read: int
    seconds: float
    complete: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "pattern": self.pattern,
            "pass": self.passno,
            "words": self.words,
            "mismatches": self.mismatches,
            "first": [
                {"offset": f"0x{o:x}", "found": f"0x{g:016x}", "expected": f"0x{e:016x}"}
                for o, g, e in self.first
            ],
            "bytes_written": self.bytes_written,
            "bytes_read": self.bytes_read,
            "seconds": round(self.seconds, 6),
            "complete": self.complete,
        }


def gbps(bytes_written: int, bytes_read: int, seconds: float) -> float:
    """GB/s tested: bytes written plus bytes read back, per second, 1e9."""
    return (bytes_written + bytes_read) / seconds / 1e9 if seconds > 0 else 0.0


def region_bytes(free: int, fraction: float, cap: int | None, chunk: int) -> int:
    """Bytes to test: ``fraction`` of ``free`` memory less one chunk (the expected words of the
    computed patterns), at most ``cap``, in whole 64-bit words."""
    size = int(free * fraction) - chunk
    if cap:
        size = min(size, cap)
    return max(size - size % WORD_BYTES, 0)


def mismatch_reason(subject: str, results: list[PatternResult], device: str) -> str | None:
    """``gpu3: 1 of 16,777,216 words read back wrong under pattern random (pass 1); first at byte
    0x1f40 of the tested region: 0x...; 3 patterns affected``; None when every word was right."""
    bad = [r for r in results if r.mismatches]
    if not bad:
        return None
    r = bad[0]
    off, found, want = r.first[0]
    text = (
        f"{subject}: {r.mismatches:,} of {r.words:,} words read back wrong under pattern {r.pattern} "
        f"(pass {r.passno}); first at byte 0x{off:x} of the tested {device} memory: "
        f"0x{found:016x}, expected 0x{want:016x} (bits 0x{found ^ want:016x} flipped)"
    )
    if len(bad) > 1:
        total = sum(b.mismatches for b in bad)
        text += f"; {total:,} wrong words under {len(bad)} patterns: " + ", ".join(
            f"{b.pattern} {b.mismatches:,}" for b in bad
        )
    return text
