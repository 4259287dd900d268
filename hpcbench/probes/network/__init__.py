"""network: port health, GPU<->NIC topology, RDMA (perftest) and TCP (iperf3) bandwidth, node pairs.

probe.py: the probe and its parameters; modes.py: each mode's run; health.py, topology.py,
pairs.py: pure decisions; perftest.py, iperf.py: argv lists and output parsers; procs.py: server
and client processes; pairs_run.py: one node's part of the pairs mode under a launch. The
sysfs readers are hpcbench.node.nics and hpcbench.node.pci (node layer, shared with the inventory).
"""
