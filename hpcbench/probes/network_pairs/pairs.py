"""Node pairs: the rounds in which nodes meet, and which node or link is slow. Pure, no I/O.

Rounds follow the circle method of a round-robin tournament: with N nodes (one more, a bye, when
N is odd) every round pairs each node with one other, and after N-1 rounds (N when odd) every
node has met every other once. ``meet = "log"`` keeps the first ceil(log2 N) rounds: each node
meets ceil(log2 N) others (one fewer when it sits a round out), enough to tell a slow node from a
slow link at a fraction of the time; ``meet = "all"`` keeps them all.

A pair's bandwidth is the slower of its two directions (each node sends once). The reference is
the median, over the nodes, of each node's best pair: a slow node drags down all its pairs but
not its partners' other pairs, so the reference stays that of a healthy node. A pair is slow
below ``slow_fraction`` x the reference; a node is slow when every pair it is in is slow while
one of its partners at least has a pair that is not (that partner is fast, so the node is what
the slow pairs have in common); a slow pair between two nodes that are not slow is a slow link.
With two nodes there is one pair and nothing to compare it with: nothing is named (the fleet and
the baseline still judge it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hpcbench.core.items import Item

MEET = ("log", "all")
METRICS = ("pair_bw", "slow_node", "slow_links")


def rounds(n: int, meet: str = "log") -> list[list[tuple[int, int]]]:
    """Pairs (a < b) of each round; a node is in at most one pair per round."""
    if n < 2:
        return []
    m = n + (n % 2)
    order = list(range(m))
    out = []
    for _ in range(m - 1):
        pairs = [(order[i], order[m - 1 - i]) for i in range(m // 2)]
        out.append(sorted((min(a, b), max(a, b)) for a, b in pairs if a < n and b < n))
        order = [order[0], order[-1], *order[1:-1]]
    if meet == "log":
        out = out[: max(1, math.ceil(math.log2(n)))]
    return out


@dataclass(frozen=True)
class PairResult:
    """One pair's bandwidth in each direction (Gb/s); an error is 0 Gb/s with the reason."""

    a: int
    b: int
    a_to_b: float
    b_to_a: float
    error: str = ""

    @property
    def gbps(self) -> float:
        return min(self.a_to_b, self.b_to_a)


@dataclass(frozen=True)
class Analysis:
    reference: float | None  # Gb/s
    slow_pairs: tuple[tuple[int, int], ...]
    slow_nodes: tuple[int, ...]
    slow_links: tuple[tuple[int, int], ...]
    summary: str


def analyse(names: list[str], results: list[PairResult], slow_fraction: float) -> Analysis:
    """Which pairs, nodes and links are slow (see the module docstring)."""
    import statistics

    mine: dict[int, list[PairResult]] = {i: [] for i in range(len(names))}
    for r in results:
        mine[r.a].append(r)
        mine[r.b].append(r)
    bests = [max(p.gbps for p in ps) for ps in mine.values() if ps]
    if len(names) < 3 or not bests:
        only = f"{len(names)} node(s), {len(results)} pair(s): no other pair to compare with"
        return Analysis(statistics.median(bests) if bests else None, (), (), (), only)
    reference = statistics.median(bests)
    limit = slow_fraction * reference
    slow = {(r.a, r.b) for r in results if r.gbps < limit}

    def all_slow(node: int) -> bool:
        return bool(mine[node]) and all((p.a, p.b) in slow for p in mine[node])

    nodes = sorted(
        n for n in mine if all_slow(n) and any(not all_slow(p.b if p.a == n else p.a) for p in mine[n])
    )
    links = sorted(pair for pair in slow if pair[0] not in nodes and pair[1] not in nodes)
    parts = [f"reference {reference:.3g} Gb/s (median of each node's best pair), slow below {limit:.3g} Gb/s"]
    for n in nodes:
        parts.append(f"{names[n]} is slow in every pair it is in ({describe(mine[n], names, n)})")
    for a, b in links:
        pair = next(r for r in results if (r.a, r.b) == (a, b))
        parts.append(
            f"the link {names[a]} <-> {names[b]} is slow ({pair.gbps:.3g} Gb/s) while both are fast elsewhere"
        )
    ambiguous = sorted(
        pair for pair in slow if pair not in links and pair[0] not in nodes and pair[1] not in nodes
    )
    if ambiguous:
        parts.append(
            "slow, cause not told apart: " + ", ".join(f"{names[a]} <-> {names[b]}" for a, b in ambiguous)
        )
    if not slow:
        parts.append("no slow pair")
    return Analysis(reference, tuple(sorted(slow)), tuple(nodes), tuple(links), "; ".join(parts))


def describe(pairs: list[PairResult], names: list[str], me: int) -> str:
    """``with node-b 0.21 Gb/s, with node-c 0.2 Gb/s`` (a failed pair says why)."""
    out = []
    for p in sorted(pairs, key=lambda r: (r.a, r.b)):
        other = names[p.b if p.a == me else p.a]
        out.append(f"with {other} " + (f"failed: {p.error}" if p.error else f"{p.gbps:.3g} Gb/s"))
    return ", ".join(out)


def node_items(names: list[str], results: list[PairResult], analysis: Analysis, me: int) -> list[Item]:
    """This node's items: its best pair, whether it is the slow node, its slow links."""
    pairs = [r for r in results if me in (r.a, r.b)]
    if not pairs:
        why = f"{names[me]} was in no pair" if len(names) > 1 else "one node: no pair"
        return [Item(m, not_measured=why) for m in METRICS]
    best = max(p.gbps for p in pairs)
    links = [pair for pair in analysis.slow_links if me in pair]
    link_text = ", ".join(f"{names[a]} <-> {names[b]}" for a, b in links)
    slow = me in analysis.slow_nodes
    return [
        Item(
            "pair_bw",
            best,
            "Gb/s",
            True,
            f"{names[me]}: best pair of {len(pairs)}: {describe(pairs, names, me)}",
        ),
        Item(
            "slow_node",
            1.0 if slow else 0.0,
            "flag",
            False,
            analysis.summary if slow else f"{names[me]} is not slow in every pair; {analysis.summary}",
        ),
        Item(
            "slow_links",
            float(len(links)),
            detail=f"slow links of {names[me]}: {link_text or 'none'}; {analysis.summary}",
        ),
    ]


def rail_items(
    names: list[str], per_rail: list[list[PairResult]], analyses: list[Analysis], me: int, rails: list[str]
) -> list[Item]:
    """This node's items over several rails (rail i of every node to rail i of the others, each
    rail analysed on its own): ``pair_bw`` is its best pair on its slowest rail; ``slow_node``
    when it is the slow node on any rail; ``slow_links`` counts its slow links over the rails.
    Every detail names the rail."""
    if len(per_rail) == 1:
        return node_items(names, per_rail[0], analyses[0], me)
    each = [node_items(names, res, an, me) for res, an in zip(per_rail, analyses, strict=True)]
    if any(items[0].value is None for items in each):
        return each[0]
    best = [items[0].value or 0.0 for items in each]
    worst = min(range(len(rails)), key=lambda i: best[i])
    slow = [rails[i] for i, items in enumerate(each) if items[1].value]
    links = [
        f"{names[a]} <-> {names[b]} on {rails[i]}"
        for i, an in enumerate(analyses)
        for a, b in an.slow_links
        if me in (a, b)
    ]
    summary = "; ".join(f"{rails[i]}: {an.summary}" for i, an in enumerate(analyses))
    per = ", ".join(f"{rails[i]} {best[i]:.3g} Gb/s" for i in range(len(rails)))
    return [
        Item(
            "pair_bw",
            best[worst],
            "Gb/s",
            True,
            f"{names[me]}: best pair per rail: {per}; the slowest rail is {rails[worst]}",
        ),
        Item(
            "slow_node",
            1.0 if slow else 0.0,
            "flag",
            False,
            (f"{names[me]} is slow on {', '.join(slow)}; " if slow else f"{names[me]} is slow on no rail; ")
            + summary,
        ),
        Item(
            "slow_links",
            float(len(links)),
            detail=f"slow links of {names[me]}: {', '.join(links) or 'none'}; {summary}",
        ),
    ]
