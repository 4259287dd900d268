"""The memtest probe: pattern test of GPU (HBM) or host memory, every word written and read back."""
