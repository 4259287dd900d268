"""Every GEMM output checked (probes/burn/checksum.py): a bit flipped in one output between two
verify points, which the comparison of the latest output cannot see, is counted on the device and
named by its verify window; pinned on a fixed clock with exact binary times."""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch

from hpcbench.core.measurement import Verdict
from hpcbench.engine.judge import evaluate
from hpcbench.engine.suite import load
from hpcbench.hw import matmul as mm
from hpcbench.node.inventory import Inventory
from hpcbench.probes import registry
from hpcbench.probes.base import ProbeContext, build_params
from hpcbench.probes.burn import calc, checksum, loop
from hpcbench.probes.burn import probe as burn

INVENTORY = Inventory.from_dict(
    {"cpu": {"model": "test cpu", "threads": 2, "llc_bytes": 4 * 2**20}, "gpus": {"count": 0}}
)


class StepClock:
    """Advances 1/16 s at every GEMM: every time below is exact in binary."""

    def __init__(self) -> None:
        self.t = 1024.0

    def __call__(self) -> float:
        return self.t


def gemm(flip_at: int | None) -> tuple[Any, Any, StepClock]:
    shape = mm.Shape(32, 32, 32)
    x, w = mm.operands(torch, "cpu", "bf16", shape, torch.Generator().manual_seed(0))
    a, b = x[0], w[0]
    y = torch.empty(32, 32, dtype=torch.bfloat16)
    clock = StepClock()
    calls = {"n": 0}

    def step() -> torch.Tensor:
        clock.t += 0.0625
        out = torch.mm(a, b.t(), out=y)
        if calls["n"] == flip_at:
            out.view(torch.int16)[7, 9] ^= 0x0004  # a mantissa bit; the next GEMM rewrites it
        calls["n"] += 1
        return out

    return step, step().clone(), clock  # call 0: the reference


def test_a_flip_between_two_verify_points_is_counted_and_named_by_its_window() -> None:
    step, reference, clock = gemm(flip_at=21)  # loop iteration 21
    sums = checksum.OutputChecksum(torch, reference)
    result = loop.run(
        step,
        lambda out: calc.compare(torch, reference, out),
        duration_s=3.0,
        window_s=1.0,
        verify_every_s=0.5,
        flops_per_iteration=1,
        clock=clock,
        each=sums.add,
        flipped=sums.read,
    )
    # one GEMM per batch (0.1 s / 0.0625 s rounds down to 1): a verify point every 8 iterations
    assert result.iterations == 48 and result.verifications == 6
    assert result.corruptions == []  # the latest output at each verify point was right
    assert result.flips == [checksum.FlipWindow(1, 17, 24, 1.0, 1.5)]
    assert result.checked_outputs == 48 and sums.read() == 1
    assert checksum.flips_reason("gpu3", result.flips, result.checked_outputs) == (
        "gpu3: 1 of 48 outputs had a checksum other than the first's; the first 1 between 1.0 and 1.5 s "
        "(iterations 17-24)"
    )


def test_a_healthy_run_counts_nothing() -> None:
    step, reference, clock = gemm(flip_at=None)
    sums = checksum.OutputChecksum(torch, reference)
    result = loop.run(
        step,
        lambda out: calc.compare(torch, reference, out),
        duration_s=1.0,
        window_s=0.5,
        verify_every_s=0.25,
        flops_per_iteration=1,
        clock=clock,
        each=sums.add,
        flipped=sums.read,
    )
    assert result.flips == [] and result.checked_outputs == 16 and sums.read() == 0


@pytest.mark.parametrize(("dtype", "bits"), [(torch.bfloat16, 0x0001), (torch.float32, 0x00000001)])
def test_the_sum_of_the_bits_sees_any_single_flip(dtype: torch.dtype, bits: int) -> None:
    ref = torch.randn(64, 64, generator=torch.Generator().manual_seed(1)).to(dtype)
    sums = checksum.OutputChecksum(torch, ref)
    as_int = torch.int16 if dtype == torch.bfloat16 else torch.int32
    width = 16 if dtype == torch.bfloat16 else 32
    for bit in range(width):
        bad = ref.clone()
        bad.view(as_int)[5, 6] ^= (bits << bit) if bit < width - 1 else -(1 << (width - 1))
        sums.add(bad)
    sums.add(ref.clone())
    assert sums.read() == width  # every one of the flipped copies, not the right one


def test_the_probe_fails_a_flip_no_verify_point_saw(monkeypatch: pytest.MonkeyPatch) -> None:
    original = burn.make_step
    calls = {"n": 0}

    def faulty(*args: Any) -> Any:
        step = original(*args)

        def run_step() -> torch.Tensor:
            out = step()
            calls["n"] += 1
            if calls["n"] == 8:  # loop iteration 7; verified only at the end of the run
                out.view(torch.int16)[3, 5] ^= 0x0100
            return out

        return run_step

    monkeypatch.setattr(burn, "make_step", faulty)
    params = build_params(
        burn.Burn,
        {
            "device": "cpu",
            "shape": 64,
            "duration_s": 1.5,
            "window_s": 0.5,
            "verify_every_s": 60,
            "threads": 1,
        },
    )
    main = burn.Burn().run(params, ProbeContext(subject="gpu3", inventory=INVENTORY))[0]
    v = main.settings["verification"]
    assert v["corruptions"] == [] and v["verifications"] == 1  # the one compare, at the end
    (window,) = v["every_output"]["flip_windows"]
    assert window["outputs"] == 1 and window["iterations"][0] == 1
    assert window["iterations"][1] == main.settings["iterations"] == v["every_output"]["checked"]
    assert main.sanity is not None and re.fullmatch(
        r"gpu3: 1 of [\d,]+ outputs had a checksum other than the first's; the first 1 between 0\.0 and "
        r"\d+\.\d s \(iterations 1-[\d,]+\)",
        main.sanity,
    ), main.sanity
    acceptance = load("acceptance", registry.load_all())
    check = next(c for c in acceptance.checks if c.id == "burn")
    ev = evaluate(main, check, None, Inventory.from_dict({}))
    assert ev.verdict is Verdict.FAIL and ev.kind == "sanity"
