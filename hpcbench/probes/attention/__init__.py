"""attention: scaled-dot-product attention throughput, forward and forward+backward.

probe.py: the probe; calc.py: pure helpers (cases, FlashAttention's FLOP count, metric names,
the tolerance against the math backend).
"""
