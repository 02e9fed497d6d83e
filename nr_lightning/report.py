"""`python -m nr_lightning.report`: the documented name of `python -m nr_lightning.evaluation.report` (a thin alias)."""

if __name__ == "__main__":
    import runpy

    runpy.run_module("nr_lightning.evaluation.report", run_name="__main__", alter_sys=True)
else:
    from .evaluation.report import main  # noqa: F401  (`from nr_lightning.report import main` keeps working)
