"""Node-level decisions over a check's subjects: the consensus of a value every subject must share
(the burn's digest of its first output: the odd GPU out by majority), and a relative check limited
to some metrics (throughput compared across GPUs, error counts not)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hpcbench.core import tomlfile
from hpcbench.core.errors import ConfigError
from hpcbench.core.measurement import Consensus, Measurement, Verdict
from hpcbench.engine import suite as suite_mod
from hpcbench.engine.judge import consensus, judge, relative
from hpcbench.engine.suite import Band, CheckSpec, Relative
from hpcbench.node.inventory import Inventory
from hpcbench.probes import registry

GOOD, BAD = "a" * 64, "b" * 64


def m(
    metric: str,
    value: float,
    digest: str | None = None,
    group: str = "NVIDIA H200 bf16 8192x8192x8192 seed 0",
) -> Measurement:
    agree = None
    if digest is not None:
        agree = Consensus("first_output_sha256", digest, group, "the sha256 of the first output")
    return Measurement.from_samples(metric, [value], "TFLOPS", "x", statistic="median", consensus=agree)


def test_the_odd_gpu_out_fails_by_name() -> None:
    by = {f"gpu{i}": [m("bf16_sustained", 700.0, BAD if i == 3 else GOOD)] for i in range(8)}
    out = consensus(by)
    assert [e.verdict for e in out["gpu0"]] == [Verdict.PASS]
    assert out["gpu0"][0].provenance == (
        "the sha256 of the first output equal on 7 of 8 subjects (NVIDIA H200 bf16 8192x8192x8192 seed 0)"
    )
    (ev,) = out["gpu3"]
    assert ev.verdict is Verdict.FAIL and ev.kind == "consensus" and ev.metric == "first_output_sha256"
    assert ev.reason == (
        "gpu3: the sha256 of the first output (bbbbbbbbbbbb) differs from the one 7 of 8 subjects computed "
        "(aaaaaaaaaaaa; NVIDIA H200 bf16 8192x8192x8192 seed 0)"
    )
    assert "silent data corruption" in ev.hint


def test_a_tie_warns_every_subject_and_a_lone_subject_gets_nothing() -> None:
    tie = consensus({f"gpu{i}": [m("bf16_sustained", 700.0, GOOD if i < 2 else BAD)] for i in range(4)})
    assert {s: [e.verdict for e in evs] for s, evs in tie.items()} == {
        f"gpu{i}": [Verdict.WARN] for i in range(4)
    }
    assert "no majority tells which is wrong" in tie["gpu2"][0].reason
    assert consensus({"node": [m("bf16_sustained", 1.0, GOOD)]}) == {}
    assert consensus({"gpu0": [m("bf16_sustained", 1.0)], "gpu1": [m("bf16_sustained", 1.0)]}) == {}


def test_groups_are_compared_apart() -> None:
    """Two GPU models on one node compute different bits, rightly: each is compared with its own kind."""
    by = {
        "gpu0": [m("bf16_sustained", 1.0, GOOD, "A100")],
        "gpu1": [m("bf16_sustained", 1.0, GOOD, "A100")],
        "gpu2": [m("bf16_sustained", 1.0, BAD, "H100")],
        "gpu3": [m("bf16_sustained", 1.0, BAD, "H100")],
    }
    assert all(e.verdict is Verdict.PASS for evs in consensus(by).values() for e in evs)


@dataclass
class _Job:
    subject: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Outcome:
    job: _Job
    status: str = "ok"
    started: str = ""
    duration: float = 0.0
    reason: str = ""
    hint: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)
    unmeasured: list[Any] = field(default_factory=list)


def test_judge_fails_only_the_odd_gpu_and_compares_throughput_only() -> None:
    check = CheckSpec(
        id="burn",
        probe="burn",
        expand="gpu",
        metrics=("bf16_sustained", "xid_new"),
        absolute={"xid_new": Band(None, 0.5)},
        relative=Relative("best", Band(0.95, 0.90), ("bf16_sustained",)),
    )
    outcomes = []
    for i in range(4):
        xid = Measurement.from_samples("xid_new", [0.0], "count", f"gpu{i}", higher_is_better=False)
        outcomes.append(
            _Outcome(
                _Job(f"gpu{i}"), measurements=[m("bf16_sustained", 700.0 - i, BAD if i == 2 else GOOD), xid]
            )
        )
    results = {r.subject: r for r in judge(check, outcomes, None, Inventory.from_dict({}))}
    assert results["gpu2"].verdict is Verdict.FAIL and results["gpu0"].verdict is not Verdict.FAIL
    kinds = sorted(e.kind for e in results["gpu1"].evaluations)
    assert kinds == ["absolute", "consensus", "none", "relative"]  # no relative evaluation of xid_new
    rel = [e for e in results["gpu1"].evaluations if e.kind == "relative"]
    assert [e.metric for e in rel] == ["bf16_sustained"] and rel[0].expected == 700.0
    assert (
        relative(
            {"a": [m("bf16_sustained", 1.0)], "b": [m("bf16_sustained", 2.0)]}, check, Inventory.from_dict({})
        )["a"][0].verdict
        is Verdict.FAIL
    )


def test_suite_relative_metrics_are_parsed_and_checked(tmp_path: Path) -> None:
    classes = registry.load_all()
    burn = next(c for c in suite_mod.load("acceptance", classes).checks if c.id == "burn")
    assert burn.relative is not None and burn.relative.metrics == ("bf16_sustained",)
    assert burn.as_dict()["relative"] == {
        "to": "best",
        "warn": 0.95,
        "fail": 0.90,
        "metrics": ["bf16_sustained"],
    }
    text = (
        '[[check]]\nid = "b"\nprobe = "burn"\nexpand = "gpu"\nmetrics = ["bf16_sustained"]\n'
        'relative = {{ to = "best", metrics = {} }}\n'
    )
    for bad in ('["droop"]', "[]", '"bf16_sustained"'):
        path = tmp_path / "s.toml"
        path.write_text(text.format(bad))
        with pytest.raises(ConfigError, match="relative.metrics"):
            suite_mod.parse(tomlfile.read(str(path), "suite"), classes)
