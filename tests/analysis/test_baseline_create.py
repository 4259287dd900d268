"""``hpcbench baseline create``: a baseline profile from golden-node result records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hpcbench.analysis import baseline_create
from hpcbench.core.errors import ConfigError
from hpcbench.core.measurement import Measurement
from hpcbench.engine import baselines, store
from hpcbench.engine.record import SCHEMA_VERSION

CPU = "AMD EPYC 9654 96-Core Processor"


def measurement(
    metric: str, value: float, subject: str = "node", sanity: str | None = None
) -> dict[str, Any]:
    samples = [value, value * 0.98, value * 0.97]
    return Measurement.from_samples(
        metric, samples, "GB/s", subject, convention="STREAM", sanity=sanity
    ).as_dict()


def check(cid: str, subject: str, measurements: list[dict[str, Any]], status: str = "ok") -> dict[str, Any]:
    return {
        "id": cid,
        "probe": "cpu_membw",
        "subject": subject,
        "expand": "none",
        "params": {},
        "thresholds": {},
        "timeout": 120.0,
        "started": "",
        "duration": 1.0,
        "status": status,
        "reason": "" if status == "ok" else "timed out",
        "hint": "",
        "verdict": "NOBASELINE",
        "measurements": measurements,
        "evaluations": [],
    }


def record(
    host: str, started: str, checks: list[dict[str, Any]], cpu: str = CPU, gpu: str | None = None
) -> dict[str, Any]:
    gpus = {"count": 1, "devices": [{"name": gpu}]} if gpu else {"count": 0, "devices": []}
    return {
        "schema_version": SCHEMA_VERSION,
        "tool_version": "0.1.0",
        "run_id": f"{host}-{started}",
        "host": host,
        "started": started,
        "ended": started,
        "suite": {"name": "quick", "path": "", "sha256": "", "description": "", "require_baseline": False},
        "baseline": None,
        "inventory": {"cpu": {"model": cpu}, "gpus": gpus},
        "checks": checks,
        "not_run": [],
        "interrupted": None,
        "verdict": "OK",
        "exit_code": 0,
    }


def save(folder: Path, rec: dict[str, Any]) -> Path:
    return store.save_atomic(rec, store.record_path(folder, rec["host"], rec["started"]))


@pytest.fixture()
def golden(tmp_path: Path) -> Path:
    """Three records from two hosts, with a sanity failure and an erroring check mixed in."""
    folder = tmp_path / "records"
    save(
        folder,
        record(
            "node-a",
            "2026-03-01T10:00:00+00:00",
            [
                check("membw", "node", [measurement("triad", 100.0), measurement("copy", 90.0)]),
                check("membw_numa", "numa0", [measurement("triad", 50.0, "numa0")]),
                check("membw_numa", "numa1", [measurement("triad", 54.0, "numa1")]),
            ],
        ),
    )
    save(
        folder,
        record(
            "node-a",
            "2026-03-02T10:00:00+00:00",
            [
                check(
                    "membw",
                    "node",
                    [measurement("triad", 110.0), measurement("copy", 1.0, sanity="wrong result")],
                ),
                check("membw_numa", "numa0", [measurement("triad", 52.0, "numa0")]),
                check("membw_numa", "numa1", [measurement("triad", 9999.0, "numa1")], status="error"),
            ],
        ),
    )
    save(
        folder,
        record(
            "node-b",
            "2026-03-03T10:00:00+00:00",
            [
                check("membw", "node", [measurement("triad", 130.0), measurement("copy", 80.0)]),
                check("broken", "node", [measurement("triad", 5.0)], status="error"),
            ],
        ),
    )
    return folder


def test_create_loads_back_with_medians(golden: Path, tmp_path: Path) -> None:
    out = tmp_path / "profiles" / "epyc.toml"
    assert baseline_create.create([str(golden)], str(out)) == out
    b = baselines.load(str(out))
    assert b.name == "epyc"
    assert b.match == {"cpu_model": CPU}
    # median over records: 100, 110, 130
    triad = b.expectation("membw", "triad")
    assert triad is not None and triad.value == pytest.approx(110.0) and triad.unit == "GB/s"
    # the sanity-failed 1.0 is ignored: median of 90 and 80
    copy = b.expectation("membw", "copy")
    assert copy is not None and copy.value == pytest.approx(85.0)
    # median over records and subjects: 50, 54, 52 (the error check's 9999 is ignored)
    numa = b.expectation("membw_numa", "triad")
    assert numa is not None and numa.value == pytest.approx(52.0)
    # a check that only ever errored gets no expectation
    assert "broken" not in b.expected
    assert not list(out.parent.glob(".*"))  # no temporary file left


def test_provenance(golden: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.toml"
    baseline_create.create([str(golden)], str(out), name="golden-epyc", source="fleet-median")
    b = baselines.load(str(out))
    assert b.name == "golden-epyc"
    p = b.provenance
    assert p["source"] == "fleet-median"
    assert p["nodes"] == 2
    assert p["hosts"] == ["node-a", "node-b"]
    assert p["records"] == 3
    assert p["date"] == "2026-03-03"
    assert p["first_date"] == "2026-03-01"
    assert p["tool_version"]
    assert "2 nodes" in b.provenance_text()


def test_record_files_as_arguments(golden: Path, tmp_path: Path) -> None:
    files = sorted(str(p) for p in golden.rglob("*.json"))
    out = tmp_path / "one.toml"
    baseline_create.create(files[:1], str(out))
    b = baselines.load(str(out))
    assert b.provenance["records"] == 1
    assert b.provenance["nodes"] == 1


def test_refuses_to_overwrite_without_force(golden: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.toml"
    out.write_text("# precious\n")
    with pytest.raises(ConfigError, match="--force") as info:
        baseline_create.create([str(golden)], str(out))
    assert str(out) in str(info.value)
    assert out.read_text() == "# precious\n"
    baseline_create.create([str(golden)], str(out), force=True)
    assert baselines.load(str(out)).expectation("membw", "triad") is not None


def test_mixed_cpu_models_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "records"
    save(
        folder,
        record("a", "2026-03-01T10:00:00+00:00", [check("membw", "node", [measurement("triad", 1.0)])]),
    )
    save(
        folder,
        record(
            "b",
            "2026-03-01T10:00:00+00:00",
            [check("membw", "node", [measurement("triad", 1.0)])],
            cpu="Intel Xeon Platinum 8480+",
        ),
    )
    out = tmp_path / "b.toml"
    with pytest.raises(ConfigError, match="cpu model") as info:
        baseline_create.create([str(folder)], str(out))
    assert "--match none" in str(info.value)
    assert not out.exists()
    # --match none: no match keys, a profile chosen by name
    baseline_create.create([str(folder)], str(out), match="none")
    assert baselines.load(str(out)).match == {}


def test_gpu_name_match_when_records_have_gpus(tmp_path: Path) -> None:
    folder = tmp_path / "records"
    for host in ("g1", "g2"):
        save(
            folder,
            record(
                host,
                "2026-03-01T10:00:00+00:00",
                [check("gemm", "gpu0", [measurement("tflops", 700.0, "gpu0")])],
                gpu="NVIDIA H200",
            ),
        )
    out = tmp_path / "h200.toml"
    baseline_create.create([str(folder)], str(out))
    assert baselines.load(str(out)).match == {"gpu_name": "NVIDIA H200"}


def test_no_records(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no result records"):
        baseline_create.create([str(tmp_path / "empty")], str(tmp_path / "b.toml"))


def test_no_successful_measurement(tmp_path: Path) -> None:
    folder = tmp_path / "records"
    save(folder, record("a", "2026-03-01T10:00:00+00:00", [check("membw", "node", [], status="error")]))
    out = tmp_path / "b.toml"
    with pytest.raises(ConfigError, match="no successful measurement"):
        baseline_create.create([str(folder)], str(out))
    assert not out.exists()


def test_unreadable_record_is_a_config_error(tmp_path: Path) -> None:
    folder = tmp_path / "records"
    folder.mkdir()
    (folder / "bad.json").write_text(json.dumps({"schema_version": 1}))
    with pytest.raises(ConfigError, match="bad.json"):
        baseline_create.create([str(folder)], str(tmp_path / "b.toml"))


def test_names_with_quotes_are_escaped(golden: Path, tmp_path: Path) -> None:
    out = tmp_path / "q.toml"
    baseline_create.create([str(golden)], str(out), name='epyc "golden" \\ node')
    assert baselines.load(str(out)).name == 'epyc "golden" \\ node'


def test_check_ids_with_dots_round_trip(tmp_path: Path) -> None:
    # suite ids may contain '.', e.g. "membw.numa": the profile must keep it as one check id
    folder = tmp_path / "records"
    save(
        folder,
        record(
            "a",
            "2026-03-01T10:00:00+00:00",
            [check("membw.numa", "numa0", [measurement("triad", 50.0, "numa0")])],
        ),
    )
    out = tmp_path / "dots.toml"
    baseline_create.create([str(folder)], str(out))
    exp = baselines.load(str(out)).expectation("membw.numa", "triad")
    assert exp is not None and exp.value == pytest.approx(50.0)


def test_expected_values_counts_samples() -> None:
    recs = [
        record(
            "a",
            "2026-03-01T10:00:00+00:00",
            [
                check(
                    "membw", "node", [measurement("triad", 10.0), measurement("triad", 30.0, sanity="bad")]
                ),
                check("membw", "node", [measurement("triad", 20.0)]),
            ],
        )
    ]
    assert baseline_create.expected_values(recs) == {"membw": {"triad": (15.0, "GB/s", 2)}}


def test_fault_counts_are_left_out_of_a_profile(tmp_path: Path) -> None:
    """A golden node's 3 correctable AER errors must not become the expected value 3 (which
    would judge a node with 4 by ratio, 75 %, and fail it): counts stay with the suite's
    absolute limits; memory and CPUs of the same check are recorded."""
    aer = {**measurement("aer_correctable", 3.0), "unit": "count", "higher_is_better": False}
    mem = {**measurement("memory_gib", 2015.5), "unit": "GiB"}
    folder = tmp_path / "golden"
    folder.mkdir()
    (folder / "r.json").write_text(
        json.dumps(record("a", "2026-03-01T10:00:00+00:00", [check("node_health", "node", [aer, mem])]))
    )
    out = tmp_path / "golden.toml"
    baseline_create.create([str(folder)], str(out))
    text = out.read_text()
    assert "# aer_correctable: a count of faults, judged by the suite's absolute limits" in text
    profile = baselines.load(str(out))
    assert profile.expectation("node_health", "aer_correctable") is None
    exp = profile.expectation("node_health", "memory_gib")
    assert exp is not None and (exp.value, exp.unit) == (2015.5, "GiB")
