"""Fidelity of the storage probe on this machine's disk, two ratios printed side by side.

1. probe / fio: the probe's random-read IOPS (its own fio command, run and parsed by the
   probe) against fio run directly with the identical command line on the same file,
   parsed here with plain ``json``; ABBA rounds (probe, fio, fio, probe, then the other
   way round) so that a drifting disk favours neither; the ratio is of all runs' sums.
   Must be within 0.95-1.05.
2. default / best: the probe's default random-read settings (iodepth, numjobs) against the
   best of a small iodepth x numjobs sweep with the same job otherwise; every setting runs
   once per round, in a rotated order, and medians are compared. Must be at least 0.9.

    .venv/bin/python -m pytest benchmarks/test_storage_fidelity.py -s

Environment: HPCBENCH_STORAGE_DIR (default: the current directory; the test file goes in a
fresh .hpcbench-storage-* folder there, removed afterwards), HPCBENCH_STORAGE_SIZE_MIB
(default 4096), HPCBENCH_STORAGE_ROUNDS (ABBA rounds, default 4), HPCBENCH_STORAGE_SWEEP_ROUNDS (3),
HPCBENCH_STORAGE_RUNTIME (seconds per fio run, default 5).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess

import pytest

from hpcbench.probes.base import build_params
from hpcbench.probes.storage import fs as sfs
from hpcbench.probes.storage.jobs import PROFILES, choose_engine, fill_argv, fio_argv, run_fio
from hpcbench.probes.storage.probe import Storage, Target, auto_numjobs, measure_profiles

TARGET = os.environ.get("HPCBENCH_STORAGE_DIR", ".")
SIZE_MIB = int(os.environ.get("HPCBENCH_STORAGE_SIZE_MIB", "4096"))
ROUNDS = int(os.environ.get("HPCBENCH_STORAGE_ROUNDS", "4"))
SWEEP_ROUNDS = int(os.environ.get("HPCBENCH_STORAGE_SWEEP_ROUNDS", "3"))
RUNTIME = int(os.environ.get("HPCBENCH_STORAGE_RUNTIME", "5"))
RAMP = 1
IODEPTHS = (4, 16, 64, 128)
NUMJOBS = (1, 2, 4)
TIMEOUT = 600


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:,.0f}" for v in values)


def direct_fio_iops(argv: list[str]) -> float:
    """fio run directly; read IOPS from its JSON with nothing but ``json``."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"fio failed: {proc.stderr[-1000:]}"
    data = json.loads(proc.stdout[proc.stdout.index("{") :])
    return float(sum(job["read"]["iops"] for job in data["jobs"]))


@pytest.fixture(scope="module")
def test_file() -> tuple[Target, str, str]:
    if shutil.which("fio") is None:
        pytest.skip("fio not found: apt-get install fio")
    target = os.path.realpath(TARGET)
    size = SIZE_MIB * sfs.MiB
    free, total = sfs.free_and_total(target)
    if free < size + sfs.margin(total):
        pytest.skip(f"{target}: {free / 2**30:.1f} GiB free, too little for a {SIZE_MIB} MiB test file")
    folder = sfs.make_test_dir(target)
    try:
        filename = str(folder / "fio-test.dat")
        refusal = sfs.direct_io_refusal(filename)
        if refusal:
            pytest.skip(f"{target} refuses direct I/O: {refusal}")
        os.truncate(filename, size)
        engine, how = choose_engine(filename, "auto", raw=False)
        run_fio(fill_argv(filename, size, engine), TIMEOUT, "fill")
        yield Target(target, filename, size, {}), engine, how
    finally:
        sfs.remove_test_dir(folder)


def test_storage_fidelity(test_file: tuple[Target, str, str]) -> None:
    target, engine, how = test_file
    params = build_params(
        Storage,
        {"profiles": ["randread"], "runtime_s": RUNTIME, "ramp_s": RAMP, "repeats": 1, "size_mib": SIZE_MIB},
    )
    default = (params.iodepth, params.numjobs or auto_numjobs(len(os.sched_getaffinity(0))))
    probe_argv = fio_argv(PROFILES["randread"], target.filename, target.size, engine, *default, RUNTIME, RAMP)

    direct_fio_iops(probe_argv)  # warm-up, not counted: the first run after the fill is slow here

    # 1. the probe against fio run directly with the identical job on the same file, in
    # ABBA rounds (probe, fio, fio, probe; then fio, probe, probe, fio) so drift cancels
    probe, direct, argvs = [], [], []
    per_round = []
    for i in range(ROUNDS):
        order = ("probe", "fio", "fio", "probe") if i % 2 == 0 else ("fio", "probe", "probe", "fio")
        p_round, d_round = [], []
        for who in order:
            if who == "probe":
                m = measure_profiles(params, target, engine, how, "node")[0]
                assert m.metric == "randread_iops"
                p_round.append(m.value)
                argvs.append(m.settings["fio_argv"])
            else:
                d_round.append(direct_fio_iops(probe_argv))
        probe += p_round
        direct += d_round
        per_round.append(sum(p_round) / sum(d_round))
    assert all(a == probe_argv for a in argvs)  # the probe ran exactly the command fio ran directly
    probe_ratio = sum(probe) / sum(direct)
    median_ratio = statistics.median(probe) / statistics.median(direct)

    # 2. the default random-read settings against a small iodepth x numjobs sweep
    configs = sorted({(q, j) for q in IODEPTHS for j in NUMJOBS} | {default})
    runs: dict[tuple[int, int], list[float]] = {c: [] for c in configs}
    for r in range(SWEEP_ROUNDS):
        shift = r * len(configs) // max(SWEEP_ROUNDS, 1)
        for qd, nj in configs[shift:] + configs[:shift]:
            argv = fio_argv(PROFILES["randread"], target.filename, target.size, engine, qd, nj, RUNTIME, RAMP)
            runs[(qd, nj)].append(direct_fio_iops(argv))
    medians = {c: statistics.median(v) for c, v in runs.items()}
    best = max(medians, key=medians.__getitem__)
    default_ratio = medians[default] / medians[best]

    lines = [
        f"\nstorage fidelity on {target.path} ({target.size / 2**30:.1f} GiB test file, {engine}, "
        f"4k random read, {RUNTIME} s per run + {RAMP} s ramp)",
        f"1. probe vs fio, same job and file, {ROUNDS} ABBA rounds:",
        f"   probe IOPS median {statistics.median(probe):>10,.0f}   runs {_list(probe)}",
        f"   fio   IOPS median {statistics.median(direct):>10,.0f}   runs {_list(direct)}",
        f"   ratio probe/fio {probe_ratio:.3f} (all runs; required 0.95-1.05); ratio of medians "
        f"{median_ratio:.3f}; per round {', '.join(f'{r:.3f}' for r in per_round)}",
        f"2. default iodepth={default[0]} numjobs={default[1]} vs a {len(configs)}-setting sweep, "
        f"{SWEEP_ROUNDS} rounds (median IOPS):",
        "   iodepth " + "".join(f"{f'numjobs={j}':>14}" for j in NUMJOBS),
    ]
    for q in sorted({c[0] for c in configs}):
        cells = "".join(f"{medians[(q, j)]:>14,.0f}" if (q, j) in medians else f"{'-':>14}" for j in NUMJOBS)
        lines.append(f"   {q:>7} {cells}")
    lines.append(
        f"   best iodepth={best[0]} numjobs={best[1]}: {medians[best]:,.0f} IOPS; "
        f"ratio default/best {default_ratio:.3f}; required >= 0.9"
    )
    lines.append(f"RATIOS probe/fio {probe_ratio:.3f}  default/best {default_ratio:.3f}")
    print("\n".join(lines))

    assert 0.95 <= probe_ratio <= 1.05, f"probe/fio IOPS ratio {probe_ratio:.3f} outside 0.95-1.05"
    assert default_ratio >= 0.9, (
        f"default settings reach {default_ratio:.3f} of the best sweep setting "
        f"iodepth={best[0]} numjobs={best[1]}"
    )
