"""network_ports: each RDMA port's and physical Ethernet interface's health (link, rate, MTU, error
counters read twice), and on the node the active RDMA ports.

probe.py: the probe and its parameters. The sysfs readers are hpcbench.node.nics (node layer); the
counter reads and decisions are hpcbench.hw.net.reader and hpcbench.hw.net.health, shared with
the probes that load the rails.
"""
