"""The burn loop: one GEMM after another for a duration, in batches, with throughput per window
and the latest output compared with the first every ``verify_every_s``.

Device-agnostic: ``step`` runs one GEMM (asynchronous on a GPU), ``settle`` waits for the device
(``torch.cuda.synchronize``; nothing on the CPU), ``clock`` reads the time. Batches are sized to
last about ``batch_s`` (growing at most twofold from one to the next) so that waiting for the
device costs nothing measurable; a batch is sized not to run past the end of the run. Tests pass
a clock of their own, so every number is pinned.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hpcbench.probes.burn.calc import Corruption, Mismatch, Window, Windows
from hpcbench.probes.burn.checksum import FlipWindow

BATCH_S = 0.1
MAX_BATCH = 100_000


@dataclass
class LoopResult:
    windows: list[Window]
    iterations: int  # GEMMs run in the loop (the first output, iteration 0, came before it)
    seconds: float
    verifications: int = 0
    corruptions: list[Corruption] = field(default_factory=list)
    #: verify windows in which outputs' checksums differed from the first's (every output checked)
    flips: list[FlipWindow] = field(default_factory=list)
    checked_outputs: int = 0


def run(
    step: Callable[[], Any],
    verify: Callable[[Any], Mismatch],
    *,
    duration_s: float,
    window_s: float,
    verify_every_s: float,
    flops_per_iteration: int,
    clock: Callable[[], float] = time.monotonic,
    settle: Callable[[], None] = lambda: None,
    on_window: Callable[[Window], None] = lambda w: None,
    batch_s: float = BATCH_S,
    started: float | None = None,
    each: Callable[[Any], None] | None = None,
    flipped: Callable[[], int] | None = None,
) -> LoopResult:
    """Run ``step`` for ``duration_s`` seconds; ``verify(output)`` compares the latest output with
    the first every ``verify_every_s`` seconds (0: after every iteration) and at the end.
    Iterations are numbered from 1 (the reference output is iteration 0); times are seconds since
    ``started`` (a ``clock`` reading; now when not given). ``each(output)`` sees every output
    (``checksum.OutputChecksum.add``); ``flipped()``, read at each verify point, says how many
    outputs so far were wrong: what grew since the last read is named by its verify window."""
    windows = Windows(window_s, flops_per_iteration)
    result = LoopResult([], 0, 0.0)
    reported = 0
    batch = 1
    last_verify = 0.0
    t0 = clock() if started is None else started
    t = 0.0
    seen_flips, window_first, window_start = 0, 1, 0.0
    while True:
        begin = clock()
        out = None
        for _ in range(batch):
            out = step()
            if each is not None:
                each(out)
        settle()
        now = clock()
        result.iterations += batch
        t = now - t0
        if windows.add(t, batch) is not None:
            on_window(windows.closed[-1])
            reported += 1
        done = t >= duration_s
        if verify_every_s == 0 or t - last_verify >= verify_every_s or done:
            mismatch = verify(out)
            result.verifications += 1
            last_verify = t
            if mismatch.differ:
                result.corruptions.append(Corruption(t, result.iterations, mismatch))
            if flipped is not None:
                total = flipped()
                if total > seen_flips:
                    result.flips.append(
                        FlipWindow(total - seen_flips, window_first, result.iterations, window_start, t)
                    )
                seen_flips = total
                result.checked_outputs = result.iterations
            window_first, window_start = result.iterations + 1, t
        if done:
            break
        per_iteration = max(now - begin, 1e-9) / batch
        want = 1 if verify_every_s == 0 else int(min(batch_s, verify_every_s) / per_iteration)
        # grow at most twofold per batch (a first GEMM that ran fast must not set a huge batch)
        batch = max(1, min(want, 2 * batch, MAX_BATCH, int((duration_s - t) / per_iteration) + 1))
    result.windows = windows.finish(t)
    result.seconds = t
    for w in result.windows[reported:]:
        on_window(w)
    return result


def warm(
    step: Callable[[], Any],
    seconds: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    settle: Callable[[], None] = lambda: None,
) -> int:
    """Run ``step`` untimed for ``seconds`` (batches doubling from 1, the device waited for after
    each, so an asynchronous GPU's queue never runs past the end); the iterations run."""
    t0 = clock()
    done, batch = 0, 1
    while clock() - t0 < seconds:
        for _ in range(batch):
            step()
        settle()
        done += batch
        batch = min(2 * batch, MAX_BATCH)
    return done
