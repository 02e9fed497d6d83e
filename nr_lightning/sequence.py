"""`python -m nr_lightning.sequence`: the documented name of `python -m nr_lightning.continual.sequence` (a thin alias)."""

if __name__ == "__main__":
    import runpy

    runpy.run_module("nr_lightning.continual.sequence", run_name="__main__", alter_sys=True)
else:
    from .continual.sequence import main  # noqa: F401  (`from nr_lightning.sequence import main` keeps working)
