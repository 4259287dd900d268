"""The error counters of RDMA ports and network interfaces, and their readers.

InfiniBand's PortCounters (``/sys/class/infiniband/<dev>/ports/<n>/counters``: symbol errors,
link downed, link error recovery, receive errors, transmit discards, local link integrity,
excessive buffer overrun), which saturate at their width (``IB_COUNTER_BITS``); the mlx5
``hw_counters`` (retransmissions, congestion notifications: reported); Ethernet's ``statistics``
error counters and ``carrier_changes`` (a link flap). Drops, rx_missed and rx_fifo are reported,
never judged: a busy host drops packets it has no socket for or buffers it did not post. What
the counts mean is ``hpcbench.hw.net.health``'s to decide.
"""

from __future__ import annotations

import os

from hpcbench.node.pci import read_text

#: the IB error counters judged (ports/N/counters/<name>)
IB_ERROR_COUNTERS = (
    "symbol_error",
    "link_downed",
    "link_error_recovery",
    "port_rcv_errors",
    "port_xmit_discards",
    "local_link_integrity_errors",
    "excessive_buffer_overrun_errors",
)
#: read and reported, not judged
IB_OTHER_COUNTERS = (
    "port_rcv_remote_physical_errors",
    "port_rcv_switch_relay_errors",
    "port_xmit_constraint_errors",
    "port_rcv_constraint_errors",
    "VL15_dropped",
    "port_xmit_wait",
    "port_xmit_data",
    "port_rcv_data",
    "port_xmit_packets",
    "port_rcv_packets",
)
#: PortCounters field widths (IBTA): an error counter at 2**bits - 1 has saturated
IB_COUNTER_BITS = {
    "symbol_error": 16,
    "link_error_recovery": 8,
    "link_downed": 8,
    "port_rcv_errors": 16,
    "port_rcv_remote_physical_errors": 16,
    "port_rcv_switch_relay_errors": 16,
    "port_xmit_discards": 16,
    "port_xmit_constraint_errors": 8,
    "port_rcv_constraint_errors": 8,
    "local_link_integrity_errors": 4,
    "excessive_buffer_overrun_errors": 4,
    "VL15_dropped": 16,
}
#: Ethernet error counters judged (statistics/<name>, and the interface's carrier_changes)
ETH_ERROR_COUNTERS = (
    "rx_errors",
    "tx_errors",
    "rx_crc_errors",
    "tx_carrier_errors",
    "carrier_changes",
)
#: read and reported, not judged: rx_missed_errors (mlx5: the host did not post receive buffers
#: in time) and rx_fifo_errors are load, not a bad link
ETH_OTHER_COUNTERS = (
    "rx_missed_errors",
    "rx_fifo_errors",
    "rx_dropped",
    "tx_dropped",
    "rx_packets",
    "tx_packets",
    "rx_bytes",
    "tx_bytes",
)
#: the RDMA device's transport counters (ports/N/hw_counters, mlx5), reported per rail, not judged:
#: retransmissions and congestion notifications tell a lossy or congested fabric
HW_COUNTERS = (
    "out_of_sequence",
    "packet_seq_err",
    "local_ack_timeout_err",
    "rnr_nak_retry_err",
    "roce_adp_retrans",
    "np_cnp_sent",
    "rp_cnp_handled",
)


def saturated(name: str, value: int | None) -> bool:
    """Whether an IB error counter stopped at its maximum (the real count is higher)."""
    bits = IB_COUNTER_BITS.get(name)
    return bits is not None and value is not None and value >= 2**bits - 1


def _counters(folder: str, names: tuple[str, ...]) -> dict[str, int]:
    from hpcbench.node.nics import parse_int

    values = {}
    for name in names:
        value = parse_int(read_text(os.path.join(folder, name)))
        if value is not None:
            values[name] = value
    return values


def rdma_counters(root: str, device: str, port: int) -> dict[str, int]:
    """The port's IB counters that can be read (a RoCE port's PMA counters may be unsupported),
    and its hw_counters as ``hw_counters/<name>``."""
    from hpcbench.node.nics import IB_CLASS

    folder = os.path.join(root, IB_CLASS, device, "ports", str(port))
    values = _counters(os.path.join(folder, "counters"), IB_ERROR_COUNTERS + IB_OTHER_COUNTERS)
    hw = _counters(os.path.join(folder, "hw_counters"), HW_COUNTERS)
    values.update({f"hw_counters/{k}": v for k, v in hw.items()})
    return values


def interface_counters(root: str, name: str) -> dict[str, int]:
    """An interface's statistics and its carrier_changes."""
    from hpcbench.node.nics import NET_CLASS, parse_int

    values = _counters(
        os.path.join(root, NET_CLASS, name, "statistics"), ETH_ERROR_COUNTERS + ETH_OTHER_COUNTERS
    )
    changes = parse_int(read_text(os.path.join(root, NET_CLASS, name, "carrier_changes")))
    if changes is not None:
        values["carrier_changes"] = changes
    return values
