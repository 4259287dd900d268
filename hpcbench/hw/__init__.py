"""Helpers several probes share, below the probes and above the node facts.

torch_device (the device a GPU probe runs on, dtypes, timing loops, cache flush), cuda_only
(the pieces that need a CUDA device), telemetry (NVML sampling during a run), kernel_log (the
kernel log's text and line times), xid (NVIDIA XIDs in it), items (health items: a count with
its detail, or why it was not measured), rendezvous (the ranks of a launch meeting on a
TCPStore; imports torch), ranks (naming them) and net/ (what the network probes
share: port health, GPU<->NIC topology, perftest and iperf3, server and client processes).
Nothing here imports a probe.
"""
