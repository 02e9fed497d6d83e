"""``python -m data_prep input=... lang=fr output=... [key=value ...]``: WARC/WET/JSONL → training shards."""

from __future__ import annotations

import sys

from data_prep.config import PrepConfig, parse_cli, to_yaml

USAGE = """usage: python -m data_prep input=<paths or globs, comma-separated> lang=<code> output=<dir> [key=value ...]
Examples:
  python -m data_prep input='crawl/*.warc.gz' lang=fr output=data/fr quality.model=.cache/models/quality_fr.bin
  python -m data_prep input='crawl/*.warc.gz' lang=de output=data/de tasks=8 workers=2 format=parquet
  python -m data_prep ... executor=slurm tasks=1000 slurm.partition=cpu slurm.time=04:00:00
Options and defaults:
"""


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE + to_yaml(PrepConfig))
        return
    cfg = parse_cli(PrepConfig, argv, list_keys=("input",))
    from data_prep.pipeline import run

    run(cfg)


if __name__ == "__main__":
    from data_prep.config import ConfigError
    from nr_lightning.errors import USER_ERRORS, run_cli

    run_cli(main, user_errors=(*USER_ERRORS, ConfigError))  # one `error:` line, exit 2; --debug: traceback
