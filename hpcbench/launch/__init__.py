"""Ranks of a launch (torchrun, srun) meeting each other: the launch environment, the rendezvous and
the ranks' own results.
"""
