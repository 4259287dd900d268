"""collectives: nccl-tests' factors and size convention, check data, failure reasons, the table.

Pure functions, plus the check-data helpers on real torch CPU tensors and the
measurements built from a rank result captured from a real 2-rank gloo run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from support import records

from hpcbench.core.errors import ParamError, ProbeError, ProbeSkip
from hpcbench.launch import spawn
from hpcbench.launch.ranks import behind_ranks, stalled_ranks
from hpcbench.probes.base import build_params
from hpcbench.probes.collectives import calc as cm
from hpcbench.probes.collectives.probe import (
    Collectives,
    choose_backend,
    choose_ranks,
    effective_timeout,
    measurements,
)
from hpcbench.probes.collectives.rank import EXIT_CONFIG, EXIT_FAILED, fill_periodic, wrong_periodic

FIXTURES = Path(__file__).parent / "fixtures" / "collectives"


def test_bus_factors_are_nccl_tests() -> None:
    assert cm.bus_factor("all_reduce", 2) == 1.0
    assert cm.bus_factor("all_reduce", 8) == 2 * 7 / 8
    assert cm.bus_factor("all_gather", 8) == 7 / 8
    assert cm.bus_factor("reduce_scatter", 4) == 3 / 4
    assert cm.bus_factor("all_reduce", 1) == 0.0
    with pytest.raises(ValueError, match="unknown collective"):
        cm.bus_factor("broadcast", 2)


def test_algbw_and_busbw_in_gbs() -> None:
    assert cm.algbw_gbs(2_000_000_000, 2.0) == 1.0
    assert cm.busbw_gbs("all_reduce", 2_000_000_000, 2.0, 4) == 1.5
    assert cm.busbw_gbs("all_gather", 1_000_000_000, 1.0, 2) == 0.5


def test_sweep_doubles_from_min_to_max() -> None:
    assert cm.sweep_sizes(8, 64) == [8, 16, 32, 64]
    assert cm.sweep_sizes(8, 100) == [8, 16, 32, 64]
    assert cm.sweep_sizes(8, 8) == [8]
    assert len(cm.sweep_sizes(8, 8 * cm.GiB)) == 31
    with pytest.raises(ValueError):
        cm.sweep_sizes(16, 8)


def test_op_shape_follows_nccl_tests_size_convention() -> None:
    ar = cm.op_shape("all_reduce", 1024, 4, 8)
    assert ar == cm.OpShape("all_reduce", 1024, 256, 256, 256)
    # all-gather: size is the whole output; each rank sends count / n
    ag = cm.op_shape("all_gather", 1024, 4, 8)
    assert ag == cm.OpShape("all_gather", 1024, 256, 32, 256)
    # reduce-scatter: size is the whole input; each rank receives count / n
    rs = cm.op_shape("reduce_scatter", 1024, 4, 8)
    assert rs == cm.OpShape("reduce_scatter", 1024, 256, 256, 32)
    # counts are rounded down to a multiple of the ranks, and the size with them
    odd = cm.op_shape("all_gather", 40, 4, 3)
    assert odd is not None and (odd.count, odd.size_bytes, odd.input_count) == (9, 36, 3)
    assert cm.op_shape("all_gather", 8, 4, 4) is None  # 2 elements over 4 ranks: none each
    assert cm.op_shape("all_reduce", 2, 4, 2) is None


def test_default_max_bytes() -> None:
    assert cm.default_max_bytes("nccl", 8) == 8 * cm.GiB
    assert cm.default_max_bytes("nccl", 8, free_gpu_bytes=140 * 10**9) == 8 * cm.GiB
    assert cm.default_max_bytes("nccl", 8, free_gpu_bytes=10 * cm.GiB) == 4 * cm.GiB  # 0.4 x 10 GiB -> 4 GiB
    assert cm.default_max_bytes("gloo", 2, node_memory_bytes=24 * cm.GiB) == 64 * cm.MiB
    assert cm.default_max_bytes("gloo", 2, node_memory_bytes=256 * cm.MiB) == 16 * cm.MiB
    assert cm.default_max_bytes("gloo", 2, node_memory_bytes=10) == 8


def test_timing_scale_keeps_in_place_sums_finite() -> None:
    for ranks in (2, 8, 64):
        e = cm.timing_scale_exponent(ranks, 25)
        assert (2.0**-e) * 2 * ranks**25 < 2.0**127 or e == 100
    assert cm.timing_scale_exponent(1, 25) == 0
    assert cm.timing_scale_exponent(2, 25) == 25


def test_reduce_table_is_the_exact_sum_over_ranks() -> None:
    for ranks in (1, 2, 3, 7, 300):
        table = cm.reduce_table(ranks)
        for j in (0, 1, 250, 251, 1000):
            assert table[j % cm.MODULUS] == sum(cm.pattern(r, j) for r in range(ranks))
    assert cm.check_exact("float32", 2) and not cm.check_exact("float32", 70_000)


def test_fill_and_count_wrong_on_real_tensors() -> None:
    values = torch.tensor([cm.pattern(3, c) for c in range(cm.MODULUS)], dtype=torch.float32)
    for n, base in ((1, 0), (250, 5), (251, 0), (1000, 17), (600_000, 300)):
        t = torch.empty(n)
        fill_periodic(torch, t, values, base)
        assert t.tolist()[: min(n, 600)] == [float(cm.pattern(3, base + i)) for i in range(min(n, 600))]
        assert wrong_periodic(torch, t, values, base) == 0
        t[n - 1] += 1
        t[0] = float("nan")
        assert wrong_periodic(torch, t, values, base) == (1 if n == 1 else 2)


def test_table_rows_average_over_ranks_and_name_the_slowest() -> None:
    shapes = [cm.op_shape("all_reduce", s, 4, 2) for s in (8, 1024)]
    times = [[1e-5, 2e-3], [3e-5, 1e-3]]  # times[rank][size]
    rows = cm.table_rows("all_reduce", shapes, times, [[0, 0], [0, 1]], 2)  # type: ignore[arg-type]
    assert rows[0]["time_us"] == pytest.approx(20.0) and rows[0]["slowest_rank"] == 1
    assert rows[1]["slowest_rank"] == 0 and rows[1]["rank_spread"] == pytest.approx(2.0)
    assert rows[1]["algbw_gbs"] == pytest.approx(1024 / 1.5e-3 / 1e9)
    assert rows[1]["busbw_gbs"] == pytest.approx(rows[1]["algbw_gbs"])  # factor 1 at 2 ranks
    assert rows[1]["wrong"] == 1 and rows[1]["rank_time_us"] == pytest.approx([2000.0, 1000.0])


def test_wrong_summary() -> None:
    shapes = [cm.op_shape("all_gather", s, 4, 2) for s in (8, 16, 2048)]
    assert cm.wrong_summary("all_gather", shapes, [[0, 0, 0], [0, 0, 0]]) is None  # type: ignore[arg-type]
    text = cm.wrong_summary("all_gather", shapes, [[0, 0, 3], [0, 2, 0]])  # type: ignore[arg-type]
    assert text == "all_gather: 5 wrong element(s) (nccl-tests #wrong) at 16 B, 2 KiB on rank(s) 0, 1"


def test_diagnosis_helpers() -> None:
    assert stalled_ranks({0: 5, 1: 7, 2: 3}, {0: 9, 1: 7, 2: None}, me=0) == [1, 2]
    assert stalled_ranks({0: 5, 1: 7}, {0: 5, 1: 9}, me=0) == []  # my own counter is not judged
    assert behind_ranks({0: 12, 1: 12, 2: 4}, me=0) == [2]
    assert behind_ranks({}, me=0) == []
    assert spawn.exit_text(-9) == "killed by SIGKILL" and spawn.exit_text(1) == "exited with status 1"


def test_spawn_failure_names_the_rank_that_died() -> None:
    reports = {0: {"rank": 0, "config": False, "message": "rank 1 of 2 stopped responding"}}
    reason, hint = spawn.failure(2, {0: EXIT_FAILED, 1: -9}, set(), reports, None)
    assert reason.startswith("rank 1 of 2 died (killed by SIGKILL); rank 0 reported: rank 1 of 2 stopped")
    assert "OOM" in hint
    # killed by the watcher itself: not the culprit; the report names it
    reason, _ = spawn.failure(2, {0: EXIT_FAILED, 1: -9}, {1}, reports, None)
    assert reason == "rank 0: rank 1 of 2 stopped responding"
    # the first rank seen to die is named first (e.g. a NCCL peer aborted by its watchdog after it)
    reason, _ = spawn.failure(3, {2: -9, 0: -6, 1: EXIT_FAILED}, set(), {}, None)
    assert reason == "rank 2 of 3 died (killed by SIGKILL); rank 0 of 3 died (killed by SIGABRT)"
    config = {1: {"rank": 1, "config": True, "message": "backend nccl: no CUDA"}}
    assert spawn.failure(2, {0: -9, 1: EXIT_CONFIG}, {0}, config, None)[0] == "rank 1: backend nccl: no CUDA"
    reason, _ = spawn.failure(3, {0: -9, 1: -9, 2: 0}, {0, 1}, {}, 30.0)
    assert reason == "ranks 0, 1 of 3 did not finish within 30 s"


def test_choices() -> None:
    assert choose_backend("auto", 0) == "gloo" and choose_backend("auto", 8) == "nccl"
    assert choose_backend("gloo", 8) == "gloo"
    assert choose_ranks(0, "gloo", 0) == 2 and choose_ranks(4, "gloo", 0) == 4
    assert choose_ranks(0, "nccl", 8) == 8
    with pytest.raises(ProbeSkip, match="2 or more ranks .* this node has 1 GPU$"):
        choose_ranks(0, "nccl", 1)
    with pytest.raises(ProbeSkip, match="this node has 0 GPUs$"):
        choose_ranks(0, "nccl", 0)
    with pytest.raises(ProbeError, match="NCCL needs a GPU per rank"):
        choose_ranks(4, "nccl", 2)
    assert effective_timeout(60, None) == 60 and effective_timeout(60, 100) == 30


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"ops": ["broadcast"]}, "ops"),
        ({"ops": []}, "ops"),
        ({"ops": ["all_reduce", "all_reduce"]}, "ops"),
        ({"ranks": 1}, "ranks"),
        ({"backend": "mpi"}, "backend"),
        ({"min_bytes": 64, "max_bytes": 8}, "max_bytes"),
        ({"iters": 0}, "iters"),
        ({"dtype": "bfloat16"}, "dtype"),
        ({"timeout": 0.0}, "timeout"),
    ],
)
def test_bad_params_are_refused(values: dict[str, object], key: str) -> None:
    with pytest.raises(ParamError) as info:
        build_params(Collectives, values)
    assert info.value.key == key


def test_measurements_from_a_captured_two_rank_result() -> None:
    result = json.loads((FIXTURES / "gloo_2ranks_8B_1KiB.json").read_text())
    ms = {m.metric: m for m in measurements(result, "node", {"launcher": "spawned"})}
    assert sorted(ms) == sorted(f"{op}_busbw_{k}" for op in cm.OPS for k in ("max_size", "avg"))
    ar = ms["all_reduce_busbw_max_size"]
    assert ar.unit == "GB/s" and ar.convention == "nccl-tests busbw" and ar.sanity is None
    assert ar.statistic == "median" and len(ar.samples) == 3
    s = ar.settings
    assert s["world_size"] == 2 and s["bus_factor"] == 1.0 and s["in_place"] is True
    assert s["launcher"] == "spawned" and s["largest_bytes"] == 1024 and s["slowest_rank"] in (0, 1)
    assert [r["size_bytes"] for r in s["table"]] == cm.sweep_sizes(8, 1024)
    ag = ms["all_gather_busbw_max_size"].settings
    assert ag["bus_factor"] == 0.5 and ag["in_place"] is False
    for row in ag["table"]:
        assert row["busbw_gbs"] == pytest.approx(row["algbw_gbs"] * 0.5)
    avg = ms["reduce_scatter_busbw_avg"]
    rows = avg.settings["table"]
    assert avg.value == pytest.approx(sum(r["busbw_gbs"] for r in rows) / len(rows))


def _result(world: int, times: list[list[float]], repeats: list[list[float]]) -> dict:
    """A rank result as run_rank returns it, with chosen times: sizes 1 MiB and 4 MiB of float32."""
    ops = {}
    for op in cm.OPS:
        shapes = [cm.op_shape(op, size, 4, world) for size in (2**20, 2**22)]
        ops[op] = {
            "shapes": [vars(s) for s in shapes],
            "times": times,
            "wrong": [[0, 0] for _ in range(world)],
            "repeats": repeats,
        }
    members = [{"host": f"n{r // 2}", "pid": 100 + r, "device": "cpu"} for r in range(world)]
    return {
        "world_size": world, "backend": "gloo", "launcher": "env", "members": members, "dtype": "float32",
        "max_bytes": 2**22, "max_bytes_source": "parameter", "exact_check": True,
        "torch_version": "2.13.0+cpu", "nccl_version": None, "ops": ops,
    }  # fmt: skip


def test_reported_busbw_is_nccl_tests_busbw_in_gbs() -> None:
    """nccl-tests' numbers with chosen times at 4 ranks: time = mean over ranks, algbw = size / time
    / 1e9, busbw = algbw x 2(n-1)/n for all-reduce (1.5) and x (n-1)/n for all-gather and
    reduce-scatter (0.75); max_size is the median of the largest size's repeats, avg the mean of
    busbw over the sizes."""
    times = [[2e-4, 3e-4], [2e-4, 4e-4], [2e-4, 4e-4], [2e-4, 5e-4]]  # [rank][size]; means 0.2, 0.4 ms
    repeats = [[t[1], 2e-4, 8e-4] for t in times]  # the largest size's first timing, then 2 repeats
    ms = {m.metric: m for m in measurements(_result(4, times, repeats), "node", {})}
    mib4 = 4 * 2**20
    # all-reduce at 4 MiB: 4,194,304 B / 0.4 ms = 10.48576 GB/s algbw, x 1.5 = 15.72864 GB/s busbw
    ar = ms["all_reduce_busbw_max_size"]
    assert ar.samples == pytest.approx([mib4 / t / 1e9 * 1.5 for t in (4e-4, 2e-4, 8e-4)], rel=1e-12)
    assert ar.value == pytest.approx(15.72864, rel=1e-12) and ar.unit == "GB/s"
    big = ar.settings["table"][1]
    assert big["time_us"] == pytest.approx(400.0, rel=1e-12)
    assert big["algbw_gbs"] == pytest.approx(10.48576, rel=1e-12)
    assert big["busbw_gbs"] == pytest.approx(15.72864, rel=1e-12)
    assert big["slowest_rank"] == 3 and big["rank_spread"] == pytest.approx(5 / 3, rel=1e-12)
    # avg: (1 MiB / 0.2 ms x 1.5 + 15.72864) / 2 = (7.86432 + 15.72864) / 2
    assert ms["all_reduce_busbw_avg"].value == pytest.approx(11.79648, rel=1e-12)
    for op in ("all_gather", "reduce_scatter"):  # same sizes and times, factor 3/4
        assert ms[f"{op}_busbw_max_size"].value == pytest.approx(7.86432, rel=1e-12)
        assert ms[f"{op}_busbw_avg"].value == pytest.approx(5.89824, rel=1e-12)
        assert ms[f"{op}_busbw_max_size"].settings["bus_factor"] == 0.75


def test_nccl_tests_style_table_from_a_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hpcbench.probes.collectives import table

    result = json.loads((FIXTURES / "gloo_2ranks_8B_1KiB.json").read_text())
    ms = [m.as_dict() for m in measurements(result, "node", {"launcher": "spawned"})]
    rec = records.record(checks=[records.check("coll", probe="collectives", measurements=ms)])
    path = tmp_path / "record.json"
    path.write_text(json.dumps(rec.as_dict()))
    assert table.main([str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    titles = [line for line in out if line.startswith("# coll/node:")]
    assert [t.split(":")[1].split(",")[0].strip() for t in titles] == list(cm.OPS)
    rows = [line.split() for line in out if not line.startswith("#")]
    assert len(rows) == 3 * len(cm.sweep_sizes(8, 1024))
    assert rows[0][:4] == ["8", "2", "float", "sum"] and rows[-1][:4] == ["1024", "256", "float", "sum"]
    assert sum(1 for line in out if line.startswith("# Avg bus bandwidth")) == 3
    path.write_text(json.dumps(records.record().as_dict()))
    assert table.main([str(path)]) == 4
    assert "no collectives check" in capsys.readouterr().err
    # a sweep without a field the table prints: one line naming it, exit 4, no traceback
    del ms[1]["settings"]["world_size"]
    rec = records.record(checks=[records.check("coll", probe="collectives", measurements=ms)])
    path.write_text(json.dumps(rec.as_dict()))
    assert table.main([str(path)]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checks.0.measurements.1.settings.world_size" in err, err
