"""``hpcbench baseline create --site-suite``: a golden node's health run becomes a site's health
suite (it includes health and expects that node's CPU layout, memory, mounts, daemons, BIOS), and
that suite passes on the golden node itself and fails a node that differs."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Cli

from hpcbench.analysis import site_suite
from hpcbench.engine import suite
from hpcbench.probes.node_config import read


def test_a_golden_health_run_becomes_the_site_suite(cli: Cli, tmp_path: Path) -> None:
    r = cli("run", "health", "--quiet")
    assert r.returncode in (0, 1), r.stderr
    out = tmp_path / "site-health.toml"
    r = cli("baseline", "create", "results", "-o", str(tmp_path / "golden.toml"), "--site-suite", str(out))
    assert r.returncode == 0, r.stderr
    assert f"wrote site suite {out}" in r.stdout
    s = suite.load(str(out))
    assert s.name == "site-health" and "node_health" in [c.id for c in s.checks]  # it includes health
    nc = next(c for c in s.checks if c.id == "node_config").params
    layout = read.cpu_layout("/")
    assert layout is not None
    assert (nc["cpu_sockets"], nc["cpu_cores"], nc["cpu_threads"]) == (
        layout.sockets,
        layout.cores,
        layout.threads,
    )
    mem = read.meminfo(Path("/proc/meminfo").read_text())["MemTotal"]
    assert nc["memory_gib"] == round(mem / 2**20, 3)
    assert any(m.startswith("/ type=") for m in nc["mounts"])
    # the golden node passes its own suite's node_config
    r = cli("run", str(out), "--quiet", "--only", "node_config", "--format", "json")
    record = json.loads(r.stdout)
    assert [c["verdict"] for c in record["checks"]] == ["PASS"], r.stdout


def test_a_node_that_differs_fails_it(cli: Cli, tmp_path: Path) -> None:
    layout = read.cpu_layout("/")
    assert layout is not None
    record = {
        "run_id": "r1",
        "host": "golden",
        "started": "2026-12-01T00:00:00Z",
        "inventory": {},
        "checks": [
            {
                "id": "node_config",
                "measurements": [
                    {
                        "settings": {
                            "observed": {
                                "cpu_sockets": layout.sockets,
                                "cpu_cores": layout.cores,
                                "cpu_threads": layout.threads + 8,
                                "memory_gib": 1.0,
                                "mounts": [
                                    {
                                        "path": "/scratch",
                                        "type": "lustre",
                                        "source": "mds@o2ib:/fs",
                                        "rw": True,
                                    }
                                ],
                                "daemons": ["nvidia-persiste@nvidia-persistenced"],
                                "dmi": {},
                            }
                        }
                    }  # fmt: skip
                ],
            }
        ],
    }
    params = site_suite.params_of(record)["node_config"]
    assert params["mounts"] == ["/scratch type=lustre source=mds@o2ib:/fs rw"]
    assert params["processes"] == ["nvidia-persistenced@nvidia-persistenced"]
    out = site_suite.write([record], tmp_path / "site.toml")
    r = cli("run", str(out), "--quiet", "--only", "node_config", "--format", "json")
    check = json.loads(r.stdout)["checks"][0]
    assert check["verdict"] == "FAIL"
    reasons = {e["metric"]: e["reason"] for e in check["evaluations"] if e["verdict"] == "FAIL"}
    assert f"cpu threads {layout.threads}, expected {layout.threads + 8}" in reasons["cpu_layout_wrong"]
    assert "mount /scratch missing" in reasons["mounts_missing"]


def test_records_of_other_suites_are_refused(cli: Cli, tmp_path: Path) -> None:
    r = cli("run", "quick", "--only", "membw", "--quiet")
    r = cli(
        "baseline",
        "create",
        "results",
        "-o",
        str(tmp_path / "b.toml"),
        "--site-suite",
        str(tmp_path / "s.toml"),
    )
    assert r.returncode == 4
    assert "no record of a health run among them (no node_config check)" in r.stderr
