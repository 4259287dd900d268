"""A clock with fixed timings, for pinning the number a probe reports.

It follows ``hpcbench.hw.torch_device.Clock`` (start, stop, settle, seconds), the seam every
timed probe accepts (``CpuMembw(clock=...)``, ``GpuMembw(clock=...)``, ``Gemm(clock=...)``,
``Attention(clock=...)``). Each timed call "takes" the next of the seconds the test gave, so
the reported value is known exactly and a test can assert ``value == bytes / t / 1e9``.

Several implementations timed alternately get seconds of their own: wrap each callable with
``clock.tagged(name, fn)``; a call made outside a tagged callable takes the untagged list
(``None``). Each list is used in order and starts over when it runs out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class FixedClock:
    name = "fixed (test)"

    def __init__(self, seconds: dict[str | None, list[float]] | list[float]) -> None:
        self.script = {None: list(seconds)} if isinstance(seconds, list) else dict(seconds)
        self.used: dict[str | None, int] = dict.fromkeys(self.script, 0)
        self.current: str | None = None
        self.timed: list[str | None] = []  # the tag of each timed call, in order

    def tagged(self, tag: str, fn: Callable[[], Any]) -> Callable[[], Any]:
        """``fn``, marking its calls as ``tag``'s."""

        def call() -> Any:
            self.current = tag
            return fn()

        return call

    def start(self) -> None:
        self.current = None
        return None

    def stop(self) -> float:
        """The seconds of the call that just ended: the next of its tag's list."""
        tag, self.current = self.current, None
        return self._next(tag)

    def _next(self, tag: str | None) -> float:
        seconds = self.script[tag]
        value = seconds[self.used[tag] % len(seconds)]
        self.used[tag] += 1
        self.timed.append(tag)
        return value

    def settle(self) -> None:
        return None

    def seconds(self, marks: list[tuple[Any, Any]]) -> list[float]:
        return [float(end) for _, end in marks]
