"""The published record schema: generated from the typed classes, shipped in the package, printed by
``hpcbench schema record``; ``hpcbench validate`` on good and damaged records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli
from support import records

from hpcbench.engine.record import SCHEMA_VERSION, record_schema
from hpcbench.engine.validate import problems, schema_text, shipped_schema_text


def good() -> dict[str, Any]:
    rec = records.record(
        checks=[
            records.check(
                "membw",
                measurements=[
                    {
                        "metric": "triad",
                        "value": 40.0,
                        "unit": "GB/s",
                        "higher_is_better": True,
                        "subject": "node",
                        "samples": [40.0, 39.0],
                        "settings": {"threads": 2},
                    }
                ],
                evaluations=[{"metric": "triad", "verdict": "PASS", "measured": 40.0, "unit": "GB/s"}],
            )
        ],
        inventory={"hostname": "n1", "gpus": {"count": 0, "reason": "no NVML"}},
    )
    return rec.as_dict()


def test_the_shipped_schema_is_the_generated_one() -> None:
    assert json.loads(shipped_schema_text()) == record_schema(), (
        "regenerate it: .venv/bin/hpcbench schema record > hpcbench/schemas/record.schema.json"
    )
    assert schema_text("record") == shipped_schema_text()


def test_the_schema_describes_the_typed_classes() -> None:
    schema = record_schema()
    defs = schema["$defs"]
    assert schema["$schema"].endswith("2020-12/schema") and schema["$ref"] == "#/$defs/Record"
    assert defs["Record"]["properties"]["schema_version"] == {"const": SCHEMA_VERSION}
    assert set(defs["Record"]["required"]) >= {"run_id", "host", "checks", "inventory", "suite"}
    assert defs["NotRun"]["properties"].keys() == {"id", "reason"}
    measurement = defs["Measurement"]["properties"]
    assert {"best", "median", "stats"} <= measurement.keys()  # what as_dict adds to the fields
    assert measurement["statistic"] == {"enum": ["best", "median"]}
    assert defs["CheckResult"]["properties"]["verdict"]["enum"] == [
        "PASS",
        "WARN",
        "FAIL",
        "ERROR",
        "SKIP",
        "NOBASELINE",
    ]
    assert "numa_balancing" in defs["Inventory"]["properties"]["tunables"]["description"]


def test_a_good_record_has_no_problem() -> None:
    assert problems(good()) == []


DAMAGE = [
    (lambda r: r.pop("run_id"), "(top)", "'run_id' is a required property"),
    (lambda r: r.update(exit_code="2"), "exit_code", "'2' is not of type 'integer'"),
    (
        lambda r: r.update(verdict="BROKEN"),
        "verdict",
        "'BROKEN' is not one of ['OK', 'WARN', 'FAIL', 'UNKNOWN']",
    ),
    (lambda r: r["checks"][0].update(status="done"), "checks.0.status", "'done' is not one of"),
    (
        lambda r: r["checks"][0]["measurements"][0].update(value="fast"),
        "checks.0.measurements.0.value",
        "'fast'",
    ),
    (
        lambda r: r["checks"][0]["evaluations"][0].update(verdict="MEH"),
        "checks.0.evaluations.0.verdict",
        "'MEH'",
    ),
    (
        lambda r: r["inventory"]["gpus"].update(count=None),
        "inventory.gpus.count",
        "None is not of type 'integer'",
    ),
    (lambda r: r.update(not_run=["x"]), "not_run.0", "'x' is not of type 'object'"),
    (lambda r: r.update(baseline={"path": "b.toml"}), "baseline", "'name' is a required property"),
    (
        lambda r: r.update(colour="blue"),
        "(top)",
        "Additional properties are not allowed ('colour' was unexpected)",
    ),
    (lambda r: r.update(schema_version=7), "schema_version", "schema_version 7 is not supported"),
]


@pytest.mark.parametrize(("damage", "where", "why"), DAMAGE)
def test_each_damage_is_named_with_its_path(damage: Any, where: str, why: str) -> None:
    rec = good()
    damage(rec)
    found = problems(rec)
    assert any(path == where and why in text for path, text in found), found


def test_a_version_1_record_is_validated_as_migrated() -> None:
    rec = {**good(), "schema_version": 1, "not_run": ["later"], "interrupted": "SIGINT"}
    assert problems(rec) == []


@pytest.mark.damaged_records
def test_validate_command_good_and_damaged_files(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "recs"
    folder.mkdir()
    (folder / "good.json").write_text(json.dumps(good()))
    bad = good()
    bad["exit_code"] = "2"
    bad["checks"][0]["status"] = "done"
    (folder / "bad.json").write_text(json.dumps(bad))
    (folder / "cut.json").write_text(json.dumps(good())[:100])

    done = cli("validate", str(folder / "good.json"))
    assert done.returncode == 0 and done.stdout == "1 record(s) valid\n" and done.stderr == ""

    done = cli("validate", str(folder))
    assert done.returncode == 4 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert (
        f"{folder / 'bad.json'}: checks.0.status: 'done' is not one of ['ok', 'error', 'skip', 'interrupted']"
        in lines
    )
    assert f"{folder / 'bad.json'}: exit_code: '2' is not of type 'integer'" in lines
    assert any(line.startswith(f"{folder / 'cut.json'}: (top): not readable JSON: ") for line in lines)
    assert lines[-1] == "2 of 3 file(s) are not valid hpcbench records"
    assert not any(str(folder / "good.json") in line for line in lines)
    assert "Traceback" not in done.stderr


def test_validate_records_written_by_a_real_run(cli: Cli, tmp_path: Path) -> None:
    suite = tmp_path / "s.toml"
    suite.write_text('[[check]]\nid = "fine"\nprobe = "fixed"\n')
    assert cli("run", str(suite), "--output", "out", "--quiet").returncode == 0
    done = cli("validate", "out")
    assert (done.returncode, done.stdout) == (0, "1 record(s) valid\n"), done.stderr


def test_validate_without_records_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = cli("validate", "empty")
    assert done.returncode == 4 and done.stderr.startswith("hpcbench: error: no record files in empty")


def test_schema_command_prints_the_published_schema(cli: Cli) -> None:
    done = cli("schema", "record")
    assert done.returncode == 0 and json.loads(done.stdout) == record_schema()
    assert cli("schema", "recipe").returncode == 4
