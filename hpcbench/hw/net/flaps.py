"""Link flaps in the kernel log: a port that went down and up since ``since``. Pure, no I/O.

Lines counted (case-insensitive): a driver's ``Link is Down`` / ``Link down`` (mlx5_core, i40e,
ice, bnxt: ``mlx5_core 0000:18:00.0 ibp24s0: Link down``), ``lost carrier``, and mlx5's port
module events (``Port module event: module 0, Cable unplugged``, ``... Cable error``). One line
per event: a port that flapped three times counts three.
"""

from __future__ import annotations

import re

from hpcbench.core.items import Item
from hpcbench.hw.kernel_log import line_time

PATTERN = re.compile(
    r"link (?:is )?down\b|lost carrier|port module event.*(?:unplugged|error|disabled)", re.IGNORECASE
)


def flap_lines(text: str, booted: float | None, start: float | None) -> list[str]:
    """The kernel-log lines of link flaps, those written at or after ``start`` (None: all of
    this boot; a line whose time cannot be told counts)."""
    found = []
    for line in text.splitlines():
        if not PATTERN.search(line):
            continue
        when = line_time(line, booted)
        if start is not None and when is not None and when < start:
            continue
        found.append(line.strip())
    return found


def flap_item(lines: list[str], span: str) -> Item:
    shown = "; ".join(lines[:3]) + (f" (and {len(lines) - 3} more)" if len(lines) > 3 else "")
    return Item(
        "link_flaps",
        float(len(lines)),
        "count",
        False,
        f"link flaps in the kernel log {span}: {shown or 'none'}",
    )
