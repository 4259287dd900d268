"""ACS on the PCIe bridges between a GPU and its nearest NIC: P2P request or completion redirect
sends the NIC's reads of GPU memory up to the root complex, which breaks GPUDirect RDMA or
halves it. Read from each bridge's PCI config space (``config`` in sysfs, whose extended space
beyond 256 bytes only root may read). The parser is pure.

The bridges on a path are the deepest bridge both functions share (a switch's upstream port)
and each side's bridges below it (the switch's downstream ports), as traffic between two
functions under one switch crosses them.
"""

from __future__ import annotations

import os
import struct

from hpcbench.core.items import Item
from hpcbench.node.pci import PciPath

ACS_ID = 0x000D
#: ACS Control bits that redirect peer-to-peer traffic upstream (PCIe base spec 7.7.11)
P2P_REQUEST_REDIRECT = 1 << 2
P2P_COMPLETION_REDIRECT = 1 << 3
EXTENDED = 0x100


def acs_control(config: bytes) -> int | None:
    """The ACS Control register from a function's config space; None when the extended space is
    not there (not root, or no ACS capability)."""
    if len(config) < EXTENDED + 8:
        return None
    offset, seen = EXTENDED, set()
    while offset and offset not in seen and offset + 8 <= len(config):
        seen.add(offset)
        (header,) = struct.unpack_from("<I", config, offset)
        if header in (0, 0xFFFFFFFF):
            return None
        if header & 0xFFFF == ACS_ID:
            return int(struct.unpack_from("<H", config, offset + 6)[0])
        offset = (header >> 20) & 0xFFC
    return None


def bridges_between(a: PciPath, b: PciPath) -> list[str]:
    """The bridges traffic between two functions crosses below their common ancestor."""
    shared = 0
    for x, y in zip(a.chain, b.chain, strict=False):
        if x != y:
            break
        shared += 1
    if shared == 0 or a.host_bridge != b.host_bridge:
        return []
    return list(dict.fromkeys([a.chain[shared - 1], *a.chain[shared:-1], *b.chain[shared:-1]]))


def read_config(device_dir: str, bridge: str) -> bytes | None:
    """The config space of ``bridge``, an ancestor folder of the resolved ``device_dir``."""
    path = os.path.realpath(device_dir)
    while path and os.path.basename(path) != bridge:
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    try:
        with open(os.path.join(path, "config"), "rb") as fh:
            return fh.read(4096)
    except OSError:
        return None


def acs_item(paths: list[tuple[str, str, str, list[str]]], configs: dict[str, bytes | None]) -> Item:
    """``acs_redirect``: bridges with P2P redirect on the GPU<->NIC paths (gpu, nic, level, bridges)."""
    bad, read = [], 0
    for gpu, nic, _level, bridges in paths:
        for bridge in bridges:
            control = acs_control(configs.get(bridge) or b"")
            if control is None:
                continue
            read += 1
            if control & (P2P_REQUEST_REDIRECT | P2P_COMPLETION_REDIRECT):
                bad.append(f"{bridge} between {gpu} and {nic} (ACS control 0x{control:04x})")
    if not read:
        return Item(
            "acs_redirect",
            not_measured="no bridge's ACS could be read (the extended config space is root's, or no ACS)",
        )
    bad = list(dict.fromkeys(bad))
    detail = (
        "ACS P2P redirect on " + "; ".join(bad) + ": GPUDirect RDMA goes through the root complex "
        "(setpci the ACS control off, or the BIOS's ACS setting)"
        if bad
        else f"no P2P redirect on the {read} bridge(s) read between the GPUs and their nearest NICs"
    )
    return Item("acs_redirect", float(len(bad)), "bridges", False, detail)
