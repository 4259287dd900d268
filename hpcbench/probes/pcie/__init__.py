"""pcie: host<->GPU bandwidth over PCIe and the link's trained state under load.

probe.py: the probe and its pure orchestration (tested with CPU tensors); cuda.py: the CUDA
copy engine (pinned buffers, streams, events) and the byte-for-byte check of the copies.
"""
