"""The pairs mode's pure parts: the rounds in which nodes meet, and naming the slow node or link;
and the session's per-node records under a launch (no torch: the health mode joins nothing)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
from conftest import Cli

from hpcbench.core.exitcodes import ExitCode
from hpcbench.probes.network_pairs.pairs import PairResult, analyse, node_items, rounds


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 9, 16, 33])
def test_rounds(n: int) -> None:
    every = rounds(n, "all")
    assert len(every) == (n - 1 if n % 2 == 0 else n)
    pairs = [p for rnd in every for p in rnd]
    assert sorted(pairs) == list(itertools.combinations(range(n), 2))  # every pair exactly once
    for rnd in every:
        nodes = [x for p in rnd for x in p]
        assert len(nodes) == len(set(nodes))  # a node is in one pair per round at most
        assert len(rnd) == n // 2
    log = rounds(n, "log")
    assert log == every[: math.ceil(math.log2(n))]
    met = {
        i: {b if a == i else a for a, b in (p for rnd in log for p in rnd) if i in (a, b)} for i in range(n)
    }
    for i in range(n):  # log2(N) others, one fewer for a node that sat a round out (odd N)
        assert len(met[i]) >= math.ceil(math.log2(n)) - (n % 2)


def test_rounds_of_one_node() -> None:
    assert rounds(1) == [] and rounds(0, "all") == []


def test_the_slow_node_is_named() -> None:
    names = ["a", "b", "c", "d"]
    ok, slow = 100.0, 20.0
    results = [
        PairResult(x, y, slow if 3 in (x, y) else ok, ok) for x, y in itertools.combinations(range(4), 2)
    ]
    an = analyse(names, results, 0.8)
    assert an.reference == 100.0  # median of each node's best pair: 100, 100, 100, 20
    assert an.slow_nodes == (3,) and an.slow_links == ()
    assert an.slow_pairs == ((0, 3), (1, 3), (2, 3))
    assert an.summary == (
        "reference 100 Gb/s (median of each node's best pair), slow below 80 Gb/s; d is slow in every pair "
        "it is in (with a 20 Gb/s, with b 20 Gb/s, with c 20 Gb/s)"
    )
    items = {i.metric: i for i in node_items(names, results, an, 3)}
    assert (items["pair_bw"].value, items["slow_node"].value, items["slow_links"].value) == (20.0, 1.0, 0.0)
    a = {i.metric: i for i in node_items(names, results, an, 0)}
    assert (a["pair_bw"].value, a["slow_node"].value) == (100.0, 0.0)
    assert a["pair_bw"].detail == "a: best pair of 3: with b 100 Gb/s, with c 100 Gb/s, with d 20 Gb/s"


def test_the_slow_link_is_named_on_both_its_ends() -> None:
    names = ["a", "b", "c", "d"]
    results = [
        PairResult(x, y, 10.0 if (x, y) == (1, 3) else 100.0, 100.0)
        for x, y in itertools.combinations(range(4), 2)
    ]
    an = analyse(names, results, 0.8)
    assert an.slow_nodes == () and an.slow_links == ((1, 3),)
    assert "the link b <-> d is slow (10 Gb/s) while both are fast elsewhere" in an.summary
    for me, count in ((0, 0.0), (1, 1.0), (2, 0.0), (3, 1.0)):
        assert {i.metric: i for i in node_items(names, results, an, me)}["slow_links"].value == count


def test_a_pair_is_its_slower_direction_and_a_failure_is_zero() -> None:
    assert PairResult(0, 1, 90.0, 30.0).gbps == 30.0
    names = ["a", "b", "c"]
    results = [
        PairResult(0, 1, 50, 50),
        PairResult(0, 2, 0.0, 0.0, "c never started its iperf3 server"),
        PairResult(1, 2, 0.0, 0.0, "x"),
    ]
    an = analyse(names, results, 0.8)
    assert an.slow_nodes == (2,)
    assert "with a failed: c never started its iperf3 server" in an.summary


def test_two_nodes_name_nothing() -> None:
    an = analyse(["a", "b"], [PairResult(0, 1, 10.0, 1.0)], 0.8)
    assert (an.slow_nodes, an.slow_links, an.reference) == ((), (), 1.0)
    assert an.summary == "2 node(s), 1 pair(s): no other pair to compare with"


def test_with_three_nodes_log_rounds_cannot_tell_and_say_so() -> None:
    # log2(3) -> 2 rounds: (1, 2) and (0, 2); node 2 slow makes every pair slow, and nodes 0 and 1
    # are in no other pair: nothing tells the slow side, so nothing is named
    names = ["a", "b", "c"]
    results = [PairResult(a, b, 1.0, 1.0) for rnd in rounds(3, "log") for a, b in rnd]
    an = analyse(names, results, 0.8)
    assert an.slow_nodes == () and an.slow_pairs == ()


# --- the session: per-node records under a launch --------------------------------------------

VM = str(Path(__file__).parent / "fixtures" / "network" / "vm")
LAUNCH = {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29400"}


def test_each_node_writes_its_own_record_of_a_per_node_probe(cli: Cli) -> None:
    cli.env.update(LAUNCH, RANK="1", LOCAL_RANK="0")  # not rank 0, but the first rank on its node
    r = cli("probe", "network_ports", "-p", f"root={VM}", "-p", "interval=0", "--format", "json")
    assert r.returncode == ExitCode.OK, r.stderr
    assert json.loads(r.stdout)["checks"][0]["probe"] == "network_ports"
    assert len(list(Path(cli.workdir).glob("results/*/*.json"))) == 1


def test_other_local_ranks_of_a_node_write_nothing(cli: Cli) -> None:
    cli.env.update(LAUNCH, RANK="1", LOCAL_RANK="1")
    r = cli("probe", "network_ports", "-p", f"root={VM}", "-p", "interval=0")
    assert r.returncode == ExitCode.OK, r.stderr
    assert r.stdout == "" and list(Path(cli.workdir).glob("results/*/*.json")) == []
