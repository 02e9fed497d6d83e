"""`--help` lists every key with its default and one-line doc; `--print-config` prints the resolved config;
`limit=` keeps a quick evaluation quick."""

from __future__ import annotations

from omegaconf import OmegaConf


def test_train_help_lists_keys_with_docs(capsys):
    from nr_lightning.training.train import main

    assert main(["--help"]) == {}
    out = capsys.readouterr().out
    lines = {ln.split("=")[0].strip(): ln for ln in out.splitlines() if ln.startswith("  ") and "=" in ln}
    for key, doc in (("method.budget", "fraction of the backbone's non-embedding parameters"),
                     ("data.p", "Probability that a training sequence comes from the retained group"),
                     ("trainer.loggers", "where curves go"), ("optim.beta1", "AdamW beta1")):
        assert doc in lines[key], lines.get(key)
    assert {"seed", "eval.max_docs", "backbone.name", "trainer.max_steps"} <= set(lines)


def test_print_config_prints_the_resolved_yaml_and_trains_nothing(capsys, tmp_path):
    from nr_lightning.evaluation.cli import parse
    from nr_lightning.extension.export import main as export_main
    from nr_lightning.training.train import main

    result = main(["--print-config", "method=sigmoid", "backbone=tiny", f"run_dir={tmp_path / 'r'}"])
    cfg = OmegaConf.create(capsys.readouterr().out)
    assert cfg.method.name == "sigmoid" and cfg.method.beta == 1.0 and cfg.backbone.name == "tiny"
    assert result["config"]["method"]["name"] == "sigmoid" and not (tmp_path / "r").exists()
    # evaluate: limit also caps the held-out documents unless max_docs is given
    assert parse(["run=x", "limit=5"]).max_docs == 5
    assert parse(["run=x", "limit=5", "max_docs=100"]).max_docs == 100 and parse(["run=x"]).max_docs == 200
    export_main(["--help"])
    assert "format=auto" in capsys.readouterr().out
