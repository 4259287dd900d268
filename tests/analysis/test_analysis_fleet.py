"""``hpcbench fleet``: planted slow nodes, a slow GPU, drifted nodes and bad records, found."""

from __future__ import annotations

import csv
import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import Cli
from support import fleetgen

from hpcbench.analysis import fleet, load, robust

SLOW = {
    "node005": {"gemm": 0.75},  # every GPU of the node
    "node007": {"hbm/gpu3": 0.8},  # one GPU
    "node011": {"membw/node": 0.85},  # the node's CPU memory bandwidth
    "node014": {"nvme//mnt/nvme0/read_lat_p99": 0.7},  # a lower-is-better metric: latency up 1/0.7
}
DRIFT = {
    "node009": {"gpus.driver_version": "535.129.03"},
    "node012": {"cpu.governor": "powersave"},
    "node013": {"os.kernel": "6.8.0-31-generic"},
}


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fleet")
    fleetgen.fleet(root, 30, slow=SLOW, drift=DRIFT, base=fleetgen.baseline())
    fleetgen.write(
        fleetgen.record(
            fleetgen.Node("node020"),
            fleetgen.T0 + timedelta(hours=1),
            suite_obj=fleetgen.suite("quick", ("membw",)),
        ),
        root,
    )
    template = json.loads(next((root / "node003").glob("*.json")).read_text())
    fleetgen.write_bad(root, template, hosts=("node001", "node002"))
    return root


def test_robust_score_is_oriented_and_handles_zero_mad() -> None:
    s = robust.robust_score([90.0, 110.0, 100.0], 100.0, 5.0, np.array([True, True, True]))
    assert s[0] < 0 < s[1] and s[2] == 0
    lat = robust.robust_score([120.0, 80.0], 100.0, 5.0, np.array([False, False]))
    assert lat[0] < 0 < lat[1]  # higher latency is worse
    z = robust.robust_score([99.0, 100.0], 100.0, 0.0, np.array([True, True]))
    assert z[0] == -np.inf and z[1] == 0


def test_trimmed_removes_outliers_iteratively() -> None:
    vals = [100, 101, 99, 100.5, 99.5, 100.2, 60, 70, 300]
    median, keep = robust.trimmed(vals, k=3.5)
    assert list(np.asarray(vals)[~keep]) == [60, 70, 300]
    assert median == pytest.approx(100.1)


def test_drift_flags_minority_values_and_reports_splits() -> None:
    cfg = {"gpu.driver": "550", "os.kernel": "5.15"}
    runs = pd.DataFrame(
        {
            "host": ["a", "b", "c", "d"],
            "config": [cfg, cfg, {**cfg, "gpu.driver": "535"}, {"gpu.driver": "550"}],
        }
    )
    rows, split = fleet.drift(runs)
    got = {(r.host, r.field, r.value, r.majority) for r in rows.itertuples()}
    assert got == {("c", "gpu.driver", "535", "550"), ("d", "os.kernel", "(absent)", "5.15")}
    runs2 = pd.DataFrame({"host": list("abcd"), "config": [{"x": "1"}, {"x": "1"}, {"x": "2"}, {"x": "2"}]})
    rows2, split2 = fleet.drift(runs2)
    assert rows2.empty and split2 == {"x": {"1": 2, "2": 2}}


def analysed(fleet_dir: Path, **opts: float) -> dict[str, fleet.SuiteFleet]:
    loaded = load.load([fleet_dir], latest=True, warn=lambda p, r: None)
    return {f.suite: f for f in fleet.analyse(loaded, fleet.Options(**opts))}


def test_planted_slow_nodes_and_gpu_are_flagged_and_nothing_else(fleet_dir: Path) -> None:
    f = analysed(fleet_dir)["nightly"]
    flagged = f.scores.loc[f.scores["flagged"]]
    by_host = {
        h: set(zip(g["check"].astype(str), g["subject"].astype(str), g["metric"].astype(str), strict=True))
        for h, g in flagged.groupby("host", observed=True)
    }
    assert set(by_host) == set(SLOW)
    assert by_host["node005"] == {("gemm", f"gpu{i}", m) for i in range(8) for m in ("bf16", "tf32")}
    assert by_host["node007"] == {("hbm", "gpu3", "copy")}
    assert by_host["node011"] == {("membw", "node", m) for m in ("copy", "scale", "add", "triad")}
    assert by_host["node014"] == {("nvme", "/mnt/nvme0", "read_lat_p99")}
    assert set(f.drain) == set(SLOW)
    row = f.nodes.set_index("host").loc["node007"]
    assert row["status"] == "DRAIN" and "hbm/gpu3 copy" in row["reasons"][0] and "80%" in row["reasons"][0]
    assert any("8 GPUs" in r for r in f.nodes.set_index("host").loc["node005", "reasons"])


def test_drifted_nodes_are_to_check(fleet_dir: Path) -> None:
    f = analysed(fleet_dir)["nightly"]
    assert sorted(f.check) == sorted(DRIFT)
    drift = {(r.host, r.field, r.value) for r in f.drift.itertuples()}
    assert drift == {
        ("node009", "gpu.driver", "535.129.03"),
        ("node012", "cpu.governor", "powersave"),
        ("node013", "os.kernel", "6.8.0-31-generic"),
    }


def test_thresholds_change_what_is_flagged(fleet_dir: Path) -> None:
    f = analysed(fleet_dir, min_deviation=0.22)["nightly"]
    assert set(f.scores.loc[f.scores["flagged"], "host"]) == {"node005", "node014"}  # ratios 0.75, 0.7
    f = analysed(fleet_dir, min_nodes=31)["nightly"]
    assert not f.scores["flagged"].any()
    failed = set(f.nodes.loc[f.nodes["verdict"] == "FAIL", "host"])
    assert {"node005", "node014"} <= failed <= set(SLOW)
    assert set(f.drain) == failed  # drained for their own FAIL verdict only


def test_healthy_fleet_flags_nothing(tmp_path: Path) -> None:
    fleetgen.fleet(tmp_path, 25)
    (f,) = analysed(tmp_path).values()
    assert not f.drain and not f.check and f.drift.empty
    assert (f.nodes["status"] == "OK").all()


def test_too_small_a_fleet_scores_nobody(tmp_path: Path) -> None:
    fleetgen.fleet(tmp_path, 3, slow={"node001": {"gemm": 0.5}})
    (f,) = analysed(tmp_path).values()
    assert not f.scores["flagged"].any() and not f.metrics["scored"].any()
    assert f.drain == []  # no baseline in these records, so no FAIL verdict either


def test_errors_and_stale_records_are_to_check(tmp_path: Path) -> None:
    fleetgen.fleet(tmp_path, 8)
    late = fleetgen.T0 + timedelta(days=12)
    for i in range(7):
        node = fleetgen.Node(f"node{i:03d}")
        fleetgen.write(fleetgen.record(node, late, errors=("allreduce",) if i == 3 else ()), tmp_path)
    (f,) = analysed(tmp_path).values()
    nodes = f.nodes.set_index("host")
    assert nodes.loc["node003", "status"] == "CHECK" and nodes.loc["node003", "verdict"] == "UNKNOWN"
    assert any("probe crashed" in r for r in nodes.loc["node003", "reasons"])
    assert nodes.loc["node007", "status"] == "CHECK"
    assert "12 days older" in nodes.loc["node007", "reasons"][0]


def test_fleet_cli_table_warns_about_bad_records(cli: Cli, fleet_dir: Path) -> None:
    r = cli("fleet", str(fleet_dir))
    assert r.returncode == 2, r.stderr
    for host in (*SLOW, *DRIFT):
        assert host in r.stdout
    assert "fleet nightly: 30 nodes" in r.stdout and "4 to drain" in r.stdout and "3 to check" in r.stdout
    assert "fleet quick: 1 nodes" in r.stdout and "too few nodes" in r.stdout
    warnings = [line for line in r.stderr.splitlines() if line.startswith("hpcbench: warning: skipped")]
    assert len(warnings) == 3
    assert any("node001" in w and "not a readable result record" in w for w in warnings)
    assert any("node002" in w and "schema_version 99" in w for w in warnings)
    assert any("notes.json" in w for w in warnings)


def test_fleet_cli_json_and_csv(cli: Cli, fleet_dir: Path) -> None:
    r = cli("fleet", str(fleet_dir), "--suite", "nightly", "--format", "json", "--csv", "scores.csv")
    assert r.returncode == 2, r.stderr
    data = json.loads(r.stdout)
    (s,) = data["suites"]
    assert s["suite"] == "nightly" and s["nodes"] == 30
    assert sorted(s["drain"]) == sorted(SLOW) and sorted(s["check"]) == sorted(DRIFT)
    gpu = [o for o in s["outliers"] if o["host"] == "node007"]
    assert [(o["check"], o["subject"], o["metric"]) for o in gpu] == [("hbm", "gpu3", "copy")]
    assert gpu[0]["ratio"] == pytest.approx(0.8, abs=0.03) and gpu[0]["score"] < -3.5
    assert {d["host"] for d in s["drift"]} == set(DRIFT)
    assert {k["path"].rsplit("/", 2)[-2] for k in data["skipped"]} == {
        "node001",
        "node002",
        "junk",
        "node020",
    }
    with open(cli.workdir / "scores.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 30 * (16 + 8 + 16 + 8 + 8 + 8 + 4 + 2 + 2 + 1)
    flagged = {(x["host"], x["check"], x["subject"]) for x in rows if x["flagged"] == "True"}
    assert ("node007", "hbm", "gpu3") in flagged and ("node007", "hbm", "gpu2") not in flagged


def test_fleet_cli_bad_input(cli: Cli, tmp_path: Path) -> None:
    r = cli("fleet", str(tmp_path / "nothing"))
    assert r.returncode == 4 and r.stderr.startswith("hpcbench: error:") and "Traceback" not in r.stderr
    (tmp_path / "empty").mkdir()
    r = cli("fleet", str(tmp_path / "empty"))
    assert r.returncode == 4 and "no usable result records" in r.stderr
    r = cli("fleet", str(tmp_path / "empty"), "--k", "-1")
    assert r.returncode == 4 and "--k" in r.stderr
