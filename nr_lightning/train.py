"""`python -m nr_lightning.train`: the documented name of `python -m nr_lightning.training.train` (a thin alias)."""

if __name__ == "__main__":
    import runpy

    runpy.run_module("nr_lightning.training.train", run_name="__main__", alter_sys=True)
else:
    from .training.train import main  # noqa: F401  (`from nr_lightning.train import main` keeps working)
