"""node_health: NHC-style node checks read from the kernel, no load, seconds.

probe.py: the probe; edac.py (DIMM errors), aer.py (PCIe AER), nvme.py (NVMe SMART through
nvme-cli), klog.py (kernel-log errors), system.py (memory, CPUs, NUMA balance, mounts).
"""
