"""Reporters: one module per output format. They only read result records."""
