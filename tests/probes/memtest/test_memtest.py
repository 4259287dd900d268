"""The memtest probe on the CPU device (host memory): every pattern written and read back by the
same torch code a GPU runs, a flipped bit caught and named, the time bound, the GB/s pinned to a
fixed clock, and the pure comparison core."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import Cli

from hpcbench.core.errors import ParamError
from hpcbench.core.exitcodes import ExitCode
from hpcbench.core.measurement import Verdict
from hpcbench.engine import suite as suite_mod
from hpcbench.engine.judge import evaluate
from hpcbench.node.inventory import Inventory
from hpcbench.probes import registry
from hpcbench.probes.base import PROGRESS_FILE, ProbeContext, build_params
from hpcbench.probes.memtest import calc
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
        ({"passes": 0}, "passes"),
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
    address = calc.expected(torch, "address", chunk, 0, 0, 0, out).tolist()
    assert address == [chunk.data_ptr() + 8 * i for i in range(70)]  # each word holds its own address
    r1 = calc.expected(torch, "random", chunk, 0, 7, 3, out).clone()
    r2 = calc.expected(torch, "random", chunk, 0, 7, 3, torch.empty(70, dtype=torch.int64))
    assert torch.equal(r1, r2) and not torch.equal(r1, calc.expected(torch, "random", chunk, 0, 7, 4, out))
    assert bool((r1 < 0).any()) and bool((r1 > 0).any())  # the sign bit is exercised too


def test_compare_finds_a_flipped_bit_and_reports_the_offset() -> None:
    words = torch.full((1000,), calc.fixed_word("0x55"), dtype=torch.int64)
    assert calc.compare(torch, words, calc.fixed_word("0x55"), 0) == calc.WordMismatch(0)
    words[123] ^= 1 << 40
    m = calc.compare(torch, words, calc.fixed_word("0x55"), 4096)
    assert m == calc.WordMismatch(1, ((4096 + 123 * 8, 0x5555555555555555 ^ (1 << 40), 0x5555555555555555),))
    want = torch.arange(1000, dtype=torch.int64)
    got = want.clone()
    got[[3, 500]] = -1
    m = calc.compare(torch, got, want, 0)
    assert m.count == 2 and m.first == ((24, 2**64 - 1, 3), (4000, 2**64 - 1, 500))


def test_gbps_is_bytes_written_and_read_per_second() -> None:
    assert calc.gbps(4 * 2**30, 4 * 2**30, 2.0) == 8 * 2**30 / 2.0 / 1e9
    assert calc.region_bytes(10 * 2**30, 0.9, None, 2**30) == int(10 * 2**30 * 0.9) - 2**30 - (
        (int(10 * 2**30 * 0.9) - 2**30) % 8
    )
    assert calc.region_bytes(10 * 2**30, 0.9, 3 * 2**20, 2**20) == 3 * 2**20


def test_cpu_memtest_every_pattern_passes(tmp_path: Path) -> None:
    ms = run({}, workdir=str(tmp_path))
    by = {m.metric: m for m in ms}
    wrong, bw = by["mismatched_words"], by["bandwidth"]
    s = wrong.settings
    assert wrong.value == 0 and wrong.sanity is None and not wrong.higher_is_better
    assert s["tested_bytes"] == 3 * 2**20 and s["chunk_bytes"] == 2**20
    assert [p["pattern"] for p in s["patterns"]] == list(calc.PATTERNS)
    for p in s["patterns"]:
        assert p["words"] == 3 * 2**20 // 8 and p["mismatches"] == 0 and p["complete"]
        assert p["bytes_written"] == p["bytes_read"] == 3 * 2**20
    written = sum(p["bytes_written"] for p in s["patterns"])
    seconds = sum(p["seconds"] for p in s["patterns"])
    assert bw.value == pytest.approx((written + written) / seconds / 1e9, rel=1e-4) and bw.unit == "GB/s"
    lines = (tmp_path / PROGRESS_FILE).read_text().splitlines()
    assert lines[0].startswith("pass 1 0x00: 0.00 GiB, 0 wrong, ") and len(lines) == len(calc.PATTERNS)


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
    (wrong, bw) = run({"patterns": ["0xff"]}, clock=clock)
    (p,) = wrong.settings["patterns"]
    # test_pattern reads the clock at its start, before each of 3 writes and 3 reads, and at its end:
    # 7 ticks of 1 ms between its first and last reading
    assert p["seconds"] == pytest.approx(0.007)
    assert bw.value == pytest.approx((3 * 2**20 + 3 * 2**20) / 0.007 / 1e9)
    assert bw.settings["bytes_written"] == bw.settings["bytes_read"] == 3 * 2**20


def test_a_flipped_bit_is_a_fail_naming_pattern_and_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bit flips in the second chunk after the 0xaa pattern was written: the read-back catches it."""
    original = memtest.write
    writes = {"n": 0}

    def flaky(chunk: torch.Tensor, want: Any) -> None:
        original(chunk, want)
        writes["n"] += 1
        if writes["n"] == 3 * 3 + 2:  # 4th pattern (0xaa), 2nd chunk
            chunk[77] ^= 1 << 5

    monkeypatch.setattr(memtest, "write", flaky)
    (wrong, _) = run({}, subject="gpu5")
    assert wrong.value == 1.0
    offset = 2**20 + 77 * 8
    aa = 0xAAAAAAAAAAAAAAAA
    assert wrong.sanity == (
        f"gpu5: 1 of 393,216 words read back wrong under pattern 0xaa (pass 1); first at byte 0x{offset:x} "
        f"of the tested host memory: 0x{aa ^ 32:016x}, expected 0x{aa:016x} (bits 0x{32:016x} flipped)"
    )
    (aa_result,) = [p for p in wrong.settings["patterns"] if p["pattern"] == "0xaa"]
    assert aa_result["first"] == [
        {"offset": f"0x{offset:x}", "found": f"0x{aa ^ 32:016x}", "expected": f"0x{aa:016x}"}
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
    (wrong, _) = run({"max_time_s": 0.02, "passes": 3}, clock=clock)
    s = wrong.settings
    done = s["patterns"]
    assert 1 <= len(done) < 3 * len(calc.PATTERNS) and wrong.sanity is None
    assert "max_time_s 0.02 reached with" in wrong.detail
    assert all(p["bytes_read"] <= p["bytes_written"] for p in done)


def test_cli_memtest_on_the_cpu(cli: Cli) -> None:
    r = cli("probe", "memtest", "-p", "device=cpu", "-p", "max_mib=8", "-p", "patterns=0x55,random")
    assert r.returncode == ExitCode.OK, r.stderr
    assert "memtest node: pass 1 0x55: " in r.stderr and "mismatched_words" in r.stdout
    bad = cli("probe", "memtest", "-p", "patterns=0x33")
    assert bad.returncode == ExitCode.USAGE and "unknown '0x33'" in bad.stderr and bad.stderr.count("\n") == 1
