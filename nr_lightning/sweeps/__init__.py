"""Paper sweeps: the sweep spec, the local runner, SLURM job arrays and the sweep CLI (experiments/paper/README.md)."""
