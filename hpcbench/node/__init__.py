"""What this node is: the one seam to NVML, PCI and network sysfs readers, the typed inventory and its
collector.
"""
