"""`nrl <verb>` / `python -m nr_lightning <verb>`: one entry point for every command, `--help` with the keys."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from nr_lightning.cli import VERBS
from nr_lightning.keyvalue import key_docs, keys_help, parse

ROOT = Path(__file__).resolve().parents[1]


def _nrl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nr_lightning", *args], cwd=ROOT, capture_output=True, text=True)


def test_every_verb_has_a_module_and_the_console_script_is_declared():
    assert set(VERBS) >= {"train", "evaluate", "export", "report", "sweep", "sequence", "prep", "base",
                          "reproduction"}
    for module, _ in VERBS.values():
        assert importlib.util.find_spec(module) is not None, module
    assert '\nnrl = "nr_lightning.cli:main"' in (ROOT / "pyproject.toml").read_text()  # [project.scripts]


def test_help_lists_the_verbs_and_a_verb_lists_its_keys_with_their_docs():
    top = _nrl("--help")
    assert top.returncode == 0 and all(verb in top.stdout for verb in VERBS)
    export = _nrl("export", "--help")
    assert export.returncode == 0
    assert "format=auto" in export.stdout and "auto | peft | hf | extension" in export.stdout


def test_unknown_verb_and_bad_argument_are_one_error_line():
    bad = _nrl("trian")
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: unknown verb 'trian'")
    missing = _nrl("export", "run=x")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "out=DIR" in missing.stderr


def test_the_shared_parser_names_the_valid_keys():
    from nr_lightning.errors import ConfigError
    from nr_lightning.extension.export import ExportArgs

    assert parse(ExportArgs, ["run=a", "out=b"], example="").out == "b"
    with pytest.raises(ConfigError, match="valid keys: run, out, format"):
        parse(ExportArgs, ["rnu=a"], example="run=x")
    with pytest.raises(ConfigError, match="not key=value"):
        parse(ExportArgs, ["run"], example="run=x")
    from nr_lightning.config import RunConfig

    docs = {k: doc for k, _, doc in key_docs(RunConfig)}
    assert docs["data.p"].startswith("Probability") and "fraction" in docs["method.budget"]
    assert "data.new.heldout" in keys_help(RunConfig)
