"""A probe that requires a kind of thing hpcbench does not know: refused when its module loads."""

from __future__ import annotations

from hpcbench.core.measurement import Measurement
from hpcbench.probes.base import ProbeContext, Requirement
from hpcbench_brokenprobes import Good


class BadKind:
    name = "bad_kind"
    description = "Requires an unknown kind"
    Params = Good
    requires = (Requirement("tpu"),)
    expands: dict[str, str] = {}

    def run(self, params: Good, ctx: ProbeContext) -> list[Measurement]:
        return []
