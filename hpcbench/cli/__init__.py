"""The front: argument parsing into a typed request, dispatch, one run, Slurm health checks."""
