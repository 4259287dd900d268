"""Helpers several probes share, below the probes and above the node facts.

torch_device (the device a GPU probe runs on, dtypes, timing loops, cache flush), cuda_only
(the pieces that need a CUDA device), telemetry (NVML sampling during a run), throttle (throttle
seconds from NVML's counter or runs of samples), gpu_counters and counter_watch (a GPU's error
counters and XIDs around a stress test), kernel_log (the kernel log's text and line times), xid
(NVIDIA XIDs in it, one log source per run), determinism (the environment of deterministic
cuBLAS), placement (which CPUs feed which GPU), driver_check (driver against torch's CUDA),
gpu_probe (the GPU probes' opening) and net/ (what the network probes share: port health,
GPU<->NIC topology, perftest and iperf3, server and client processes). Nothing here imports a probe.
"""
