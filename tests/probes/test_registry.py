"""The probe contract, checked when a probe registers: broken plugins listed with the reason and
their package, suites that use them refused (exit 4), the other probes unharmed."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli, write

from hpcbench.core.errors import ConfigError
from hpcbench.core.measurement import Measurement
from hpcbench.probes import registry
from hpcbench.probes.base import ProbeContext, Requirement
from hpcbench.probes.cpu_membw.probe import CpuMembw
from hpcbench.probes.registry import contract_problems, param_type_problem, spec_of

#: what `hpcbench list` must say of each broken test probe (a fragment of its reason)
BROKEN = {
    "no_expands": "missing required attribute expands",
    "thawed": "Params NotFrozen must be frozen",
    "no_default": "parameter 'n' has no default",
    "odd_type": "parameter 'table' has type dict",
    "far_expand": "expands over unknown kind 'rack'",
    "bad_run": "run must take (self, params, ctx)",
    "misnamed": "the entry point is named 'misnamed' but the class says name = 'other_name'",
    "bad_kind": "failed to load: ValueError: unknown requirement kind 'tpu'",
    "missing_module": "failed to load: ModuleNotFoundError",
    "twin": "two packages register it",
}


@pytest.fixture()
def broken_cli(cli: Cli, broken_site: Path) -> Cli:
    cli.env["PYTHONPATH"] = os.pathsep.join([cli.env["PYTHONPATH"], str(broken_site)])
    return cli


# -- the contract, pure --------------------------------------------------------------------------


@dataclass(frozen=True)
class P:
    n: int = 1
    names: list[str] = field(default_factory=list)
    maybe: float | None = None
    either: list[int | str] = field(default_factory=list)


class Conforming:
    name = "conforming"
    description = "A probe that keeps the contract"
    Params = P
    requires = (Requirement("binary", "true", install="apt-get install coreutils"),)
    expands = {"numa": "n"}

    def run(self, params: P, ctx: ProbeContext) -> list[Measurement]:
        return []


def variant(**attrs: Any) -> type:
    return type("Variant", (Conforming,), attrs)


def without(attr: str) -> type:
    ns = {k: v for k, v in vars(Conforming).items() if not k.startswith("__")}
    del ns[attr]
    return type("Without", (), ns)


def test_a_conforming_probe_has_no_problems_and_gets_its_defaults() -> None:
    assert contract_problems(Conforming, "conforming") == []
    spec = spec_of(Conforming)
    assert (spec.metrics, spec.concurrent, dict(spec.expands)) == (None, True, {"numa": "n"})
    assert spec.instance().run(P(), ProbeContext()) == []


def test_every_builtin_probe_keeps_the_contract() -> None:
    found = registry.catalog()
    builtin = {"attention", "collectives", "cpu_membw", "gemm", "gpu_health", "gpu_membw", "pcie", "storage"}
    assert builtin <= set(found.probes)
    assert not builtin & set(found.broken)
    for name in builtin:
        assert contract_problems(found.probes[name].cls, name) == []


@pytest.mark.parametrize(
    ("cls", "problem"),
    [
        (without("expands"), "missing required attribute expands"),
        (without("run"), "missing required attribute run"),
        (variant(name="Bad-Name"), "name must be a snake_case string"),
        (variant(name="other"), "the entry point is named 'conforming' but the class says name = 'other'"),
        (variant(description=""), "description must be one non-empty line"),
        (variant(description="two\nlines"), "description must be one non-empty line"),
        (variant(Params=dict), "Params must be a dataclass"),
        (variant(requires=("gpu",)), "requires holds 'gpu', not a hpcbench.probes.base.Requirement"),
        (variant(expands={"rack": "n"}), "expands over unknown kind 'rack'"),
        (variant(expands={"gpu": "device"}), "expands['gpu'] names 'device', which is not a parameter"),
        (variant(expands=["numa"]), "expands must be a dict"),
        (variant(metrics="triad"), "metrics must be a tuple of metric names"),
        (variant(concurrent="no"), "concurrent must be True or False"),
        (variant(run=lambda self: []), "run must take (self, params, ctx)"),
        (variant(__init__=lambda self, nvml: None), "the class must be callable without arguments"),
    ],
)
def test_each_broken_rule_is_named(cls: type, problem: str) -> None:
    problems = contract_problems(cls, "conforming")
    assert any(problem in p for p in problems), problems
    with pytest.raises(ConfigError, match="breaks the probe contract"):
        spec_of(cls, "conforming")


def test_params_rules() -> None:
    @dataclass
    class Thawed:
        n: int = 1

    @dataclass(frozen=True)
    class NoDefault:
        n: int

    @dataclass(frozen=True)
    class RefusesItsDefaults:
        n: int = -1

        def __post_init__(self) -> None:
            if self.n < 0:
                raise ValueError("n must be >= 0")

    assert any("must be frozen" in p for p in contract_problems(variant(Params=Thawed), "conforming"))
    assert any("'n' has no default" in p for p in contract_problems(variant(Params=NoDefault), "conforming"))
    refused = contract_problems(variant(Params=RefusesItsDefaults), "conforming")
    assert any("with its defaults is refused: n must be >= 0" in p for p in refused)


@pytest.mark.parametrize(
    ("tp", "ok"),
    [(int, True), (str, True), (int | None, True), (list[int | str], True), (list[float], True)]
    + [(dict, False), (list[list[int]], False), (tuple, False), (list, False)],
)
def test_parameter_types_are_those_the_parser_fills(tp: Any, ok: bool) -> None:
    assert (param_type_problem(tp) is None) is ok


def test_an_unknown_requirement_kind_is_refused_where_it_is_written() -> None:
    with pytest.raises(ValueError, match="unknown requirement kind 'tpu'"):
        Requirement("tpu")
    with pytest.raises(ValueError, match="names its program"):
        Requirement("binary")


def test_load_of_an_unknown_probe() -> None:
    with pytest.raises(ConfigError, match="unknown probe 'nope'; known probes: .*cpu_membw"):
        registry.load("nope")
    assert registry.load("cpu_membw").cls is CpuMembw


# -- broken plugin packages installed by pip, through the installed CLI --------------------------


def test_list_shows_each_broken_probe_with_its_reason_and_package(broken_cli: Cli) -> None:
    done = broken_cli("list")
    assert done.returncode == 0, done.stderr
    lines = {ln.split(":", 1)[0]: ln for ln in done.stdout.splitlines() if not ln.startswith(" ")}
    for name, reason in BROKEN.items():
        assert lines[name].startswith(f"{name}: BROKEN: "), lines[name]
        assert reason in lines[name], lines[name]
    for name in set(BROKEN) - {"twin"}:  # each names the package it came from
        assert "package hpcbench-brokenprobes 1.0.0" in lines[name], lines[name]
    assert "hpcbench-twinprobe 2.0.0" in lines["twin"] and "hpcbench-brokenprobes 1.0.0" in lines["twin"]
    # the others keep working, built-in and third-party
    assert lines["cpu_membw"].startswith("cpu_membw: CPU memory bandwidth")
    assert "BROKEN" not in lines["fixed"]


def test_list_json_marks_broken_probes(broken_cli: Cli) -> None:
    done = broken_cli("list", "--format", "json")
    assert done.returncode == 0, done.stderr
    entries = {e["name"]: e for e in json.loads(done.stdout)}
    assert BROKEN["thawed"] in entries["thawed"]["broken"]
    assert entries["thawed"]["package"] == "hpcbench-brokenprobes 1.0.0"
    assert "broken" not in entries["fixed"] and entries["fixed"]["package"] == "hpcbench-testprobes 1.0.0"


SUITE = """
name = "mixed"
[[check]]
id = "fine"
probe = "fixed"
absolute = {{ score = {{ warn = 50.0 }} }}
{extra}
"""


def test_a_suite_that_uses_a_broken_probe_is_refused_and_nothing_runs(
    broken_cli: Cli, tmp_path: Path
) -> None:
    extra = '[[check]]\nid = "bad"\nprobe = "thawed"\n'
    path = write(tmp_path / "mixed.toml", SUITE.format(extra=extra))
    done = broken_cli("run", str(path), "--output", str(tmp_path / "out"))
    assert done.returncode == 4
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert (
        "check[1] ('bad') key 'probe': probe 'thawed' is broken: Params NotFrozen must be frozen"
        in done.stderr
    )
    assert "package hpcbench-brokenprobes 1.0.0" in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_suite_of_good_probes_runs_beside_broken_plugins(broken_cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path / "good.toml", SUITE.format(extra=""))
    done = broken_cli("run", str(path), "--output", str(tmp_path / "out"), "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["checks"][0]["verdict"] == "PASS"


@pytest.mark.parametrize("name", ["no_expands", "twin", "missing_module"])
def test_probe_command_refuses_a_broken_probe(broken_cli: Cli, name: str) -> None:
    done = broken_cli("probe", name)
    assert done.returncode == 4
    assert f"probe {name!r} is broken: " in done.stderr and BROKEN[name] in done.stderr
    assert done.stderr.count("\n") == 1
