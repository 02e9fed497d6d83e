"""`python -m nr_lightning.evaluate`: the documented name of `python -m nr_lightning.evaluation.cli` (a thin alias)."""

if __name__ == "__main__":
    import runpy

    runpy.run_module("nr_lightning.evaluation.cli", run_name="__main__", alter_sys=True)
else:
    from .evaluation.cli import main  # noqa: F401  (`from nr_lightning.evaluate import main` keeps working)
