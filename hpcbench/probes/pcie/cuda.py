"""The CUDA side of the pcie probe: pinned host buffers, copy-engine transfers on streams,
CUDA events. Small and apart: it cannot run without a GPU; the orchestration that uses it
(``pcie.measure``) is tested with an engine of CPU tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def verify_copies(torch: Any, pairs: list[tuple[str, Any, Any]]) -> str | None:
    """None when each (what, got, want) pair of CPU tensors is equal, else how many bytes differ."""
    problems = [
        f"{what}: {int((got != want).sum().item())} of {want.numel()} bytes differ"
        for what, got, want in pairs
        if not torch.equal(got, want)
    ]
    return "; ".join(problems) or None


class CudaEngine:
    """Host<->device copies of ``nbytes`` between pinned host memory and one GPU.

    Host buffers are allocated (and first touched) by the calling thread, so they land on
    the NUMA node the process is bound to. Sources hold random bytes.
    """

    def __init__(self, torch: Any, ordinal: int, nbytes: int) -> None:
        self.torch = torch
        self.nbytes = nbytes
        device = torch.device("cuda", ordinal)
        self.host_src = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
        self.host_src.random_(0, 256)
        self.host_dst = torch.zeros(nbytes, dtype=torch.uint8, pin_memory=True)
        self.dev_src = torch.randint(0, 256, (nbytes,), dtype=torch.uint8, device=device)
        self.dev_dst = torch.empty(nbytes, dtype=torch.uint8, device=device)
        self.up = torch.cuda.Stream(device)
        self.down = torch.cuda.Stream(device)
        self._load: Any = None

    def _event(self) -> Any:
        return self.torch.cuda.Event(enable_timing=True)

    def _copy_h2d(self) -> None:
        self.dev_dst.copy_(self.host_src, non_blocking=True)

    def _copy_d2h(self) -> None:
        self.host_dst.copy_(self.dev_src, non_blocking=True)

    def _timed(self, stream: Any, copy: Callable[[], None]) -> float:
        start, end = self._event(), self._event()
        start.record(stream)
        with self.torch.cuda.stream(stream):
            copy()
        end.record(stream)
        end.synchronize()
        return max(start.elapsed_time(end) / 1e3, 1e-9)

    def h2d(self) -> float:
        return self._timed(self.up, self._copy_h2d)

    def d2h(self) -> float:
        return self._timed(self.down, self._copy_d2h)

    def bidir(self) -> tuple[float, float, float]:
        """Both directions at once on two streams: (seconds until both ended, h2d's, d2h's)."""
        start, end_up, end_down = self._event(), self._event(), self._event()
        start.record(self.up)
        self.down.wait_event(start)
        with self.torch.cuda.stream(self.up):
            self._copy_h2d()
        end_up.record(self.up)
        with self.torch.cuda.stream(self.down):
            self._copy_d2h()
        end_down.record(self.down)
        end_up.synchronize()
        end_down.synchronize()
        t_up = start.elapsed_time(end_up) / 1e3
        t_down = start.elapsed_time(end_down) / 1e3
        return max(t_up, t_down, 1e-9), t_up, t_down

    def start_load(self, copies: int) -> None:
        """Queue ``copies`` host->device copies and return at once (the link is read meanwhile)."""
        with self.torch.cuda.stream(self.up):
            for _ in range(copies):
                self._copy_h2d()

    def finish_load(self) -> None:
        self.up.synchronize()

    def verify(self) -> str | None:
        """None when the last copies delivered every byte, else how many differ."""
        self.torch.cuda.synchronize(self.dev_dst.device)
        return verify_copies(
            self.torch,
            [
                ("host->device", self.dev_dst.cpu(), self.host_src),
                ("device->host", self.host_dst, self.dev_src.cpu()),
            ],
        )
