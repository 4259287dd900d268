"""Result records: atomic save, paths, load errors, CheckResult round trip, DataFrame."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hpcbench.core.errors import ConfigError
from hpcbench.core.measurement import Evaluation, Measurement, Verdict
from hpcbench.engine import store
from hpcbench.engine.record import SCHEMA_VERSION, CheckResult, Record, migrate
from hpcbench.engine.store import load, record_path, save_atomic, to_dataframe


def check_result(subject: str = "node", status: str = "ok") -> CheckResult:
    m = Measurement.from_samples(
        "triad",
        [95.0, 90.0, 93.0],
        "GB/s",
        subject,
        convention="STREAM",
        settings={"threads": 8, "array_size": 1 << 20, "dtype": "float64"},
    )
    evaluations = (
        (
            Evaluation(
                metric="triad",
                verdict=Verdict.WARN,
                measured=95.0,
                unit="GB/s",
                expected=110.0,
                ratio=95.0 / 110.0,
                warn=0.9,
                fail=0.8,
                kind="baseline",
                provenance="golden: golden-node",
                reason="95 GB/s is 86% of the expected 110 GB/s (below 90%)",
                hint="governor is powersave",
            ),
        )
        if status == "ok"
        else ()
    )
    return CheckResult(
        id="membw",
        probe="cpu_membw",
        subject=subject,
        status=status,
        params={"repeats": 3, "sizes": [1, 2]},
        expand="none",
        thresholds={"thresholds": {"warn": 0.9, "fail": 0.8}, "absolute": {}, "relative": None},
        timeout=120.0,
        started="2026-01-02T03:04:05+00:00",
        duration=2.5,
        reason="" if status == "ok" else "timed out after 120 s",
        hint="",
        measurements=(m,) if status == "ok" else (),
        evaluations=evaluations,
    )


def record(host: str, started: str, checks: list[CheckResult], run_id: str = "r1") -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "tool_version": "0.1.0",
        "run_id": run_id,
        "host": host,
        "started": started,
        "ended": started,
        "suite": {
            "name": "quick",
            "path": "suites/quick.toml",
            "sha256": "0" * 64,
            "description": "",
            "require_baseline": False,
        },
        "baseline": None,
        "inventory": {"cpu": {"model": "EPYC"}},
        "checks": [c.as_dict() for c in checks],
        "not_run": [],
        "interrupted": None,
        "verdict": "WARN",
        "exit_code": 1,
    }


# ---------------------------------------------------------------------------
# atomic save


def test_save_atomic_writes_valid_json_and_no_temp_files(tmp_path: Path) -> None:
    rec = record("n1", "2026-01-02T03:04:05+00:00", [check_result()])
    path = tmp_path / "results" / "n1" / "a.json"  # the folders do not exist yet
    assert save_atomic(rec, path) == path
    assert json.loads(path.read_text()) == rec
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]


def test_save_atomic_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    save_atomic({"v": 1}, path)
    save_atomic({"v": 2}, path)
    assert json.loads(path.read_text()) == {"v": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), object()])
def test_failed_dump_keeps_previous_file_and_leaves_no_temp(tmp_path: Path, bad: Any) -> None:
    path = tmp_path / "r.json"
    save_atomic({"v": 1}, path)
    before = path.read_bytes()
    with pytest.raises((ValueError, TypeError)):
        save_atomic({"v": 2, "value": bad}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_failed_dump_of_a_new_file_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        save_atomic({"value": float("nan")}, tmp_path / "r.json")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------
# paths


@pytest.mark.parametrize(
    "started",
    [
        "2026-01-02T03:04:05.123456+00:00",
        "2026-01-02T03:04:05+00:00",
        "2026-01-02T03:04:05Z",
        "2026-01-02T03:04:05.5Z",
    ],
)
def test_record_path_layout(tmp_path: Path, started: str) -> None:
    assert record_path(tmp_path, "node7", started) == tmp_path / "node7" / "20260102T030405Z.json"


def test_record_path_does_not_collide(tmp_path: Path) -> None:
    started = "2026-01-02T03:04:05+00:00"
    seen = []
    for _ in range(3):
        p = record_path(tmp_path, "n1", started)
        assert not p.exists()
        save_atomic({"x": 1}, p)
        seen.append(p.name)
    assert seen == ["20260102T030405Z.json", "20260102T030405Z-1.json", "20260102T030405Z-2.json"]


def test_record_paths_sort_by_time(tmp_path: Path) -> None:
    times = ["2026-01-02T23:59:59+00:00", "2026-01-10T00:00:00+00:00", "2025-12-31T12:00:00+00:00"]
    names = [record_path(tmp_path, "h", t).name for t in times]
    assert sorted(names) == [names[2], names[0], names[1]]


# ---------------------------------------------------------------------------
# load


def test_load_round_trip(tmp_path: Path) -> None:
    rec = record("n1", "2026-01-02T03:04:05+00:00", [check_result()])
    path = save_atomic(rec, tmp_path / "r.json")
    loaded = load(path)
    assert loaded == load(str(path)) == Record.from_dict(rec)
    assert loaded.checks == (check_result(),) and loaded.inventory.cpu.model == "EPYC"
    assert save_atomic(loaded, tmp_path / "again.json") and load(tmp_path / "again.json") == loaded


def test_a_version_1_record_loads_migrated(tmp_path: Path) -> None:
    """Version 1 wrote not_run as check ids; it loads with the reason its runs always had."""
    rec = {**record("n1", "2026-01-02T03:04:05+00:00", [check_result()]), "schema_version": 1}
    rec.update(not_run=["later", "last"], interrupted="SIGTERM")
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(rec))
    loaded = load(path)
    assert loaded.schema_version == SCHEMA_VERSION == 2
    assert [(n.id, n.reason) for n in loaded.not_run] == [
        ("later", "not started: interrupted by SIGTERM"),
        ("last", "not started: interrupted by SIGTERM"),
    ]
    assert loaded.checks == (check_result(),)
    assert migrate(rec) is not rec and rec["not_run"] == ["later", "last"]  # the argument is left alone
    assert migrate({**rec, "interrupted": None})["not_run"][0] == {"id": "later", "reason": "not started"}


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such record") as info:
        load(tmp_path / "none.json")
    assert str(tmp_path / "none.json") in str(info.value)


def test_load_truncated_json(tmp_path: Path) -> None:
    path = save_atomic(record("n1", "2026-01-02T03:04:05+00:00", [check_result()]), tmp_path / "r.json")
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(ConfigError, match="not a readable result record") as info:
        load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "data", [[1, 2, 3], {"hello": "world"}, {"schema_version": 1}, {"checks": []}, "text"]
)
def test_load_json_that_is_not_a_record(tmp_path: Path, data: Any) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="not an hpcbench result record") as info:
        load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("version", [0, 3, 99, "1", None])
def test_load_other_schema_version(tmp_path: Path, version: Any) -> None:
    rec = record("n1", "2026-01-02T03:04:05+00:00", [])
    rec["schema_version"] = version
    path = tmp_path / "r.json"
    path.write_text(json.dumps(rec))
    with pytest.raises(ConfigError, match="schema_version") as info:
        load(path)
    assert repr(version) in str(info.value)
    assert str(path) in str(info.value)


def test_load_binary_garbage(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not a readable result record"):
        load(path)


# ---------------------------------------------------------------------------
# CheckResult


@pytest.mark.parametrize("status", ["ok", "error"])
def test_check_result_round_trip(status: str) -> None:
    original = check_result(status=status)
    assert CheckResult.from_dict(original.as_dict()) == original
    # through JSON as well (tuples become lists and back)
    assert CheckResult.from_dict(json.loads(json.dumps(original.as_dict()))) == original


def test_check_result_as_dict_shape() -> None:
    d = check_result().as_dict()
    assert d["verdict"] == "WARN"
    assert d["measurements"][0]["samples"] == [95.0, 90.0, 93.0]
    assert d["measurements"][0]["value"] == 95.0  # the best
    assert d["measurements"][0]["median"] == 93.0
    assert d["evaluations"][0]["verdict"] == "WARN"


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        ("error", Verdict.ERROR),
        ("interrupted", Verdict.ERROR),
        ("skip", Verdict.SKIP),
    ],
)
def test_check_result_status_verdicts(status: str, verdict: Verdict) -> None:
    assert CheckResult(id="a", probe="p", subject="node", status=status).verdict is verdict


def test_check_result_verdict_is_worst_evaluation() -> None:
    evals = tuple(
        Evaluation(metric=m, verdict=v)
        for m, v in (("a", Verdict.PASS), ("b", Verdict.FAIL), ("c", Verdict.WARN))
    )
    assert (
        CheckResult(id="a", probe="p", subject="node", status="ok", evaluations=evals).verdict is Verdict.FAIL
    )


# ---------------------------------------------------------------------------
# DataFrame


COLUMNS = [
    "run_id",
    "host",
    "started",
    "suite",
    "check",
    "probe",
    "subject",
    "status",
    "verdict",
    "metric",
    "measured",
    "unit",
    "expected",
    "ratio",
    "kind",
    "reason",
]


def test_to_dataframe_one_row_per_evaluation(tmp_path: Path) -> None:
    two_evals = check_result(subject="numa0")
    two_evals = CheckResult.from_dict(
        {
            **two_evals.as_dict(),
            "evaluations": [
                *[e.as_dict() for e in two_evals.evaluations],
                Evaluation(metric="triad", verdict=Verdict.PASS, measured=95.0, kind="relative").as_dict(),
            ],
        }
    )
    r1 = record("hostA", "2026-01-02T03:04:05+00:00", [two_evals, check_result("numa1", "error")], "run-a")
    r2 = record("hostB", "2026-01-03T03:04:05+00:00", [check_result()], "run-b")
    save_atomic(r1, record_path(tmp_path, "hostA", r1["started"]))
    save_atomic(r2, record_path(tmp_path, "hostB", r2["started"]))
    (tmp_path / "hostA" / ".partial.json.tmp").write_text("{")  # a leftover temp file is not a record

    df = to_dataframe([tmp_path])
    assert set(COLUMNS) <= set(df.columns)
    # run-a: 2 evaluations + 1 row for the check without evaluations; run-b: 1 evaluation
    assert len(df) == 4
    assert sorted(df["run_id"]) == ["run-a", "run-a", "run-a", "run-b"]
    a = df[df["run_id"] == "run-a"]
    assert sorted(a["kind"].dropna()) == ["baseline", "relative"]
    err = a[a["subject"] == "numa1"].iloc[0]
    assert err["verdict"] == "ERROR"
    assert err["status"] == "error"
    assert err["reason"] == "timed out after 120 s"
    b = df[df["run_id"] == "run-b"].iloc[0]
    assert (b["host"], b["suite"], b["check"], b["probe"], b["verdict"], b["metric"]) == (
        "hostB",
        "quick",
        "membw",
        "cpu_membw",
        "WARN",
        "triad",
    )
    assert b["measured"] == 95.0 and b["expected"] == 110.0 and b["unit"] == "GB/s"
    assert str(df["started"].dt.tz) == "UTC"


def test_to_dataframe_of_a_single_file(tmp_path: Path) -> None:
    path = save_atomic(record("h", "2026-01-02T03:04:05+00:00", [check_result()]), tmp_path / "r.json")
    assert len(to_dataframe([path])) == 1


def test_to_dataframe_with_an_unreadable_record(tmp_path: Path) -> None:
    save_atomic(record("h", "2026-01-02T03:04:05+00:00", [check_result()]), tmp_path / "ok.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match="broken.json"):
        to_dataframe([tmp_path])


def test_find_skips_hidden_files_and_sorts(tmp_path: Path) -> None:
    for name in ("b.json", "a.json", ".hidden.json", "notes.txt"):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in store.find([tmp_path])] == ["a.json", "b.json"]


def test_a_skipped_evaluation_hides_no_other_verdict() -> None:
    single_gpu = (
        Evaluation(metric="copy", verdict=Verdict.PASS, kind="baseline"),
        Evaluation(metric="copy", verdict=Verdict.SKIP, kind="relative", reason="one subject only"),
    )
    assert CheckResult("m", "p", "gpu0", "ok", evaluations=single_gpu).verdict is Verdict.PASS
    warned = (*single_gpu, Evaluation(metric="triad", verdict=Verdict.WARN))
    assert CheckResult("m", "p", "gpu0", "ok", evaluations=warned).verdict is Verdict.WARN
    only_skips = (single_gpu[1],)
    assert CheckResult("m", "p", "gpu0", "ok", evaluations=only_skips).verdict is Verdict.SKIP
