"""Pure helpers about the ranks of a distributed launch: naming them, and which are stalled or behind.

No torch here: the probes that spawn ranks name them in their errors without importing it.
"""

from __future__ import annotations


def rank_list(ranks: list[int]) -> str:
    """``rank 3`` / ``ranks 1, 2``."""
    return ("rank " if len(ranks) == 1 else "ranks ") + ", ".join(map(str, ranks))


def stalled_ranks(before: dict[int, int], after: dict[int, int | None], me: int) -> list[int]:
    """Ranks whose heartbeat counter did not move (or vanished) between two readings."""
    return sorted(r for r in before if r != me and (after.get(r) is None or after[r] == before[r]))


def behind_ranks(steps: dict[int, int], me: int) -> list[int]:
    """Ranks whose last started step is behind the furthest rank's."""
    if not steps:
        return []
    furthest = max(steps.values())
    return sorted(r for r, s in steps.items() if r != me and s < furthest)
