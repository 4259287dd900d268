"""``hpcbench report DIR -o report.html``: one self-contained HTML file, the drain list on top."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from conftest import Cli
from support import fleetgen

SLOW = {"node002": {"gemm": 0.7}, "node006": {"pcie/gpu1": 0.5}}


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rfleet")
    suite = fleetgen.suite("nightly", ("gemm", "pcie", "membw"))
    fleetgen.fleet(
        root,
        12,
        slow=SLOW,
        drift={"node009": {"os.kernel": "6.8.0"}},
        suite_obj=suite,
        base=fleetgen.baseline(),
    )
    template = json.loads(next((root / "node001").glob("*.json")).read_text())
    fleetgen.write_bad(root, template, hosts=("node010", "node011"))
    return root


def test_report_is_self_contained_with_the_drain_list_first(cli: Cli, fleet_dir: Path) -> None:
    r = cli("report", str(fleet_dir), "-o", "out/report.html", "--max-nodes", "4")
    assert r.returncode == 2, r.stderr
    assert "wrote out/report.html: 12 nodes, 2 to drain" in r.stdout
    assert r.stderr.count("hpcbench: warning: skipped") == 3
    page = (cli.workdir / "out" / "report.html").read_text()
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    # nothing fetched from elsewhere: every image is a data: URI, no scripts, links or stylesheets
    assert not re.search(r"""(src|href)=['"](?!data:|#)""", page)
    assert "<script" not in page and "<link" not in page
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(images) == (2 + 2 + 4) + 4  # a distribution per check/subject/metric, a plot per shown node
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    top = page[: page.index("<img")]
    assert "Drain 2 node(s):</b> node002, node006" in top
    assert "Nodes to drain" in top and "Nodes to check" in top and "node009" in top
    assert "pcie/gpu1 h2d" in top and "os.kernel is 6.8.0" in top
    assert "Skipped files" in page and "schema_version 99" in page
    assert page.count("class=node ") == 4 and "id='node-node002'" in page and "id='node-node009'" in page


def test_report_refuses_to_overwrite_without_force(cli: Cli, fleet_dir: Path) -> None:
    (cli.workdir / "r.html").write_text("old")
    r = cli("report", str(fleet_dir), "-o", "r.html")
    assert r.returncode == 4 and "exists" in r.stderr and (cli.workdir / "r.html").read_text() == "old"
    r = cli("report", str(fleet_dir), "-o", "r.html", "--force", "--max-nodes", "0", "--suite", "nightly")
    assert r.returncode == 2, r.stderr
    assert "class=node " not in (cli.workdir / "r.html").read_text()


def test_report_of_a_healthy_fleet(cli: Cli, tmp_path: Path) -> None:
    fleetgen.fleet(tmp_path / "ok", 6, suite_obj=fleetgen.suite("nightly", ("membw",)))
    r = cli("report", str(tmp_path / "ok"), "-o", "ok.html")
    assert r.returncode == 0, r.stderr
    page = (cli.workdir / "ok.html").read_text()
    assert "No node to drain" in page and "Skipped files" not in page
