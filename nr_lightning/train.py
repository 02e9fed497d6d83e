"""`python -m nr_lightning.train`: the documented name of `python -m nr_lightning.training.train` (a thin alias)."""

if __name__ == "__main__":
    # First thing, before torch is imported: a requeue signal during the imports must not end the job
    # (nr_lightning/training/preemption.py imports nothing heavy; docs/reliability.md).
    from nr_lightning.training.preemption import install_preemption_handler

    install_preemption_handler()
    import runpy

    runpy.run_module("nr_lightning.training.train", run_name="__main__", alter_sys=True)
else:
    from .training.train import main  # noqa: F401  (`from nr_lightning.train import main` keeps working)
