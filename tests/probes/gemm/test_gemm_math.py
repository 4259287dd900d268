"""The gemm probe's pure helpers: sweeps, metric names, implementations (shapes, FLOPs and the
float64 block check are hw.matmul's: tests/test_matmul.py)."""

from __future__ import annotations

import pytest

from hpcbench.hw import matmul as mm
from hpcbench.probes.gemm import calc as gm
from hpcbench.probes.gemm.probe import Gemm


def test_parse_range_inclusive_stop_and_default() -> None:
    assert gm.parse_range([4096, 16384, 4096], (1, 1, 1)) == [4096, 8192, 12288, 16384]
    assert gm.parse_range([], (256, 1024, 256)) == [256, 512, 768, 1024]
    assert gm.parse_range([777], (1, 2, 1)) == [777]
    assert gm.parse_range([10, 15, 10], (1, 1, 1)) == [10]


@pytest.mark.parametrize("values", [[1, 2], [0, 10, 1], [10, 5, 1], [1, 10, 0], [0], [1, 2, 3, 4]])
def test_parse_range_rejects(values: list[int]) -> None:
    with pytest.raises(ValueError):
        gm.parse_range(values, (1, 2, 1))


def test_sweep_shapes_is_the_product_and_is_bounded() -> None:
    shapes = gm.sweep_shapes([1, 2], [3], [4, 5])
    assert shapes == [mm.Shape(1, 3, 4), mm.Shape(1, 3, 5), mm.Shape(2, 3, 4), mm.Shape(2, 3, 5)]
    with pytest.raises(ValueError, match="at most"):
        gm.sweep_shapes(list(range(1, 20)), list(range(1, 20)), list(range(1, 20)))


def test_metric_names() -> None:
    assert gm.metric_name("bf16", mm.Shape(8192, 8192, 8192), primary=True) == "bf16"
    assert gm.metric_name("fp8", mm.Shape(4096, 8192, 2048), primary=False) == "fp8_4096x8192x2048"
    assert gm.sweep_metric("bf16") == "bf16_sweep"


def test_probe_metric_names_accept_built_names_only() -> None:
    names = Gemm.metrics
    for ok in ("bf16", "fp8", "tf32_sweep", "fp16_4096x8192x2048"):
        assert ok in names
    for bad in ("bf17", "bf16_sweeps", "bf16_4096x8192", "int8", 3):
        assert bad not in names
    assert "<dtype>_<M>x<N>x<K>" in ", ".join(names)  # what a suite error lists
