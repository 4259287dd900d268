"""Analysis of result records (reads records only)."""
