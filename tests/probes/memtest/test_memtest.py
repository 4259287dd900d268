"""The memtest probe on the CPU device (host memory): every pattern written and read back by the
same torch code a GPU runs, a flipped bit caught and named, the time bound, the GB/s pinned to a
fixed clock, and the pure comparison core."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import Cli
from support.results import measured, reasons

from hpcbench.core.errors import ParamError
from hpcbench.core.exitcodes import ExitCode
from hpcbench.core.measurement import Verdict
from hpcbench.engine import suite as suite_mod
from hpcbench.engine.judge import evaluate
from hpcbench.node.inventory import Inventory
from hpcbench.probes import registry
from hpcbench.probes.base import PROGRESS_FILE, ProbeContext, build_params
from hpcbench.probes.memtest import calc, passes
from hpcbench.probes.memtest import probe as memtest

INVENTORY = Inventory.from_dict({"cpu": {"model": "test cpu"}, "gpus": {"count": 0}})
SMALL = {"device": "cpu", "max_mib": 3, "chunk_mib": 1}


def run(values: dict[str, Any], subject: str = "node", clock: Any = None, workdir: str = "") -> list:
    params = build_params(memtest.Memtest, {**SMALL, **values})
    probe = memtest.Memtest(clock) if clock else memtest.Memtest()
    return probe.run(params, ProbeContext(subject=subject, inventory=INVENTORY, workdir=workdir))


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"fraction": 0.0}, "fraction"),
        ({"fraction": 0.99}, "fraction"),
        ({"patterns": ["0x33"]}, "patterns"),
        ({"patterns": []}, "patterns"),
        ({"passes": -1}, "passes"),
        ({"retention_s": -1}, "retention_s"),
        ({"max_time_s": 0}, "max_time_s"),
        ({"device": "gpu"}, "device"),
    ],
)
def test_param_errors(values: dict[str, Any], key: str) -> None:
    with pytest.raises(ParamError) as exc:
        build_params(memtest.Memtest, values)
    assert exc.value.key == key


def test_fixed_words_repeat_their_byte() -> None:
    assert calc.fixed_word("0x00") == 0
    assert calc.fixed_word("0xff") == -1  # 0xFFFFFFFFFFFFFFFF as int64
    assert calc.fixed_word("0x55") == 0x5555555555555555
    assert calc.fixed_word("0xaa") & (2**64 - 1) == 0xAAAAAAAAAAAAAAAA
    assert calc.as_int64(2**63) == -(2**63) and calc.as_int64(5) == 5


def test_expected_words_of_the_computed_patterns() -> None:
    chunk = torch.empty(70, dtype=torch.int64)
    out = torch.empty(70, dtype=torch.int64)
    walking = calc.expected(torch, "walking_ones", chunk, 60, 0, 0, out).tolist()
    assert [w & (2**64 - 1) for w in walking[:6]] == [1 << 60, 1 << 61, 1 << 62, 1 << 63, 1, 2]
    address = calc.expected(torch, "address", chunk, 60, 0, 0, out).tolist()
    assert address == [480 + 8 * i for i in range(70)]  # each word holds its byte offset in the region
    r1 = calc.expected(torch, "random", chunk, 0, 7, 3, out).clone()
    r2 = calc.expected(torch, "random", chunk, 0, 7, 3, torch.empty(70, dtype=torch.int64))
    assert torch.equal(r1, r2) and not torch.equal(r1, calc.expected(torch, "random", chunk, 0, 7, 4, out))
    assert bool((r1 < 0).any()) and bool((r1 > 0).any())  # the sign bit is exercised too


def test_compare_finds_a_flipped_bit_and_reports_the_word() -> None:
    words = torch.full((1000,), calc.fixed_word("0x55"), dtype=torch.int64)
    assert calc.compare(torch, words, calc.fixed_word("0x55")) == calc.WordMismatch(0)
    words[123] ^= 1 << 40
    m = calc.compare(torch, words, calc.fixed_word("0x55"))
    assert m == calc.WordMismatch(1, ((123, 0x5555555555555555 ^ (1 << 40), 0x5555555555555555),))
    assert calc.locate(m, 2, 0x7F0000000000) == (
        calc.Located(
            0x7F0000000000 + 123 * 8, 2, 123 * 8, 0x5555555555555555 ^ (1 << 40), 0x5555555555555555
        ),
    )
    want = torch.arange(1000, dtype=torch.int64)
    got = want.clone()
    got[[3, 500]] = -1
    m = calc.compare(torch, got, want)
    assert m.count == 2 and m.first == ((3, 2**64 - 1, 3), (500, 2**64 - 1, 500))


def test_compare_of_a_chunk_wrong_everywhere_keeps_five_words() -> None:
    got = torch.zeros(1000, dtype=torch.int64)
    m = calc.compare(torch, got, -1, scan=64)  # searched 64 words at a time: one slice is enough
    assert m.count == 1000 and [i for i, _, _ in m.first] == [0, 1, 2, 3, 4]
    got = torch.full((1000,), -1, dtype=torch.int64)
    got[[70, 990]] = 0  # in the second and the last slice
    m = calc.compare(torch, got, -1, scan=64)
    assert m.count == 2 and [i for i, _, _ in m.first] == [70, 990]


def test_gbps_is_bytes_written_and_read_per_second() -> None:
    assert calc.gbps(4 * 2**30, 4 * 2**30, 2.0) == 8 * 2**30 / 2.0 / 1e9
    # a fixed pattern fills (writes) and reads once; a computed one also writes and reads its scratch
    assert calc.write_traffic("0x55", 10) == (80, 0) and calc.read_traffic("0x55", 10) == (0, 80)
    assert calc.write_traffic("random", 10) == (160, 80) and calc.read_traffic("random", 10) == (80, 160)
    assert calc.region_bytes(10 * 2**30, 0.9, None, 2**30) == int(10 * 2**30 * 0.9) - 2**30 - (
        (int(10 * 2**30 * 0.9) - 2**30) % 8
    )
    assert calc.region_bytes(10 * 2**30, 0.9, 3 * 2**20, 2**20) == 3 * 2**20


def test_cpu_memtest_every_pattern_passes(tmp_path: Path) -> None:
    ms = run({}, workdir=str(tmp_path))
    by = {m.metric: m for m in measured(ms)}
    wrong, bw = by["mismatched_words"], by["bandwidth"]
    s = wrong.settings
    assert wrong.value == 0 and wrong.sanity is None and not wrong.higher_is_better
    assert s["tested_bytes"] == 3 * 2**20 and s["chunk_bytes"] == 2**20
    assert [p["pattern"] for p in s["patterns"]] == list(calc.DEFAULT_PATTERNS)
    n = 3 * 2**20
    traffic = {"0x00": n, "0xff": n, "0x55": n, "0xaa": n, "walking_ones": 3 * n, "address": 3 * n}
    traffic |= {"random": 3 * n, "moving_inversions": 3 * n}  # March: 3 writes and 3 reads of each chunk
    for p in s["patterns"]:
        assert p["words"] == n // 8 and p["mismatches"] == 0 and p["complete"] and p["chunks"] == [3, 3]
        assert p["bytes_written"] == p["bytes_read"] == traffic[p["pattern"]]
    moved = 2 * sum(traffic.values())
    seconds = sum(p["seconds"] for p in s["patterns"])
    assert bw.value == pytest.approx(moved / seconds / 1e9, rel=1e-4) and bw.unit == "GB/s"
    assert s["counters"] == "the CPU device has no NVML counters"
    assert reasons(ms, "could_not_measure") == {}
    assert set(reasons(ms)) == {*memtest.cw.METRICS}
    lines = (tmp_path / PROGRESS_FILE).read_text().splitlines()
    assert lines[0].startswith("pass 1 0x00: 0.00 GiB, 0 wrong, ") and len(lines) == len(
        calc.DEFAULT_PATTERNS
    )


class TickClock:
    """Every reading advances 1 ms: a fixed clock, so the GB/s are pinned."""

    def __init__(self) -> None:
        self.t = 100.0
        self.reads = 0

    def __call__(self) -> float:
        self.t += 0.001
        self.reads += 1
        return self.t


def test_gbps_pinned_with_a_fixed_clock() -> None:
    clock = TickClock()
    (wrong, bw) = run({"patterns": ["0xff"]}, clock=clock)[:2]
    (p,) = wrong.settings["patterns"]
    # run_pattern reads the clock at its start, before each of 3 writes and 3 reads, and at its end:
    # 7 ticks of 1 ms between its first and last reading
    assert p["seconds"] == pytest.approx(0.007)
    assert bw.value == pytest.approx((3 * 2**20 + 3 * 2**20) / 0.007 / 1e9)
    assert bw.settings["bytes_written"] == bw.settings["bytes_read"] == 3 * 2**20


def test_a_flipped_bit_is_a_fail_naming_pattern_and_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bit flips in the second chunk after the 0xaa pattern was written: the read-back catches it."""
    original = passes.write
    writes = {"n": 0}
    where: dict[str, int] = {}

    def flaky(chunk: torch.Tensor, want: Any) -> None:
        original(chunk, want)
        writes["n"] += 1
        if writes["n"] == 3 * 3 + 2:  # 4th pattern (0xaa), 2nd chunk
            chunk[77] ^= 1 << 5
            where["base"] = chunk.data_ptr()

    monkeypatch.setattr(passes, "write", flaky)
    (wrong, *_) = run({}, subject="gpu5")
    assert wrong.value == 1.0
    address = where["base"] + 77 * 8
    aa = 0xAAAAAAAAAAAAAAAA
    assert wrong.sanity == (
        f"gpu5: 1 of 393,216 words read back wrong under pattern 0xaa (pass 1); first at host address "
        f"0x{address:x} (chunk 1, byte 0x268 of it): 0x{aa ^ 32:016x}, expected 0x{aa:016x} "
        f"(bits 0x{32:016x} flipped)"
    )
    (aa_result,) = [p for p in wrong.settings["patterns"] if p["pattern"] == "0xaa"]
    assert aa_result["first"] == [
        {
            "address": f"0x{address:x}",
            "chunk": 1,
            "offset": "0x268",
            "found": f"0x{aa ^ 32:016x}",
            "expected": f"0x{aa:016x}",
        }
    ]
    check = next(c for c in suite_mod.load("acceptance", registry.load_all()).checks if c.id == "memtest")
    ev = evaluate(wrong, check, None, Inventory.from_dict({}))
    assert (
        ev.verdict is Verdict.FAIL
        and ev.kind == "sanity"
        and ev.reason.startswith("wrong result: gpu5: 1 of")
    )


def test_the_time_bound_stops_between_chunks_and_says_so() -> None:
    clock = TickClock()
    wrong = run({"max_time_s": 0.02, "passes": 3}, clock=clock)[0]
    s = wrong.settings
    done = s["patterns"]
    assert 1 <= len(done) < 3 * len(calc.DEFAULT_PATTERNS) and wrong.sanity is None
    assert "max_time_s 0.02 reached with" in wrong.detail
    assert all(p["bytes_read"] <= p["bytes_written"] for p in done)


def test_cli_memtest_on_the_cpu(cli: Cli) -> None:
    r = cli("probe", "memtest", "-p", "device=cpu", "-p", "max_mib=8", "-p", "patterns=0x55,random")
    assert r.returncode == ExitCode.OK, r.stderr
    assert "memtest node: pass 1 0x55: " in r.stderr and "mismatched_words" in r.stdout
    bad = cli("probe", "memtest", "-p", "patterns=0x33")
    assert bad.returncode == ExitCode.USAGE and "unknown '0x33'" in bad.stderr and bad.stderr.count("\n") == 1
