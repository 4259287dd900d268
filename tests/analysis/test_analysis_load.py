"""The analysis loader: record heads, extraction, bad files skipped with warnings, latest per node."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import Cli
from support import fleetgen

from hpcbench.analysis import load
from hpcbench.core.errors import ConfigError


class Warnings(list):
    def __call__(self, path: str, reason: str) -> None:
        self.append((path, reason))


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 nodes x 3 nights of nightly, one quick record, and the bad files."""
    root = tmp_path_factory.mktemp("nights")
    fleetgen.fleet(root, 6, nights=3, suite_obj=fleetgen.suite("nightly", ("gemm", "membw")))
    quick = fleetgen.record(
        fleetgen.Node("node000"),
        fleetgen.T0 + timedelta(days=10),
        suite_obj=fleetgen.suite("quick", ("membw",)),
    )
    fleetgen.write(quick, root)
    template = json.loads(next((root / "node003").glob("*.json")).read_text())
    fleetgen.write_bad(root, template)
    return root


def test_peek_reads_host_start_and_suite_from_the_head(nights: Path) -> None:
    path = sorted((nights / "node004").glob("*.json"))[0]
    head = load.peek(str(path))
    assert head == load.Head(str(path), "node004", "2026-11-01T02:00:00Z", "nightly")


def test_peek_gives_up_on_another_key_order(tmp_path: Path) -> None:
    rec = fleetgen.record(fleetgen.Node("n1"), fleetgen.T0, suite_obj=fleetgen.suite("s", ("membw",)))
    sorted_keys = tmp_path / "a.json"
    sorted_keys.write_text(json.dumps(rec, sort_keys=True))  # checks (with their own "started") first
    assert load.peek(str(sorted_keys)) is None
    loaded = load.load([tmp_path], latest=True)  # parsed in full instead
    assert list(loaded.runs["host"]) == ["n1"] and len(loaded.values) == 4


def test_extract_matches_the_record() -> None:
    node = fleetgen.Node("n1", slow={"membw/node/triad": 0.5})
    rec = fleetgen.record(
        node, fleetgen.T0, suite_obj=fleetgen.suite("s", ("membw", "gemm")), base=fleetgen.baseline()
    )
    run, rows = load.extract(rec, "x.json", samples=True)
    assert run["host"] == "n1" and run["suite"] == "s" and run["verdict"] == "FAIL"
    assert any(p.startswith("FAIL membw/node triad:") for p in run["problems"])
    assert run["config"]["gpu.driver"] == "550.54.15" and run["config"]["cpu.governor"] == "performance"
    assert len(rows) == 4 + 8 * 2
    by_key = {(r[0], r[2], r[3]): r for r in rows}
    triad = by_key[("membw", "node", "triad")]
    m = next(
        m for c in rec["checks"] if c["id"] == "membw" for m in c["measurements"] if m["metric"] == "triad"
    )
    assert triad[4] == m["value"] and triad[5] == "GB/s" and triad[6] is True
    assert triad[8] == 525.0 and triad[9] == "FAIL" and triad[10] == tuple(m["samples"])


def test_config_collects_drift_fields() -> None:
    node = fleetgen.Node("n1", drift={"os.kernel": "6.8.0", "memory.thp.enabled": "never"})
    inv = fleetgen.inventory(node)
    inv["gpus"]["devices"][0]["vbios_version"] = "96.00.89.00.01"
    cfg = load.config(inv)
    assert cfg["os.kernel"] == "6.8.0" and cfg["thp.enabled"] == "never"
    assert cfg["gpu.vbios_version"] == "96.00.89.00.01/None"
    assert cfg["versions.torch"] == "2.3.0+cu121" and cfg["tunables.numa_balancing"] == "0"
    assert cfg["gpu.count"] == "8" and cfg["numa.nodes"] == "2"


def test_latest_per_node_falls_back_past_bad_records_with_warnings(nights: Path) -> None:
    warned = Warnings()
    loaded = load.load([nights], latest=True, warn=warned)
    nightly = loaded.runs[loaded.runs["suite"] == "nightly"]
    assert sorted(nightly["host"]) == [f"node{i:03d}" for i in range(6)]
    # node001's newest file is truncated, node002's has schema 99: their previous records count
    latest = dict(zip(nightly["host"], nightly["started"].dt.strftime("%Y-%m-%d"), strict=True))
    assert latest["node001"] == latest["node002"] == latest["node000"] == "2026-11-03"
    reasons = {Path(p).parent.name + "/" + Path(p).name: r for p, r in warned}
    assert any(k.startswith("node001/") and "not a readable result record" in r for k, r in reasons.items())
    assert any(k.startswith("node002/") and "schema_version 99" in r for k, r in reasons.items())
    assert any(k == "junk/notes.json" and "not an hpcbench result record" in r for k, r in reasons.items())
    assert len(loaded.skipped) == len(warned) == 3
    # per suite: node000's quick record is its own group
    assert list(loaded.runs.loc[loaded.runs["suite"] == "quick", "host"]) == ["node000"]


def test_suite_filter_skips_other_suites_records_with_a_warning(nights: Path) -> None:
    warned = Warnings()
    loaded = load.load([nights], latest=True, suite="nightly", warn=warned)
    assert set(loaded.runs["suite"]) == {"nightly"}
    assert any("suite 'quick', not 'nightly'" in r for _, r in warned)


def test_every_record_of_one_host(nights: Path) -> None:
    warned = Warnings()
    loaded = load.load([nights], host="node001", warn=warned)
    assert len(loaded.runs) == 3 and set(loaded.runs["host"]) == {"node001"}
    assert list(loaded.runs["started"]) == sorted(loaded.runs["started"])
    assert {Path(p).parent.name for p, _ in warned} == {"node001", "junk"}  # other hosts' bad files unread


def test_values_frame_points_at_runs(nights: Path) -> None:
    loaded = load.load([nights], latest=True, suite="nightly", warn=Warnings())
    v, runs = loaded.values, loaded.runs
    assert len(v) == 6 * (4 + 16)
    assert v["run"].between(0, len(runs) - 1).all()
    assert v.groupby("run").size().tolist() == [20] * 6
    assert "samples" not in v.columns


def test_parallel_and_serial_parsing_agree(nights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    serial = load.load([nights], warn=Warnings(), workers=1)
    monkeypatch.setattr(load, "PARALLEL_FROM", 2)
    monkeypatch.setattr(load, "CHUNK", 3)
    parallel = load.load([nights], warn=Warnings(), workers=2)
    assert serial.runs.drop(columns="config").equals(parallel.runs.drop(columns="config"))
    assert serial.values.equals(parallel.values)


def test_missing_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load.load([tmp_path / "nope.json"])


def test_a_real_record_from_hpcbench_run_loads(cli: Cli) -> None:
    r = cli("probe", "fixed", "-p", "value=80", "--expand", "numa", "-o", "results", "--quiet")
    assert r.returncode in (0, 1), r.stderr
    loaded = load.load([cli.workdir / "results"], latest=True, samples=True, warn=Warnings())
    assert len(loaded.runs) == 1 and loaded.runs["suite"][0] == "probe:fixed"
    assert set(loaded.values["metric"]) == {"score"} and set(loaded.values["value"]) == {80.0}
    assert all(len(s) == 3 for s in loaded.values["samples"])


def test_records_of_one_second_are_ordered_by_their_suffix(tmp_path: Path) -> None:
    suite = fleetgen.suite("s", ("membw",))
    paths = [
        fleetgen.write(
            fleetgen.record(fleetgen.Node("n1", slow={"membw": f}), fleetgen.T0, suite_obj=suite), tmp_path
        )
        for f in (1.0, 0.5, 0.25)
    ]
    assert [p.name for p in paths] == [
        "20261101T020000Z.json",
        "20261101T020000Z-1.json",
        "20261101T020000Z-2.json",
    ]
    latest = load.load([tmp_path], latest=True)
    assert list(latest.runs["file"]) == [str(paths[2])]
    every = load.load([tmp_path])
    assert list(every.runs["file"]) == [str(p) for p in paths]
