"""collectives: all-reduce, all-gather, reduce-scatter through torch.distributed.

probe.py: the probe (spawns or joins ranks); rank.py: one rank's process
(``python -m hpcbench.probes.collectives.rank``); calc.py: pure helpers (nccl-tests'
algbw/busbw, sizes, tables). The rendezvous and liveness of the ranks is hpcbench.launch.rendezvous.
"""
