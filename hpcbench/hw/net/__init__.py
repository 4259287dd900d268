"""What the network probes (network_ports, network_topology, network_rdma, network_tcp,
network_pairs) share, below them: a probe never imports another probe.

counters (the error counters and their readers), reader (the ports at the start of a run and
their counter reads) and health (pure decisions on them); flaps (link flaps in the kernel log);
topology (GPU <-> NIC PCIe levels, GPUDirect RDMA); perftest and iperf (argv lists and parsers
of the tools' output); procs (server and client processes); rdma (one perftest run between two
ports). The sysfs readers themselves are hpcbench.node.nics and hpcbench.node.pci (node layer).
"""
