"""The burn probe: sustained GEMM with bit-for-bit output checks, stability, telemetry and host load."""
