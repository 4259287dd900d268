"""Every GEMM output checked on its device, without waiting for it.

After each GEMM the output's bits, read as integers of the same width, are summed into an int64
on the device (integer addition: exact and independent of the reduction's order, so a healthy
GPU's every output sums to the first one's), compared with the first output's sum, and the
result (0 or 1) added to a device-side counter. Nothing of it reaches the host until a verify
point reads the counter (one synchronisation, where the loop waits for the device anyway); a
count that grew since the last read names the verify window the wrong outputs fell in.

A flip of one bit changes the sum by a power of two, so it is always seen; several flips that
cancel exactly could hide from the sum (the full bit-for-bit comparison of the latest output at
each verify point, ``calc.compare``, still runs). Cost on a GPU: one read of the output per GEMM
(128 MiB for a bf16 8192^2 output: ~30 us at HBM speed against a ~1.4 ms GEMM, goal <= 3%, not
yet measured on a GPU); on the CPU it is measured by ``benchmarks/burn_checksum_cost.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpcbench.probes.burn.calc import BITS


class OutputChecksum:
    """``add(output)`` after every GEMM (asynchronous), ``read()`` at a verify point (synchronises)."""

    def __init__(self, torch: Any, reference: Any) -> None:
        self._torch = torch
        self._as = getattr(torch, BITS[str(reference.dtype).removeprefix("torch.")])
        self.expected = self._sum(reference)
        self.count = torch.zeros((), dtype=torch.int64, device=reference.device)

    def _sum(self, output: Any) -> Any:
        return output.reshape(-1).view(self._as).sum(dtype=self._torch.int64)

    def add(self, output: Any) -> None:
        """Count ``output`` if its bits do not sum to the first output's (queued on its device)."""
        self.count.add_(self._sum(output).ne(self.expected))

    def read(self) -> int:
        """Outputs whose sum differed, since the start."""
        return int(self.count.item())


@dataclass(frozen=True)
class FlipWindow:
    """Outputs whose checksum differed from the first's, between two verify points."""

    outputs: int  # how many of them
    first_iteration: int  # the window's first and last iteration (1 = the first after the reference)
    last_iteration: int
    start_s: float  # seconds since the timed run began
    end_s: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "outputs": self.outputs,
            "iterations": [self.first_iteration, self.last_iteration],
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
        }


def flips_reason(subject: str, windows: list[FlipWindow], checked: int) -> str | None:
    """``gpu3: 1 of 41,377 outputs had a checksum other than the first's, between 310.0 and 315.0 s
    (iterations 41,001-41,377)``, and how many other verify windows had some; None when none did."""
    if not windows:
        return None
    w = windows[0]
    text = (
        f"{subject}: {sum(x.outputs for x in windows):,} of {checked:,} outputs had a checksum other than "
        f"the first's; the first {w.outputs:,} between {w.start_s:.1f} and {w.end_s:.1f} s (iterations "
        f"{w.first_iteration:,}-{w.last_iteration:,})"
    )
    if len(windows) > 1:
        text += f"; {len(windows)} verify windows had such outputs"
    return text
