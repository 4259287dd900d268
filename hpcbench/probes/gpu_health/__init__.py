"""gpu_health: ECC, row remapping, XIDs, throttling, power cap, NVLink, GPU count, versions.

probe.py: the probe (node-wide and per-GPU items); read.py: each item read through NVML.
"""
