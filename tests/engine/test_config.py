"""Site paths and configuration: HPCBENCH_OUTPUT, HPCBENCH_BASELINES, HPCBENCH_SUITES,
HPCBENCH_CONFIG (or /etc/hpcbench/config.toml), `hpcbench config`, --max-age from any directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import Cli, write

from hpcbench.core.errors import ConfigError
from hpcbench.engine import config

SUITE = """
name = "site"
description = "a site's own suite"
[[check]]
id = "fixed"
probe = "fixed"
params = {{ value = {value} }}
thresholds = {{ warn = 0.9, fail = 0.8 }}
"""
PROFILE = """
name = "{name}"
[match]
cpu_model = "{cpu}"
[provenance]
source = "golden-node"
date = "2026-11-28"
[expected.fixed]
score = {expected}
"""


def test_precedence_command_line_environment_file_default(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    conf = write(
        tmp_path / "etc" / "config.toml",
        'output = "records"\nbaselines = ["profiles", "/abs/profiles"]\n'
        'suites = "suites"\nlock = "/x/lock"\n',
    )
    env = {"HPCBENCH_CONFIG": str(conf), "HPCBENCH_LOCK": "/env/lock", "HOME": "/home/op"}
    cfg = config.load({"output": "/cli/out"}, env, euid=1000)
    assert (cfg.output.value, cfg.output.source) == (Path("/cli/out"), "--output")
    assert (cfg.lock.value, cfg.lock.source) == (Path("/env/lock"), "HPCBENCH_LOCK")
    etc = conf.parent.resolve()
    assert cfg.baselines.value == (etc / "profiles", Path("/abs/profiles")) and cfg.baselines.source == str(
        conf
    )
    assert cfg.suites.value == (etc / "suites",)
    cfg = config.load({}, env, euid=1000)
    assert cfg.output.value == etc / "records"  # relative to the config file's folder
    cfg = config.load({}, {"HOME": "/home/op", "HPCBENCH_BASELINES": "/a:/b"}, euid=1000)
    assert cfg.output == config.Setting("output", Path("/home/op/.local/state/hpcbench/results"), "default")
    assert cfg.baselines.value == (Path("/a"), Path("/b"))
    state = config.load({}, {"XDG_STATE_HOME": "/state"}, euid=1000).output.value
    assert state == Path("/state/hpcbench/results")
    assert config.load({}, {}, euid=0).output.value == Path("/var/lib/hpcbench/results")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'outptu = "x"\n',
            "line 1: key 'outptu': unknown key; expected one of output, baselines, suites, lock",
        ),
        ("baselines = [1]\n", "key 'baselines': expected a list of folders, got [1]"),
        ("output = 3\n", "key 'output': expected a path, got 3"),
        ("output = \n", "invalid TOML"),
    ],
)
def test_a_bad_config_file_is_named(tmp_path: Path, text: str, message: str) -> None:
    conf = write(tmp_path / "config.toml", text)
    with pytest.raises(ConfigError, match="config.toml") as info:
        config.load({}, {"HPCBENCH_CONFIG": str(conf)}, euid=1000)
    assert message in str(info.value)


def test_config_command_says_where_each_value_came_from(cli: Cli, tmp_path: Path) -> None:
    conf = write(tmp_path / "config.toml", 'suites = ["/srv/suites"]\n')
    cli.env.update(HPCBENCH_CONFIG=str(conf), HPCBENCH_BASELINES="/p1:/p2")
    done = cli("config")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"config file: {conf}"
    assert f"output     {tmp_path / 'results'}  (HPCBENCH_OUTPUT)" in lines
    assert "baselines  /p1:/p2  (HPCBENCH_BASELINES)" in lines
    assert f"suites     /srv/suites  ({conf})" in lines
    data = json.loads(cli("config", "--format", "json").stdout)
    assert data["suites"] == {"value": ["/srv/suites"], "source": str(conf)}
    cli.env["HPCBENCH_CONFIG"] = str(tmp_path / "nowhere.toml")
    bad = cli("config")
    assert bad.returncode == 4 and "nowhere.toml: config file not found" in bad.stderr


def site(tmp_path: Path, cpu: str) -> tuple[Path, Path]:
    suites, profiles = tmp_path / "site" / "suites", tmp_path / "site" / "baselines"
    suites.mkdir(parents=True)
    profiles.mkdir(parents=True)
    write(suites / "nightly.toml", SUITE.format(value=50.0))
    write(profiles / "ours.toml", PROFILE.format(name="ours", cpu=cpu, expected=100.0))
    return suites, profiles


def test_site_suite_and_baseline_are_found_by_name_before_the_bundled(cli: Cli, tmp_path: Path) -> None:
    from hpcbench.node.collector import collect

    suites, profiles = site(tmp_path, collect().cpu.model or "")
    cli.env.update(HPCBENCH_SUITES=str(suites), HPCBENCH_BASELINES=str(profiles))
    done = cli("run", "nightly", "--format", "json")  # the site's nightly, not the bundled one
    assert done.returncode == 2, done.stderr  # 50 of the site profile's 100: FAIL
    rec = json.loads(done.stdout)
    assert rec["suite"]["name"] == "site" and rec["suite"]["path"] == str(suites / "nightly.toml")
    assert rec["baseline"]["name"] == "ours"
    assert rec["baseline"]["matched_by"].endswith(f"(site folder {profiles})")
    assert rec["checks"][0]["evaluations"][0]["verdict"] == "FAIL"
    assert cli("run", "nightly", "--baseline", "ours", "--quiet").returncode == 2  # by name too
    cli.env["HPCBENCH_SUITES"] = str(tmp_path / "missing")
    bad = cli("run", "nightly")
    assert (
        bad.returncode == 4
        and f"HPCBENCH_SUITES: suites folder {tmp_path / 'missing'} does not exist" in bad.stderr
    )


def test_max_age_works_from_any_directory(cli: Cli, tmp_path: Path) -> None:
    """Records go to the configured folder, so a run started elsewhere finds the last pass."""
    suite = write(tmp_path / "s.toml", 'name = "s"\n[[check]]\nid = "fixed"\nprobe = "fixed"\n')
    first = cli("run", str(suite), "--quiet")
    assert first.returncode == 0, first.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cli.workdir = elsewhere
    again = cli("run", str(suite), "--max-age", "1h")
    assert again.returncode == 0 and "passed (OK)" in again.stdout and "within --max-age 1h" in again.stdout
    assert len(list((tmp_path / "results").glob("*/*.json"))) == 1  # nothing ran the second time
    assert not (elsewhere / "results").exists()


def test_default_output_is_absolute_and_not_the_current_folder(cli: Cli, tmp_path: Path) -> None:
    del cli.env["HPCBENCH_OUTPUT"]
    cli.env["HPCBENCH_CONFIG"] = str(write(tmp_path / "c.toml", f'output = "{tmp_path / "var"}"\n'))
    suite = write(tmp_path / "s.toml", SUITE.format(value=100.0))
    assert cli("run", str(suite), "--quiet").returncode == 0
    assert len(list((tmp_path / "var").glob("*/*.json"))) == 1 and not (tmp_path / "results").exists()
    assert os.path.isabs(config.load({}, {}, euid=1000).output.value)
