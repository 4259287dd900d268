"""EDAC memory controllers: corrected and uncorrected DRAM error counts, per DIMM.

The kernel's EDAC drivers (skx_edac, i10nm_edac, amd64_edac, ...) count the memory errors
the memory controllers report, since the driver loaded (boot), under
``/sys/devices/system/edac/mc/mc<N>/``: ``ce_count``/``ue_count`` for the controller (errors
not attributable to a DIMM are also in ``ce_noinfo_count``/``ue_noinfo_count``), and per
DIMM either ``dimm<N>/`` (or ``rank<N>/``) with ``dimm_ce_count``, ``dimm_ue_count``,
``dimm_label`` and ``dimm_location``, or the older ``csrow<N>/`` with ``ce_count``,
``ue_count`` and per channel ``ch<N>_ce_count`` and ``ch<N>_dimm_label``.

``read_edac(root)`` reads that tree under any root (``/`` on a node, a fixture tree in tests);
``items`` turns it into the probe's two counts with the DIMMs named.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from hpcbench.core.items import Item, missing
from hpcbench.node.pci import read_text
from hpcbench.probes.node_health import metrics as names

EDAC_MC = "sys/devices/system/edac/mc"
METRICS = names.EDAC
#: DIMMs named per controller in a detail, the most errors first
NAMED = 5
_NUMBERED = re.compile(r"^(mc|dimm|rank|csrow)(\d+)$")
_CHANNEL_CE = re.compile(r"^ch(\d+)_ce_count$")


@dataclass(frozen=True)
class Dimm:
    """One DIMM (or csrow) of a memory controller and its error counts since boot."""

    name: str  # dimm0, rank3, csrow1
    label: str  # the platform's slot name (dimm_label / ch<N>_dimm_label), or ""
    location: str  # "channel 0 slot 0" (dimm_location), or the csrow's channels
    ce: int
    ue: int

    def describe(self) -> str:
        where = f"DIMM {self.label!r}" if self.label else self.name
        return f"{where} ({self.location})" if self.location else where


@dataclass(frozen=True)
class Controller:
    """One EDAC memory controller: its totals and its DIMMs."""

    name: str  # mc0
    mc_name: str  # the driver's name for it, e.g. "Intel_10nm Socket#0 IMC#0"
    ce: int
    ue: int
    ce_noinfo: int
    ue_noinfo: int
    dimms: tuple[Dimm, ...]


def _numbered(folder: str, prefix: str) -> list[str]:
    """``prefix<N>`` entries of a folder in numeric order (mc2 before mc10)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    found = [(int(m[2]), n) for n in names if (m := _NUMBERED.match(n)) and m[1] == prefix]
    return [n for _, n in sorted(found)]


def _int(path: str) -> int:
    text = (read_text(path) or "").strip()
    return int(text) if text.lstrip("-").isdigit() else 0


def _text(path: str) -> str:
    return (read_text(path) or "").strip()


def _dimms(mc: str) -> list[Dimm]:
    out = []
    for prefix in ("dimm", "rank"):  # drivers register either DIMMs or ranks
        for name in _numbered(mc, prefix):
            d = f"{mc}/{name}"
            out.append(
                Dimm(
                    name,
                    _text(f"{d}/dimm_label"),
                    _text(f"{d}/dimm_location"),
                    _int(f"{d}/dimm_ce_count"),
                    _int(f"{d}/dimm_ue_count"),
                )
            )
    if out:
        return out
    for name in _numbered(mc, "csrow"):  # the older layout: chip-select rows with channels
        d = f"{mc}/{name}"
        try:
            entries = os.listdir(d)
        except OSError:
            entries = []
        chans = sorted(int(m[1]) for e in entries if (m := _CHANNEL_CE.match(e)))
        labels = {c: _text(f"{d}/ch{c}_dimm_label") for c in chans}
        counts = ", ".join(
            f"ch{c}" + (f" {labels[c]!r}" if labels[c] else "") + f" {_int(f'{d}/ch{c}_ce_count')} CE"
            for c in chans
        )
        label = ", ".join(lb for lb in labels.values() if lb)
        out.append(Dimm(name, label, counts, _int(f"{d}/ce_count"), _int(f"{d}/ue_count")))
    return out


def read_edac(root: str) -> list[Controller] | None:
    """Every EDAC memory controller under ``root``; None when the node has no EDAC."""
    base = os.path.join(root, EDAC_MC)
    names = _numbered(base, "mc")
    if not names:
        return None
    out = []
    for name in names:
        mc = f"{base}/{name}"
        out.append(
            Controller(
                name=name,
                mc_name=_text(f"{mc}/mc_name"),
                ce=_int(f"{mc}/ce_count"),
                ue=_int(f"{mc}/ue_count"),
                ce_noinfo=_int(f"{mc}/ce_noinfo_count"),
                ue_noinfo=_int(f"{mc}/ue_noinfo_count"),
                dimms=tuple(_dimms(mc)),
            )
        )
    return out


def _where(controllers: list[Controller], kind: str) -> str:
    """``mc0 (Intel_10nm Socket#0 IMC#0): DIMM 'CPU0_DIMM_A1' (channel 0 slot 0) 12`` per DIMM with errors."""
    parts = []
    for c in controllers:
        total, noinfo = (c.ue, c.ue_noinfo) if kind == "ue" else (c.ce, c.ce_noinfo)
        if not total:
            continue
        head = f"{c.name} ({c.mc_name})" if c.mc_name else c.name
        counted = sorted(((d, d.ue if kind == "ue" else d.ce) for d in c.dimms), key=lambda dn: -dn[1])
        worst = [(d, n) for d, n in counted if n]  # the DIMM to replace first
        dimms = [f"{d.describe()} {n}" for d, n in worst[:NAMED]]
        if len(worst) > NAMED:
            dimms.append(f"{len(worst) - NAMED} more DIMM(s)")
        if noinfo:
            dimms.append(f"{noinfo} not attributed to a DIMM")
        parts.append(f"{head}: {total}" + (f" = {', '.join(dimms)}" if dimms else ""))
    return "; ".join(parts)


def items(controllers: list[Controller] | None, root: str) -> list[Item]:
    """``edac_uncorrected`` and ``edac_corrected``: the sums over the controllers, the DIMMs named."""
    if controllers is None:
        return missing(
            METRICS,
            f"no EDAC memory controller ({os.path.join(root, EDAC_MC)} absent: no EDAC driver for this "
            "platform, a VM, or memory errors reported firmware-first through APEI, see kernel_hw_errors)",
        )
    n = len(controllers)
    dimms = sum(len(c.dimms) for c in controllers)
    scope = f"since boot on {n} memory controller(s), {dimms} DIMM(s)"
    ue = sum(c.ue for c in controllers)
    ce = sum(c.ce for c in controllers)
    return [
        Item("edac_uncorrected", float(ue), detail=f"{ue} uncorrected {scope}" + _suffix(controllers, "ue")),
        Item("edac_corrected", float(ce), detail=f"{ce} corrected {scope}" + _suffix(controllers, "ce")),
    ]


def _suffix(controllers: list[Controller], kind: str) -> str:
    where = _where(controllers, kind)
    return f": {where}" if where else ""
