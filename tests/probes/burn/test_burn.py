"""The burn probe on the CPU device: its real loop, windows and stability pinned with a fixed clock, a
corrupted output caught bit for bit (FAIL naming the subject and the time), host load in processes
of their own, progress lines, and the CLI. (A sag in one window, judged on a fixed clock: the
stability fault of tests/test_burn_gpu_branch.py.)"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
import torch
from conftest import Cli, marked_processes, no_marked_processes, wait_for
from support.results import measured

from hpcbench.core.errors import ParamError, ProbeError
from hpcbench.core.exitcodes import ExitCode
from hpcbench.core.measurement import Verdict
from hpcbench.engine import suite as suite_mod
from hpcbench.engine.judge import evaluate
from hpcbench.hw import matmul as mm
from hpcbench.node.inventory import Inventory
from hpcbench.probes import registry
from hpcbench.probes.base import PROGRESS_FILE, ProbeContext, build_params
from hpcbench.probes.burn import calc, loop
from hpcbench.probes.burn import probe as burn

INVENTORY = Inventory.from_dict(
    {"cpu": {"model": "test cpu", "threads": 2, "llc_bytes": 4 * 2**20}, "gpus": {"count": 0}}
)
#: one thread: on this shared 2-core machine an OpenMP pair spinning beside other tests stalls for
#: seconds at a time (the windows then outlast the run)
FAST = {
    "device": "cpu",
    "shape": 64,
    "duration_s": 2.0,
    "window_s": 0.5,
    "verify_every_s": 0.25,
    "threads": 1,
}


def run(values: dict[str, Any], subject: str = "node", workdir: str = "") -> list:
    params = build_params(burn.Burn, {**FAST, **values})
    ctx = ProbeContext(subject=subject, inventory=INVENTORY, workdir=workdir)
    return burn.Burn().run(params, ctx)


def suite_check(name: str, check_id: str = "burn") -> Any:
    classes = registry.load_all()
    return next(c for c in suite_mod.load(name, classes).checks if c.id == check_id)


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"dtype": "int8"}, "dtype"),
        ({"duration_s": 20.0, "window_s": 10.0}, "duration_s"),
        ({"window_s": 0.0}, "window_s"),
        ({"verify_every_s": -1.0}, "verify_every_s"),
        ({"dtype": "fp8", "shape": 100}, "shape"),
        ({"shape": "8x8"}, "shape"),
        ({"device": "cuda"}, "device"),
        ({"host_load_mib": 0}, "host_load_mib"),
        ({"xid_ignore": [-1]}, "xid_ignore"),
    ],
)
def test_param_errors(values: dict[str, Any], key: str) -> None:
    with pytest.raises(ParamError) as exc:
        build_params(burn.Burn, values)
    assert exc.value.key == key


def test_probe_attributes_and_metric_names() -> None:
    assert burn.Burn.name == "burn" and burn.Burn.expands == {"gpu": "device"}
    assert [r.kind for r in burn.Burn.requires] == ["idle_gpu"]
    for ok in ("bf16_sustained", "fp8_sustained", "stability", "droop", "hw_slowdown_s", "xid_new"):
        assert ok in burn.Burn.metrics
    assert "bf16" not in burn.Burn.metrics and "int8_sustained" not in burn.Burn.metrics
    p = build_params(burn.Burn, {})
    assert (p.dtype, p.shape, p.duration_s, p.window_s, p.verify_every_s) == ("bf16", "auto", 60.0, 10.0, 5.0)


class StepClock:
    """A clock that advances ``dt`` seconds at every GEMM: the loop's numbers become exact."""

    def __init__(self, dt: float) -> None:
        self.t = 1000.0
        self.dt = dt

    def __call__(self) -> float:
        return self.t


def test_loop_numbers_are_pinned_with_a_fixed_clock() -> None:
    shape = mm.Shape(32, 32, 32)
    x, w = mm.operands(torch, "cpu", "fp32", shape, torch.Generator().manual_seed(0))
    a, b = x[0], w[0]
    y = torch.empty(32, 32)
    clock = StepClock(0.01)

    def step() -> torch.Tensor:
        clock.t += clock.dt
        return torch.mm(a, b.t(), out=y)

    reference = step().clone()
    flops = mm.gemm_flops(shape)
    seen: list[calc.Window] = []
    result = loop.run(
        step,
        lambda out: calc.compare(torch, reference, out),
        duration_s=3.0,
        window_s=1.0,
        verify_every_s=0.5,
        flops_per_iteration=flops,
        clock=clock,
        on_window=seen.append,
    )
    assert result.corruptions == [] and seen == result.windows
    assert sum(wi.iterations for wi in result.windows) == result.iterations
    assert result.iterations == pytest.approx(300, abs=2)  # 3 s of 10 ms GEMMs
    for wi in result.windows:
        assert wi.tflops == flops * wi.iterations / (wi.end - wi.start) / 1e12
    # a window closes at the first batch (here 10 GEMMs, 0.1 s) ending a window after it opened;
    # the last one is what is left of the 3 s, at least half a window
    assert all(1.0 - 1e-9 <= wi.seconds <= 1.1 + 1e-9 for wi in result.windows[:-1])
    assert 0.5 <= result.windows[-1].seconds <= 1.1 + 1e-9 and result.windows[-1].end == result.seconds
    assert len(result.windows) == 3 and result.seconds == pytest.approx(3.0, abs=0.011)
    assert result.verifications == pytest.approx(6, abs=1)  # every 0.5 s
    st = calc.stability(result.windows, 3.0)
    assert st.sustained_windows == (1, 2) and st.sustained == statistics.median(
        w.tflops for w in result.windows[1:]
    )
    # every GEMM takes 10 ms: every window runs at the same rate, stability and droop are 1
    assert st.stability == pytest.approx(1.0, abs=0.02) and st.droop == pytest.approx(1.0, abs=0.02)


def test_cpu_burn_runs_its_real_code(tmp_path: Path) -> None:
    ms = run({}, workdir=str(tmp_path))
    by = {m.metric: m for m in measured(ms)}
    assert list(by) == ["bf16_sustained", "stability", "droop"]  # no NVML metric on the CPU device
    main = by["bf16_sustained"]
    s = main.settings
    windows = [
        calc.Window(w["index"], w["start_s"], w["end_s"], w["iterations"], w["tflops"]) for w in s["windows"]
    ]
    assert len(windows) >= 2 and main.sanity is None and main.unit == "TFLOPS" and main.statistic == "median"
    # sustained = the median of the windows after the first third (0.667 s of 2 s)
    after = [w for w in s["windows"] if w["start_s"] >= 2.0 / 3]
    assert list(main.samples) == [w["tflops"] for w in after] and main.value == statistics.median(
        main.samples
    )
    assert s["sustained_windows"] == [w["index"] + 1 for w in after]
    for w in s["windows"]:  # each window's TFLOPS = 2mnk * iterations / seconds / 1e12 (times rounded to ms)
        assert w["tflops"] == pytest.approx(
            2 * 64**3 * w["iterations"] / (w["end_s"] - w["start_s"]) / 1e12, rel=1e-2
        )
    assert by["stability"].value == pytest.approx(min(main.samples) / main.value, rel=1e-9)
    st = calc.stability(windows, 2.0)  # droop: the last 0.667 s against the first 0.667 s
    assert by["droop"].value == pytest.approx(st.droop, rel=1e-2)
    assert by["droop"].settings["first_windows"] == [i + 1 for i in st.first_windows]
    assert s["flops_per_iteration"] == 2 * 64**3 and s["iterations"] == sum(
        w["iterations"] for w in s["windows"]
    )
    v = s["verification"]
    assert v["corruptions"] == [] and v["verifications"] >= 5 and v["deterministic_algorithms"] is True
    assert v["first_output_float64"]["wrong"] == 0 and v["first_output_float64"]["checked"] == 64 * 64
    # the digest is the sha256 of the first output's bytes: recomputed from the same seeded inputs
    x, w = mm.operands(torch, "cpu", "bf16", mm.Shape(64, 64, 64), torch.Generator().manual_seed(0))
    first = torch.mm(x[0], w[0].t())
    assert v["first_output_sha256"] == hashlib.sha256(first.view(torch.uint8).numpy().tobytes()).hexdigest()
    agree = by["bf16_sustained"].consensus
    assert agree is not None and agree.name == "first_output_sha256"
    assert agree.value == v["first_output_sha256"] and "bf16 64x64x64 seed 0" in agree.group
    assert s["telemetry"] == {"source": None, "reason": "the CPU device has no NVML telemetry"}
    assert s["host_load"] == {"cpus": 0, "requested": False}
    assert torch.are_deterministic_algorithms_enabled() is False  # the probe put torch's setting back
    lines = (tmp_path / PROGRESS_FILE).read_text().splitlines()
    assert len(lines) == len(windows) and lines[0].startswith("window 1 (0-")
    assert lines[0].endswith(f"{windows[0].tflops:.4g} TFLOPS")


def test_a_corrupted_element_is_a_fail_naming_the_subject_and_the_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One element of the 8th GEMM's output (loop iteration 7) gets a flipped bit; verified after
    every GEMM, the bit-for-bit comparison catches it, and the check FAILs."""
    original = burn.make_step
    calls = {"n": 0}

    def faulty(*args: Any) -> Any:
        step = original(*args)

        def run_step() -> torch.Tensor:
            out = step()
            calls["n"] += 1
            if calls["n"] == 8:  # call 1 is the reference (iteration 0)
                out.view(torch.int16)[3, 5] ^= 0x0100  # an exponent bit of y[3, 5]
            return out

        return run_step

    monkeypatch.setattr(burn, "make_step", faulty)
    ms = run({"verify_every_s": 0.0}, subject="gpu3")
    main = ms[0]
    (c,) = main.settings["verification"]["corruptions"]
    assert c["iteration"] == 7 and c["differ"] == 1 and (c["first"][0]["row"], c["first"][0]["col"]) == (3, 5)
    assert main.sanity is not None
    found = re.fullmatch(
        r"gpu3: 1 of 4,096 elements differ from its first result at (\d+\.\d) s \(iteration 7\); "
        rf"first at y\[3, 5\] \({c['first'][0]['found']}, was {c['first'][0]['expected']}\)",
        main.sanity,
    )
    assert found is not None and abs(float(found[1]) - c["at_s"]) <= 0.051, main.sanity
    check = suite_check("acceptance")
    ev = evaluate(main, check, None, Inventory.from_dict({}))
    assert ev.verdict is Verdict.FAIL and ev.kind == "sanity"
    assert ev.reason.startswith("wrong result: gpu3: 1 of 4,096 elements differ from its first result at ")
    assert "silent data corruption" in ev.hint


def test_a_wrong_first_output_fails_against_float64(monkeypatch: pytest.MonkeyPatch) -> None:
    original = burn.make_step

    def wrong_from_the_start(*args: Any) -> Any:
        step = original(*args)

        def run_step() -> torch.Tensor:
            out = step()
            out[1, 2] = out[1, 2] * 2 + 1  # every output wrong the same way: only float64 can tell
            return out

        return run_step

    monkeypatch.setattr(burn, "make_step", wrong_from_the_start)
    (main, *_) = run({})
    assert main.sanity is not None and main.sanity.startswith(
        "burn bf16 64x64x64: 1 of 4096 sampled outputs differ"
    )
    assert main.settings["verification"]["corruptions"] == []  # consistent with itself, wrong against float64


def _busy(cpu: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
    os.sched_setaffinity(proc.pid, {cpu})
    return proc


def test_host_load_runs_in_processes_of_its_own_and_stops_with_the_burn(tmp_path: Path) -> None:
    ms = run(
        {"host_load": True, "host_load_mib": 8, "duration_s": 2.1, "window_s": 0.7}, workdir=str(tmp_path)
    )
    host = ms[0].settings["host_load"]
    allowed = sorted(os.sched_getaffinity(0))
    # the burn keeps its one thread's CPU; every other CPU runs a triad + GEMM worker
    assert host["cpus"] == len(allowed) - 1 and host["errors"] == [] and host["cpu_list"] == allowed[1:]
    for r in host["per_cpu"]:
        assert r["triad_gbs"] > 0 and r["gemm_gflops"] > 0
    assert host["triad_gbs"] == pytest.approx(sum(r["triad_gbs"] for r in host["per_cpu"]))
    me = psutil.Process()
    assert [p for p in me.children(recursive=True) if "hostload" in " ".join(p.cmdline())] == []


def test_host_load_rates_are_stream_bytes_and_two_n_cubed() -> None:
    from hpcbench.probes.burn import hostload

    stats = {"elements": 1000, "gemm_n": 256, "triads": 50, "gemms": 20, "seconds": 2.0}
    assert hostload.rates(stats) == (50 * 24 * 1000 / 2.0 / 1e9, 20 * 2 * 256**3 / 2.0 / 1e9)
    assert hostload.triad_elements(96) == 96 * 2**20 // 24


def test_a_duration_longer_than_the_timeout_is_an_error_with_the_fix() -> None:
    params = build_params(burn.Burn, {"device": "cpu", "duration_s": 600.0})
    with pytest.raises(
        ProbeError, match=r"duration_s 600 s does not fit in the check's timeout of 600 s"
    ) as exc:
        burn.Burn().run(params, ProbeContext(inventory=INVENTORY, timeout=600.0))
    assert "at least 660 s" in exc.value.hint


def test_progress_line() -> None:
    w = calc.Window(11, 110.2, 120.3, 5000, 768.25)
    assert burn.progress_line(w, 600, {}) == "window 12 (110-120 s of 600): 768.2 TFLOPS"
    tel = {"sm_clock_median_mhz": 1515.0, "temperature_max_c": 64.4, "power_median_w": 698.0}
    assert burn.progress_line(w, 600, tel).endswith("768.2 TFLOPS, SM 1515 MHz, 64 C, 698 W")


# ---------------------------------------------------------------------------
# The CLI: the runner tails the probe's progress lines and shows them on stderr.


def test_cli_burn_prints_windows_stability_and_droop(cli: Cli) -> None:
    r = cli(
        "probe", "burn", "-p", "device=cpu", "-p", "duration_s=1.5", "-p", "window_s=0.5", "-p", "shape=64",
        "-p", "threads=1", "--format", "json",
    )  # fmt: skip
    # judged with gpu-check's stability and droop limits: on two shared cores a window may sag
    assert r.returncode in (ExitCode.OK, ExitCode.WARN, ExitCode.FAIL), r.stderr
    check = json.loads(r.stdout)["checks"][0]
    assert check["status"] == "ok" and check["measurements"][0]["sanity"] is None
    assert [m["metric"] for m in check["measurements"]] == ["bf16_sustained", "stability", "droop"]
    windows = check["measurements"][0]["settings"]["windows"]
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("burn node: window ")]  # plain lines: no TTY
    assert len(lines) == len(windows) >= 2
    for line, w in zip(lines, windows, strict=True):
        assert line.startswith(f"burn node: window {w['index'] + 1} (") and line.endswith(
            f"): {w['tflops']:.4g} TFLOPS"
        )


def test_cli_bad_parameter_is_one_line_and_exit_4(cli: Cli) -> None:
    r = cli("probe", "burn", "-p", "duration_s=5", "-p", "window_s=10")
    assert r.returncode == ExitCode.USAGE and r.stderr.count("\n") == 1 and "at least 3 windows" in r.stderr


def test_host_load_dies_with_a_crashed_probe(cli: Cli) -> None:
    """SIGKILL the probe's child mid-burn: the runner kills its host-load workers too."""
    proc = cli.popen(
        "probe", "burn", "-p", "device=cpu", "-p", "host_load=true", "-p", "duration_s=60", "-p", "shape=64",
        "--timeout", "200", "--format", "json",
    )  # fmt: skip
    try:

        def workers() -> list[psutil.Process]:
            return [
                p
                for p in marked_processes(cli.mark)
                if "hpcbench.probes.burn.hostload" in " ".join(p.cmdline())
            ]

        wait_for(lambda: len(workers()) >= 1, timeout=60)
        (child,) = [p for p in marked_processes(cli.mark) if "hpcbench.engine.child" in " ".join(p.cmdline())]
        child.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    check = json.loads(out)["checks"][0]
    assert check["verdict"] == "ERROR" and "killed by SIGKILL" in check["reason"]
    no_marked_processes(cli.mark, timeout=10)


def test_import_loads_neither_torch_nor_numpy() -> None:
    code = (
        "import sys, hpcbench.probes.burn.probe, hpcbench.probes.memtest.probe\n"
        "print('torch' in sys.modules, 'numpy' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.split() == ["False", "False"], r.stderr
