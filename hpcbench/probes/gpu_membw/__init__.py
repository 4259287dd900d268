"""gpu_membw: device-memory copy and triad bandwidth of one GPU (probe.py), NVML peak beside it."""
