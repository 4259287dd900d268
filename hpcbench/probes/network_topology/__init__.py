"""network_topology: each GPU's nearest RDMA NIC by PCIe path (``nvidia-smi topo -m`` levels) and
whether GPUDirect RDMA is possible.

probe.py: the probe. The levels, the matrix and the GPUDirect decision are hpcbench.hw.net.topology
(shared with the RDMA probes, which pick each rail's GPU from it).
"""
