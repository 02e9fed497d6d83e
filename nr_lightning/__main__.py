"""`python -m nr_lightning <verb> ...`: the `nrl` command line (nr_lightning/cli.py)."""

from nr_lightning.cli import main

main()
