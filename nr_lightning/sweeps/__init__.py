"""Paper sweeps (experiments/paper/README.md): the sweep file grammar (spec.py), the local and SLURM array
runners (runners.py) and the sweep CLI (sweep.py, also `python -m nr_lightning.sweep`)."""
