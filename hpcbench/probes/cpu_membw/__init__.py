"""cpu_membw: STREAM copy/scale/add/triad on the CPU (probe.py: the probe, its kernels and timing)."""
