"""network_tcp: TCP bandwidth with iperf3, to a peer's iperf3 server or over loopback as a self-test.

probe.py: the probe. iperf3's argv and JSON parser and the server/client processes are
hpcbench.hw.net (iperf, procs), shared with the node pairs.
"""
