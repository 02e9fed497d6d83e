"""`python -m nr_lightning.sweep`: the documented name of `python -m nr_lightning.sweeps.sweep` (a thin alias)."""

if __name__ == "__main__":
    import runpy

    runpy.run_module("nr_lightning.sweeps.sweep", run_name="__main__", alter_sys=True)
else:
    from .sweeps.sweep import main  # noqa: F401  (`from nr_lightning.sweep import main` keeps working)
