"""``include``: a site's health suite is a short file on top of the bundled one; nightly and
acceptance include health. Errors still name the file and the line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import ROOT

from hpcbench.core.errors import ConfigError
from hpcbench.engine import suite
from hpcbench.probes import registry

HEALTH = suite.load(str(ROOT / "suites" / "health.toml"))


@pytest.fixture(scope="module")
def probes() -> dict[str, Any]:
    return registry.load_all()


SITE = """name = "site-health"
include = "health"

[[check]]
id = "node_config"
params = { mounts = ["/scratch type=lustre rw free=5%"], processes = ["slurmd@root"] }
absolute = { users_without_job = { fail = 0.5 } }

[[check]]
id = "site_ib"
probe = "network_ports"
params = { interval = 0.0, expected_ports = 8 }
"""


def test_a_site_suite_adds_to_the_bundled_one(tmp_path: Path, probes: dict[str, Any]) -> None:
    path = tmp_path / "site-health.toml"
    path.write_text(SITE)
    s = suite.load(str(path), probes)
    assert s.name == "site-health"
    assert [c.id for c in s.checks] == [*(c.id for c in HEALTH.checks), "site_ib"]
    nc = next(c for c in s.checks if c.id == "node_config")
    assert nc.params == {"mounts": ["/scratch type=lustre rw free=5%"], "processes": ["slurmd@root"]}
    bundled = next(c for c in HEALTH.checks if c.id == "node_config")
    assert nc.absolute["users_without_job"].fail == 0.5  # changed
    assert nc.absolute["mounts_missing"] == bundled.absolute["mounts_missing"]  # kept
    assert nc.timeout == 10  # the bundled suite's default timeout goes with its checks
    assert next(c for c in s.checks if c.id == "site_ib").timeout == 300  # the site's default


def test_the_hash_covers_the_included_file(tmp_path: Path) -> None:
    base = tmp_path / "base.toml"
    base.write_text('name = "base"\n[[check]]\nid = "a"\nprobe = "node_config"\n')
    site = tmp_path / "site.toml"
    site.write_text('include = "base.toml"\n')
    first = suite.load(str(site)).sha256
    base.write_text('name = "base"\n[[check]]\nid = "a"\nprobe = "node_config"\ntimeout = 5\n')
    assert suite.load(str(site)).sha256 != first
    assert suite.load(str(site)).name == "site"


def test_a_site_health_named_like_the_bundled_one_includes_the_bundled_one(
    tmp_path: Path, probes: dict[str, Any]
) -> None:
    (tmp_path / "health.toml").write_text(SITE.replace('"site-health"', '"health"'))
    s = suite.load("health", probes, site=[tmp_path])
    assert s.path == str(tmp_path / "health.toml") and "site_ib" in [c.id for c in s.checks]
    assert len(s.checks) == len(HEALTH.checks) + 1


def test_an_include_cycle_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('include = "b.toml"\n[[check]]\nid = "x"\nprobe = "node_config"\n')
    (tmp_path / "b.toml").write_text('include = "a.toml"\n[[check]]\nid = "y"\nprobe = "node_config"\n')
    with pytest.raises(ConfigError, match="an include cycle"):
        suite.load(str(tmp_path / "a.toml"))


def test_errors_name_the_file_and_line_that_has_them(tmp_path: Path, probes: dict[str, Any]) -> None:
    site = tmp_path / "site.toml"
    site.write_text(SITE.replace('processes = ["slurmd@root"]', 'processes = ["slurm d"]'))
    with pytest.raises(ConfigError) as err:
        suite.load(str(site), probes)
    assert str(err.value).startswith(f"{site}: line 6: check[1] ('node_config') key 'params'")
    assert "expected a process name" in str(err.value)
    (tmp_path / "nosuch.toml").write_text('include = "no-such-suite"\n')
    with pytest.raises(ConfigError, match="line 1: key 'include': no suite named 'no-such-suite'"):
        suite.load(str(tmp_path / "nosuch.toml"))


def test_a_bad_include_is_exit_4_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("include = 3\n")
    done = subprocess.run(
        [sys.executable, "-m", "hpcbench", "run", str(tmp_path / "bad.toml"), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 4
    assert done.stderr.strip().splitlines() == [
        f"hpcbench: error: {tmp_path / 'bad.toml'}: line 1: key 'include': expected a suite name or a list "
        "of them, got 3"
    ]


@pytest.mark.parametrize("name", ["nightly", "acceptance"])
def test_nightly_and_acceptance_include_the_health_checks(name: str, probes: dict[str, Any]) -> None:
    s = suite.load(name, probes)
    ids = [c.id for c in s.checks]
    assert ids[: len(HEALTH.checks)] == [c.id for c in HEALTH.checks]
    assert len(ids) == len(set(ids))
    own = next(c for c in s.checks if c.id == "node_health")
    assert own.timeout == 60  # their own settings win over health's 10 s
    assert own.params["since"] == {"nightly": "24h", "acceptance": "boot"}[name]
