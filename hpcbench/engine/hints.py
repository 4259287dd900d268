"""Hints: where the node's own configuration explains a shortfall. Pure functions of the
measurement's typed fields (its warnings and conditions) and the inventory snapshot."""

from __future__ import annotations

from hpcbench.core.measurement import Measurement, Verdict
from hpcbench.node.inventory import Inventory


def config_hints(m: Measurement, inventory: Inventory) -> list[str]:
    """Every configuration fact that can lower a bandwidth or throughput number."""
    hints: list[str] = list(m.warnings)  # the probe's own
    if m.conditions.gpu_clocks_held:  # GPU clock event reasons during the run
        hints.append(m.conditions.gpu_clocks_held)
    cpu = inventory.cpu
    governors = cpu.governors or ((cpu.governor,) if cpu.governor else ())
    slow = sorted(g for g in governors if g in ("powersave", "conservative", "ondemand"))
    if slow:
        hints.append(
            f"CPU frequency governor is {'/'.join(slow)}: set performance "
            "(cpupower frequency-set -g performance)"
        )
    threads = m.conditions.threads
    available = len(m.conditions.cpus) if m.conditions.cpus else cpu.threads
    if isinstance(threads, int) and isinstance(available, int) and 0 < threads < available:
        hints.append(f"ran {threads} threads where {available} CPUs are available: fewer threads than cores")
    if inventory.tunables.get("numa_balancing") and len(inventory.numa.nodes) > 1:
        hints.append("numa_balancing is on and migrates pages during the run: sysctl kernel.numa_balancing=0")
    if inventory.memory.thp.enabled == "never":
        hints.append(
            "transparent huge pages are 'never': TLB misses cost bandwidth "
            "(echo madvise > /sys/kernel/mm/transparent_hugepage/enabled)"
        )
    return hints


def hint_for(verdict: Verdict, m: Measurement, inventory: Inventory) -> str:
    """A hint for a shortfall (WARN or FAIL); empty otherwise."""
    if verdict not in (Verdict.WARN, Verdict.FAIL):
        return ""
    return "; ".join(config_hints(m, inventory))
