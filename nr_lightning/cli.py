"""One command line: ``nrl <verb> [key=value ...]`` (console script) = ``python -m nr_lightning <verb> ...``.

Each verb runs its module exactly as ``python -m <module>`` does (same arguments, same ``--help``, same
``error:`` lines and exit codes); the documented ``python -m nr_lightning.train ...`` forms keep working.
Imports nothing heavy: ``train`` must install its preemption handler before torch is imported.
"""

from __future__ import annotations

import runpy
import sys

__all__ = ["VERBS", "main"]

# verb -> (module run as __main__, one line)
VERBS: dict[str, tuple[str, str]] = {
    "train": ("nr_lightning.training.train", "train one run: method=neutral lang=fr trainer.max_steps=50"),
    "evaluate": ("nr_lightning.evaluation.cli", "evaluate a run or a backbone: run=runs/<name> tasks=[...]"),
    "export": ("nr_lightning.extension.export", "export a run for other tools: run=runs/<name> out=DIR format=auto"),
    "report": ("nr_lightning.evaluation.report", "table + trade-off plot of runs: runs/*"),
    "sweep": ("nr_lightning.sweeps.sweep", "run a sweep file: experiments/paper/<table>.yaml scale=cpu"),
    "sequence": ("nr_lightning.continual.sequence", "add languages one after another: stages=[fr,de]"),
    "prep": ("data_prep", "CommonCrawl WARC/WET/JSONL -> training shards: input=... lang=fr output=DIR"),
    "base": ("nr_lightning.training.english_base", "build the English base backbone once (make backbone-en)"),
    "reproduction": ("nr_lightning.evaluation.reproduction", "the reproduction's table and figure from archived runs"),
}


def usage() -> str:
    lines = ["usage: nrl <verb> [arguments]   (= python -m nr_lightning <verb> ...; nrl <verb> --help for its keys)",
             "verbs:"]
    lines += [f"  {verb:<13}{doc}" for verb, (_, doc) in VERBS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        print(f"error: unknown verb {verb!r}; valid verbs: {', '.join(VERBS)} (nrl --help)", file=sys.stderr)
        sys.exit(2)
    module = VERBS[verb][0]
    sys.argv = [f"nrl {verb}", *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
