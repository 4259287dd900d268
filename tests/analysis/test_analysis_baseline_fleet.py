"""``hpcbench baseline create --from-fleet DIR``: fleet medians, outliers removed, provenance."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import Cli
from support import fleetgen

from hpcbench.core import tomlfile
from hpcbench.engine import baselines

SUITE = ("gemm", "membw", "nvme")


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 nodes, two nights; node003's GEMM at 50%, node004's membw at 60%; bad and other-suite records."""
    root = tmp_path_factory.mktemp("bfleet")
    fleetgen.fleet(
        root,
        20,
        nights=2,
        suite_obj=fleetgen.suite("nightly", SUITE),
        slow={"node003": {"gemm": 0.5}, "node004": {"membw": 0.6}},
    )
    quick = fleetgen.record(
        fleetgen.Node("node010"),
        fleetgen.T0 + timedelta(days=3),
        suite_obj=fleetgen.suite("quick", ("membw",)),
    )
    fleetgen.write(quick, root)
    template = json.loads(sorted((root / "node005").glob("*.json"))[-1].read_text())
    fleetgen.write_bad(root, template, hosts=("node005", "node006"))
    return root


def test_baseline_from_fleet(cli: Cli, fleet_dir: Path) -> None:
    r = cli("baseline", "create", "--from-fleet", str(fleet_dir), "--suite", "nightly", "-o", "fleet.toml")
    assert r.returncode == 0, r.stderr
    assert "wrote baseline profile fleet.toml" in r.stdout
    assert "node005" in r.stderr and "node006" in r.stderr and "suite 'quick', not 'nightly'" in r.stderr
    b = baselines.parse(tomlfile.read(cli.workdir / "fleet.toml", "baseline"))
    p = b.provenance
    assert p["source"] == "fleet-median" and p["nodes"] == 20 and p["records"] == 20
    assert p["first_date"] == p["date"] == "2026-11-02"  # the latest good night of every node
    assert p["tool_version"] and "outliers removed" in p["statistic"]
    removed = {x.split(":")[0]: x for x in p["outliers_removed"]}
    assert "node003" in removed["gemm.bf16"] and "node004" in removed["membw.triad"]
    assert b.match == {"gpu_name": "NVIDIA H100 80GB HBM3"}
    # the slow nodes do not pull the medians: each within 2% of the nominal values
    for check, metrics in b.expected.items():
        for metric, exp in metrics.items():
            nominal = fleetgen.CHECKS[check][2][metric][0]
            assert exp.value == pytest.approx(nominal, rel=0.02), (check, metric)


def test_fleet_baseline_name(cli: Cli, fleet_dir: Path) -> None:
    r = cli(
        "baseline",
        "create",
        "--from-fleet",
        str(fleet_dir),
        "--suite",
        "nightly",
        "-o",
        "b.toml",
        "--name",
        "h100",
    )
    assert r.returncode == 0, r.stderr
    text = (cli.workdir / "b.toml").read_text()
    assert 'name = "h100"' in text and "[expected.gemm]" in text and "# median of" in text


def test_baseline_create_arguments(cli: Cli, fleet_dir: Path) -> None:
    r = cli("baseline", "create", "-o", "x.toml")
    assert r.returncode == 4 and "give RECORD... or --from-fleet DIR" in r.stderr
    rec = sorted((fleet_dir / "node001").glob("*.json"))[0]
    r = cli("baseline", "create", str(rec), "--from-fleet", str(fleet_dir), "-o", "x.toml")
    assert r.returncode == 4 and "not both" in r.stderr
    (cli.workdir / "x.toml").write_text("keep me")
    r = cli("baseline", "create", "--from-fleet", str(fleet_dir), "-o", "x.toml")
    assert r.returncode == 4 and "exists" in r.stderr and (cli.workdir / "x.toml").read_text() == "keep me"
    r = cli("baseline", "create", str(rec), "-o", "golden.toml")  # the golden-node form still works
    assert r.returncode == 0, r.stderr
    assert 'source = "golden-node"' in (cli.workdir / "golden.toml").read_text()
