"""gpu_services: the GPU node's own services (persistenced, fabric manager, MIG, clocks, modules)."""
