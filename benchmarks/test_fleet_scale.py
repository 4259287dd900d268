"""Scale of ``hpcbench fleet``: 10,000 records of about 50 checks each, under 10 s and 2 GB.

The benchmark writes a results folder as nightly cron leaves it: 1,000 nodes x 10 nights =
10,000 records of the synthetic 8-GPU suite (53 checks, 73 measurements of 10 samples each,
~150 KB of JSON per record, 1.5 GB in all). Records come from the real ``session.build_record``
(tests/support/fleetgen.py): 40 distinct records are built and each written under many hosts and
nights; 5 nodes have a planted slow GPU or slow node in their last record, and 3 files are
bad. Then it runs ``hpcbench fleet DIR --format json`` as a subprocess and measures its wall
time and the peak memory of the whole process tree (the CLI and its worker processes, sampled
every 20 ms with psutil; the CLI's own peak from getrusage besides), and checks the planted
nodes were found.

A second run: 10,000 records of 10,000 distinct nodes (one night), where every file must be
parsed in full, under the same limits (records are parsed with orjson).

    .venv/bin/python -m pytest benchmarks/test_fleet_scale.py -s

Environment: HPCBENCH_SCALE_NODES (1000), HPCBENCH_SCALE_NIGHTS (10), HPCBENCH_SCALE_MAX_S (10),
HPCBENCH_SCALE_MAX_MB (2048), HPCBENCH_SCALE_WIDE=0 to leave out the distinct-nodes run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support import fleetgen  # noqa: E402

NODES = int(os.environ.get("HPCBENCH_SCALE_NODES", "1000"))
NIGHTS = int(os.environ.get("HPCBENCH_SCALE_NIGHTS", "10"))
MAX_S = float(os.environ.get("HPCBENCH_SCALE_MAX_S", "10"))
MAX_MB = float(os.environ.get("HPCBENCH_SCALE_MAX_MB", "2048"))
WIDE = os.environ.get("HPCBENCH_SCALE_WIDE", "1") != "0"
TEMPLATES = 40
PLANTED = {
    "gpu00017": {"gemm/gpu3": 0.7},
    "gpu00123": {"hbm": 0.8},
    "gpu00456": {"membw/node": 0.8},
    "gpu00789": {"pcie/gpu5": 0.5},
    "gpu00901": {"nvlink/gpu0": 0.75},
}

#: runs the CLI, returns its exit code and its own peak RSS (getrusage of the waited-for child)
WRAPPER = """
import json, resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
sys.stdout.buffer.write(proc.stdout)
sys.stderr.buffer.write(proc.stderr)
sys.stderr.write("\\nRUSAGE " + json.dumps({"rc": proc.returncode,
    "maxrss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}) + "\\n")
"""


def write_fleet(root: Path, nodes: int, nights: int, planted: dict[str, dict[str, float]]) -> int:
    """Records of ``nodes`` x ``nights``; planted nodes' last night built for real. Returns the count."""
    suite = fleetgen.suite("nightly")
    base = fleetgen.baseline()
    templates = [
        json.dumps(
            fleetgen.record(fleetgen.Node(f"TEMPLATE{i:02d}"), fleetgen.T0, base=base, seed=i), indent=1
        )
        for i in range(TEMPLATES)
    ]
    stamp0 = "2026-11-01T02:00:00Z"
    count = 0
    for night in range(nights):
        day = fleetgen.T0 + timedelta(days=night)
        stamp = day.isoformat(timespec="seconds").replace("+00:00", "Z")
        name = stamp.replace(":", "").replace("-", "") + ".json"
        for n in range(nodes):
            host = f"gpu{n:05d}"
            folder = root / host
            folder.mkdir(parents=True, exist_ok=True)
            if host in planted and night == nights - 1:
                rec = fleetgen.record(
                    fleetgen.Node(host, slow=planted[host]), day, suite_obj=suite, base=base
                )
                (folder / name).write_text(json.dumps(rec, indent=1))
            else:
                t = (n * 7 + night) % TEMPLATES
                text = templates[t].replace(f"TEMPLATE{t:02d}", host).replace(stamp0, stamp)
                (folder / name).write_text(text)
            count += 1
    # bad files: a truncated newest record, another schema version, JSON that is no record
    last = sorted((root / "gpu00001").glob("*.json"))[-1].read_text()
    late = (fleetgen.T0 + timedelta(days=nights + 5)).strftime("%Y%m%dT%H%M%SZ") + ".json"
    (root / "gpu00001" / late).write_text(last[: len(last) // 3])
    (root / "gpu00002" / late).write_text(last.replace('"schema_version": 1', '"schema_version": 7', 1))
    (root / "notes.json").write_text('{"not": "a record"}')
    return count


def run_measured(argv: list[str]) -> tuple[float, dict[str, Any], str, str]:
    """Wall time, getrusage peak, stdout, stderr; the process tree's peak RSS sampled meanwhile."""
    peak = {"tree_mb": 0.0}
    t0 = time.perf_counter()
    proc = psutil.Popen(
        [sys.executable, "-c", WRAPPER, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                procs = [proc, *proc.children(recursive=True)]
                total = sum(p.memory_info().rss for p in procs if p.is_running())
                peak["tree_mb"] = max(peak["tree_mb"], total / 2**20)
            except psutil.Error:
                pass
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate(timeout=900)
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    usage = json.loads(err.rsplit("RUSAGE ", 1)[1])
    return wall, {**usage, **peak}, out, err


def hpcbench() -> str:
    return str(Path(sys.executable).parent / "hpcbench")


@pytest.fixture(scope="module")
def nightly(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    root = tmp_path_factory.mktemp("scale")
    t0 = time.perf_counter()
    count = write_fleet(root, NODES, NIGHTS, PLANTED)
    print(f"\nwrote {count} records ({NODES} nodes x {NIGHTS} nights) in {time.perf_counter() - t0:.1f} s")
    yield root, count
    shutil.rmtree(root, ignore_errors=True)  # 1.5 GB: not left behind in pytest's kept temp folders


def test_fleet_of_10000_records(nightly: tuple[Path, int]) -> None:
    root, count = nightly
    size = sum(p.stat().st_size for p in root.rglob("*.json")) / 1e9
    wall, usage, out, err = run_measured([hpcbench(), "fleet", str(root), "--format", "json"])
    data = json.loads(out)
    (suite,) = data["suites"]
    print(
        f"fleet: {count} records ({size:.2f} GB of JSON), {suite['nodes']} nodes: {wall:.2f} s wall, "
        f"peak RSS {usage['tree_mb']:.0f} MB (process tree), {usage['maxrss_mb']:.0f} MB (largest process); "
        f"limits {MAX_S:g} s, {MAX_MB:g} MB"
    )
    assert usage["rc"] == 2, err[-2000:]
    assert suite["nodes"] == NODES
    assert set(suite["drain"]) == set(PLANTED), suite["drain"]
    assert len(data["skipped"]) == 3, data["skipped"]
    assert wall < MAX_S and usage["tree_mb"] < MAX_MB


@pytest.mark.skipif(not WIDE, reason="HPCBENCH_SCALE_WIDE=0")
def test_fleet_of_10000_distinct_nodes(tmp_path: Path) -> None:
    count = write_fleet(tmp_path, NODES * NIGHTS, 1, {})
    try:
        wall, usage, out, err = run_measured([hpcbench(), "fleet", str(tmp_path), "--format", "json"])
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)
    (suite,) = json.loads(out)["suites"]
    print(
        f"fleet (every file parsed): {count} records of {suite['nodes']} distinct nodes: "
        f"{wall:.2f} s wall, peak RSS {usage['tree_mb']:.0f} MB (process tree), "
        f"{usage['maxrss_mb']:.0f} MB (largest process)"
    )
    assert suite["nodes"] == NODES * NIGHTS  # gpu00001 and gpu00002 fall back to their good record
    assert wall < MAX_S and usage["tree_mb"] < MAX_MB
