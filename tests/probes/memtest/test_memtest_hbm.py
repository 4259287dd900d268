"""memtest as an HBM test, on the CPU device with what a GPU would add injected: an address-
aliasing memory (chunk 2's writes land in chunk 0), the GPU's counters replayed by the fake NVML
(ECC, row remapping) and a kernel log with an XID, the CUDA "uncorrectable ECC error" raised in the
middle of a pattern, a run cut short before covering the region, passes repeated until max_time_s,
the retention pause; judged by the acceptance suite as shipped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from support.fakenvml import FakeNvml
from support.nvml_models import ecc
from support.results import measured, reasons

from hpcbench.core.measurement import Verdict
from hpcbench.engine import suite as suite_mod
from hpcbench.engine.judge import judge
from hpcbench.engine.plan import Job
from hpcbench.engine.runner import Outcome
from hpcbench.hw import counter_watch as cw
from hpcbench.node.inventory import Inventory
from hpcbench.probes import registry
from hpcbench.probes.base import ProbeContext, build_params
from hpcbench.probes.memtest import calc, passes
from hpcbench.probes.memtest import probe as memtest

INVENTORY = Inventory.from_dict({"cpu": {"model": "test cpu"}, "gpus": {"count": 0}})
MIB = 2**20
BUS = "00000000:5D:00.0"
START = 1795946400.0  # 2026-11-29T10:00:00Z, the replayed test's wall-clock start
XID_48 = (
    "2026-11-29T10:00:07+0000 gpu-node-017 kernel: NVRM: Xid (PCI:0000:5d:00): 48, pid='<unknown>', "
    "name=<unknown>, An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer\n"
)


class TickClock:
    def __init__(self, step: float = 0.001) -> None:
        self.t = 100.0
        self.step = step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def acceptance() -> Any:
    return next(c for c in suite_mod.load("acceptance", registry.load_all()).checks if c.id == "memtest")


def verdict(ms: list, subject: str = "gpu3") -> Any:
    check = acceptance()
    outcome = Outcome.of(Job(check, subject, {}), ms)
    return judge(check, [outcome], None, INVENTORY)[0]


def run(values: dict[str, Any], probe: memtest.Memtest | None = None, subject: str = "gpu3") -> list:
    params = build_params(memtest.Memtest, {"device": "cpu", "max_mib": 3, "chunk_mib": 1, **values})
    return (probe or memtest.Memtest()).run(params, ProbeContext(subject=subject, inventory=INVENTORY))


def aliased(torch_: Any, device: Any, region: int, chunk: int) -> tuple[list[Any], str]:
    """Three chunks, the third one the first's memory: a write to chunk 2 lands in chunk 0."""
    a = torch_.empty(chunk // 8, dtype=torch_.int64, device=device)
    b = torch_.empty(chunk // 8, dtype=torch_.int64, device=device)
    return [a, b, a], ""


def test_an_aliased_address_passes_the_fixed_patterns_and_fails_address_random_and_march() -> None:
    ms = run({}, memtest.Memtest(allocate=aliased))
    by = {p["pattern"]: p for p in ms[0].settings["patterns"]}
    for fixed in ("0x00", "0xff", "0x55", "0xaa", "walking_ones"):  # 1 MiB chunks: 64-word period
        assert by[fixed]["mismatches"] == 0, fixed
    # address: chunk 0 reads back chunk 2's offsets (2 MiB further): every one of its words
    assert by["address"]["mismatches"] == MIB // 8
    first = by["address"]["first"][0]
    assert (first["chunk"], first["offset"]) == (0, "0x0")
    assert (first["found"], first["expected"]) == (f"0x{2 * MIB:016x}", f"0x{0:016x}")
    assert by["random"]["mismatches"] > 0
    # March: ascending, chunk 2 (= chunk 0, already 1s) is read for 0s; descending, chunk 0 for 1s
    assert by["moving_inversions"]["mismatches"] == 2 * MIB // 8
    assert ms[0].sanity is not None and "under pattern address (pass 1)" in ms[0].sanity
    assert verdict(ms).verdict is Verdict.FAIL


def test_cut_short_before_covering_the_region_is_an_error_never_a_pass() -> None:
    # 1 ms per clock reading: the deadline of 2.5 ms falls in the first pattern's write phase
    ms = run({"max_time_s": 0.0025}, memtest.Memtest(clock=TickClock()))
    main = ms[0]
    (p,) = main.settings["patterns"]
    assert p["pattern"] == "0x00" and not p["complete"] and p["chunks"] == [0, 3]
    assert main.value == 0 and main.sanity is None
    assert reasons(ms, "could_not_measure") == {
        "mismatched_words": "max_time_s 0.0025 s ended before any pattern covered the 0.00 GiB tested "
        "(0x00: 0 of 3 chunks): raise max_time_s or test less memory (max_mib)"
    }
    result = verdict(ms)
    assert result.verdict is Verdict.ERROR


def test_passes_zero_repeats_the_patterns_until_the_time_is_up() -> None:
    clock = TickClock()
    ms = run(
        {"passes": 0, "patterns": ["0x55", "random"], "max_time_s": 0.1005}, memtest.Memtest(clock=clock)
    )
    runs = ms[0].settings["patterns"]
    # 1 ms per clock reading: the start at 100.001 s, the deadline at 100.1015 s; each run reads the
    # clock 9 times (the schedule's check, then start, 3 writes, 3 reads, end): run k is checked at
    # 100.002 + 0.009 k, so runs 0-11 start; run 11 (pass 6, random) finds the deadline past at its
    # first write
    assert [(r["pass"], r["pattern"]) for r in runs] == [
        (n, p) for n in range(1, 7) for p in ("0x55", "random")
    ]
    assert [r["complete"] for r in runs] == [True] * 11 + [False]
    assert "; 12 pattern run(s) in 0.1005 s (pass 6 the last); " in ms[0].detail
    assert reasons(ms, "could_not_measure") == {}
    assert verdict(ms).verdict is Verdict.PASS


def test_the_retention_pause_waits_and_catches_a_fading_bit() -> None:
    slept: list[float] = []
    state: dict[str, Any] = {}

    def allocate(torch_: Any, device: Any, region: int, chunk: int) -> tuple[list[Any], str]:
        chunks, why = memtest.allocate_chunks(torch_, device, region, chunk)
        state["chunks"] = chunks
        return chunks, why

    def fade(seconds: float) -> None:  # the pause: a bit of chunk 1 leaks while nobody touches it
        slept.append(seconds)
        state["chunks"][1][9] ^= 1 << 62

    probe = memtest.Memtest(sleep=fade, allocate=allocate)
    ms = run({"patterns": ["retention"], "retention_s": 30}, probe)
    (p,) = ms[0].settings["patterns"]
    assert slept == [30.0] and p["complete"] and p["mismatches"] == 1
    assert (p["first"][0]["chunk"], p["first"][0]["offset"]) == (1, "0x48")
    assert ms[0].sanity is not None and "under pattern retention (pass 1)" in ms[0].sanity


def test_a_retention_pause_longer_than_the_time_left_is_cut_short() -> None:
    slept: list[float] = []
    ms = run(
        {"patterns": ["retention"], "retention_s": 30, "max_time_s": 10},
        memtest.Memtest(clock=TickClock(), sleep=slept.append),
    )
    (p,) = ms[0].settings["patterns"]
    assert not p["complete"] and len(slept) == 1 and slept[0] < 10
    assert "mismatched_words" in reasons(ms, "could_not_measure")


class WatchedMemtest(memtest.Memtest):
    """The CPU device's memory, watched as GPU 3 of the replayed H200 node."""

    def __init__(self, fake: FakeNvml, log: Path, **kw: Any) -> None:
        super().__init__(nvml=fake, **kw)
        self.fake, self.log = fake, log

    def watch(self, rt: Any, params: Any, inventory: Any) -> cw.CounterWatch:
        return cw.CounterWatch(
            3, BUS, kernel_log=str(self.log), nvml=self.fake, wall=lambda: START, during="the memtest"
        )


def test_ecc_counters_and_xids_are_read_around_the_test_and_judged(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_text("")
    fake = FakeNvml()

    def during(seconds: float) -> None:  # while the retention pattern waits: 12 corrected, 1 remapped
        fake.device_overrides[3] = {"ecc": ecc(cv=12, ca=12), "remapped_rows": (1, 0, 1, 0)}

    ms = run({"patterns": ["0x55", "retention"], "retention_s": 1}, WatchedMemtest(fake, log, sleep=during))
    by = {m.metric: m for m in measured(ms)}
    assert by["mismatched_words"].value == 0  # ECC corrected every word: the data read back right
    assert by["ecc_correctable_new"].value == 12.0
    assert by["ecc_correctable_new"].detail == (
        "12 correctable ECC errors during the memtest (0 before, 12 after)"
    )
    assert by["remapped_rows_new"].value == 1.0 and by["ecc_uncorrectable_new"].value == 0.0
    assert by["xid_new"].value == 0.0
    assert by["mismatched_words"].settings["counters_after"]["ecc_correctable_volatile"] == 12
    result = verdict(ms)
    verdicts = {e.metric: e.verdict for e in result.evaluations}
    assert verdicts["ecc_correctable_new"] is Verdict.WARN and verdicts["remapped_rows_new"] is Verdict.WARN
    assert verdicts["mismatched_words"] is Verdict.PASS and result.verdict is Verdict.WARN


def cuda_error_at(write_no: int, message: str, before: Any = None) -> Any:
    original = passes.write
    count = {"n": 0}

    def write(chunk: torch.Tensor, want: Any) -> None:
        count["n"] += 1
        if count["n"] == write_no:
            if before is not None:
                before()
            raise RuntimeError(message)
        original(chunk, want)

    return write


ECC_MESSAGE = (
    "CUDA error: uncorrectable ECC error encountered\nCUDA kernel errors might be asynchronously "
    "reported at some other API call, so the stacktrace below might be incorrect."
)


def test_the_cuda_ecc_error_is_a_fail_naming_gpu_pattern_progress_and_counters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "kern.log"
    log.write_text("")
    fake = FakeNvml()

    def rise() -> None:  # what the driver does first: count the error, log XID 48
        fake.device_overrides[3] = {"ecc": ecc(uv=1, ua=1)}
        log.write_text(XID_48)

    # patterns 0x55 (3 writes), then random: its third chunk's write raises
    monkeypatch.setattr(passes, "write", cuda_error_at(6, ECC_MESSAGE, rise))
    ms = run({"patterns": ["0x55", "random"]}, WatchedMemtest(fake, log))
    main = ms[0]
    assert main.sanity == (
        "gpu3: CUDA error: uncorrectable ECC error encountered during the memtest, pattern random (pass 1), "
        "write of chunk 3 of 3, 2 MiB written of 3 MiB; after it: 1 uncorrectable ECC errors during the "
        "memtest (0 before, 1 after); XID 48 x1 (double-bit ECC error) on PCI 0000:5d:00 during the memtest"
    )
    assert main.settings["stopped_by"].startswith("CUDA error: uncorrectable ECC error encountered")
    by = {m.metric: m.value for m in ms}
    assert by["ecc_uncorrectable_new"] == 1.0 and by["xid_new"] == 1.0
    result = verdict(ms)
    assert result.verdict is Verdict.FAIL
    assert any(e.kind == "sanity" and e.verdict is Verdict.FAIL for e in result.evaluations)


def test_a_cuda_error_nothing_blames_on_the_gpu_stays_the_probes_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "kern.log"
    log.write_text("")
    monkeypatch.setattr(
        passes, "write", cuda_error_at(2, "CUDA error: an illegal memory access was encountered")
    )
    with pytest.raises(RuntimeError, match="illegal memory access"):
        run({"patterns": ["0x55"]}, WatchedMemtest(FakeNvml(), log))


def test_region_size_by_hand() -> None:
    # 80 GiB free, fraction 0.9, 1 GiB chunks: 72 GiB less the scratch chunk = 71 GiB
    assert calc.region_bytes(80 * 2**30, 0.9, None, 2**30) == 76_235_669_504
