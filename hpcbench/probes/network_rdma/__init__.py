"""network_rdma: ib_write_bw and ib_read_lat on an RDMA port (perftest), GPU memory where GPUDirect works.

probe.py: the probe and its parameters. The perftest argv lists and parsers, the server and
client processes and the choice of memory are hpcbench.hw.net (perftest, procs, rdma), shared
with the node pairs over RDMA.
"""
