"""gemm: matrix-multiply throughput per dtype, shape and implementation.

probe.py: the probe (devices, implementations, timing, verification); calc.py: pure helpers
(shapes, sweeps, FLOP counting, tolerances of the float64 check).
"""
