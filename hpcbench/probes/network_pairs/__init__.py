"""network_pairs: node pairs under torchrun or srun (one rank per node): every node meets others in
rounds, both directions per pair; the node or link that is slow in every pair it is in is named.

probe.py: the probe; pairs.py: the rounds and the analysis (pure); run.py: one node's part under a
launch. iperf3 and the server/client processes are hpcbench.hw.net.
"""
