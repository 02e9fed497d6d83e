"""Sequential knowledge addition (docs/sequence.md): train stage after stage, measure forgetting.

    python -m nr_lightning.sequence stages=[fr,de] strategy=stack method=neutral backbone=tiny \\
        trainer.max_steps=50 data.p=0.1 run_dir=runs/seq-neutral

Every stage is one `nr_lightning.train` run (its own run dir `stage_k/` with config, checkpoints,
TensorBoard curves and `extension/`), built from the previous stages' results by the chosen strategy.
After every stage the model is rebuilt from disk and evaluated (held-out bits per byte) on every language
seen so far plus English (the `en` forgetting set); the rows form the forgetting matrix, written to
`forgetting.json` / `forgetting.md` and TensorBoard (`tb/`). `sequence.json` lists the stages' extension
folders. Strategies (docs/sequence.md):

  stack      adapter methods: a new extension per stage on top of the frozen earlier ones;
             lora: a fresh LoRA per stage on the backbone with earlier LoRAs merged in (sequential LoRA)
  olora      stack with LoRA plus the O-LoRA penalty olora_lambda * sum |A_new A_prev^T|
  continue   keep training one extension (finetune: sequential full finetuning)
  merge      per-stage extensions trained independently from the backbone, merged after each stage
             (merge=linear|ties|dare|dare_ties|magnitude, merge_density, merge_seed, merge_weights)
  moe        independent per-stage adapters side by side; router=gates (their block gates route) or
             router=learned (softmax router trained router_steps on all seen languages: needs their data)
  joint      after stage k: one extension trained from the backbone on stages 1..k together (upper bound)

`replay=r` (stack/olora/continue) mixes earlier stages' languages into later stages with total probability r.
Sequence keys: stages, strategy, olora_lambda, replay, merge, merge_density, merge_seed, merge_weights,
router, router_steps, baseline_cache (the backbone row is cached in <run_dir>/../.nrl-cache/);
run_dir/name/runs_root name the sequence directory; every other key=value goes to each stage's
`nr_lightning.train` (method=, backbone=, trainer.*, data.p, data.corpora_dir, eval.*, ...).
Languages other than the first retained one come from `data.corpora_dir/<lang>/{train,heldout}.jsonl`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from .. import keyvalue
from ..config import ConfigError, RunConfig, compose, group_choices
from ..io import write_json_atomic
from ..registry import MERGE_METHODS, METHODS, ROUTERS, STRATEGIES, method_class
from ..training.train import earlier_outputs

SEQUENCE_FILE, MATRIX_JSON, MATRIX_MD = "sequence.json", "forgetting.json", "forgetting.md"
BASELINE_ROW = "backbone"


@dataclass
class SequenceConfig:
    """Options of a sequence run (the rest of the command line configures each stage's training run)."""

    stages: list[str] = field(default_factory=lambda: ["fr", "de"])  # languages (domains), in order
    strategy: str = "stack"  # stack | olora | continue | merge | moe | joint
    olora_lambda: float = 0.01  # weight of the O-LoRA orthogonality penalty (small works best)
    replay: float = 0.0  # probability of an earlier stage's language in later stages (fully cooperative)
    merge: str = "linear"  # linear | ties | dare | dare_ties | magnitude
    merge_density: float = 0.5  # TIES/DARE: fraction of task-vector entries kept
    merge_seed: int = 0  # DARE's random drop
    merge_weights: list[float] | None = None  # per-stage weights (default: see nr_lightning.extension.merging)
    router: str = "gates"  # moe: gates | learned
    router_steps: int = 20  # moe with router=learned: training steps of the router (all else frozen)
    baseline_cache: bool = True  # share the backbone row between sequences (<run_dir>/../.nrl-cache/)
    run_dir: str | None = None
    name: str | None = None
    runs_root: str = "runs"


SEQ_KEYS = {f for f in SequenceConfig.__dataclass_fields__}


# ----------------------------------------------------------------------------------------------- config


def parse_args(argv: list[str]) -> tuple[SequenceConfig, list[str]]:
    """Split the command line into the sequence's options and the per-stage training overrides."""

    mine, rest = [], []
    for arg in argv:
        if "=" not in arg:
            raise ConfigError(f"argument {arg!r} is not key=value (e.g. stages=[fr,de] strategy=stack)")
        key = arg.split("=", 1)[0].lstrip("+-")
        (mine if key.split(".")[0] in SEQ_KEYS else rest).append(arg.lstrip("+-"))
    seq = keyvalue.parse(SequenceConfig, mine, example="stages=[fr,de] strategy=stack")
    if seq.strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {seq.strategy!r}; valid choices: {', '.join(STRATEGIES)}")
    if seq.router not in ROUTERS:
        raise ConfigError(f"unknown router {seq.router!r}; valid choices: {', '.join(ROUTERS)}")
    if seq.merge not in MERGE_METHODS:
        raise ConfigError(f"unknown merge {seq.merge!r}; valid choices: {', '.join(MERGE_METHODS)}")
    if not seq.stages or len(set(seq.stages)) != len(seq.stages):
        raise ConfigError(f"stages must be a non-empty list of distinct languages, got {seq.stages}")
    if not 0.0 <= seq.replay < 1.0:
        raise ConfigError(f"replay={seq.replay} must be in [0, 1)")
    from ..config import check_range

    for key, low, high, what in (("olora_lambda", 0, None, "a non-negative penalty weight"),
                                 ("merge_density", 0, 1, "a fraction of entries kept"),
                                 ("router_steps", 1, None, "a number of steps"), ("merge_seed", 0, None, "a seed")):
        check_range(key, getattr(seq, key), low, high, what)
    if seq.merge_weights is not None and any(w < 0 for w in seq.merge_weights):
        raise ConfigError(f"bad value merge_weights={seq.merge_weights}: weights must be >= 0")
    keys = [a.split("=", 1)[0] for a in rest]
    if any(k in ("lang", "data.learn", "data.new") or k.startswith("data.new.") for k in keys):
        raise ConfigError("stage languages come from stages=[...]: drop data.new.*/data.learn/lang= and put "
                          "every language's train.jsonl/heldout.jsonl under data.corpora_dir=DIR/<lang>/")
    return seq, rest


def check_strategy(seq: SequenceConfig, cfg: RunConfig) -> None:
    """Refuse strategy/method pairs that are not defined."""
    m = cfg.method.name
    kind = method_class(m)
    if seq.strategy == "olora" and not kind.orthogonal_stages:
        need = " or ".join(n for n in METHODS if method_class(n).orthogonal_stages)
        raise ConfigError(f"strategy=olora needs method={need} (got {m})")
    if seq.strategy == "stack" and not kind.stackable:
        raise ConfigError(f"strategy=stack needs an adapter method or lora (got {m}); use strategy=continue")
    if seq.strategy == "moe" and not kind.adapter:
        raise ConfigError(f"strategy=moe mixes adapter stages (got method={m}); use strategy=merge for {m}")
    if seq.replay and seq.strategy not in ("stack", "olora", "continue"):
        raise ConfigError(f"replay applies to sequential strategies (stack, olora, continue), not {seq.strategy}")
    if seq.replay + cfg.data.p >= 1.0:
        raise ConfigError(f"replay={seq.replay} + data.p={cfg.data.p} leaves no room for the new language")


def sequence_dir(seq: SequenceConfig, cfg: RunConfig) -> Path:
    if seq.run_dir:
        return Path(seq.run_dir).expanduser()
    name = seq.name or f"seq-{seq.strategy}-{cfg.method.name}-{'-'.join(seq.stages)}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Path(seq.runs_root).expanduser() / name


def stage_data(seq: SequenceConfig, cfg: RunConfig, k: int) -> dict:
    """learn/retain/p/weights of stage k's training mixture (domain 1 = what the trained extension adds)."""
    d = cfg.data
    lang, earlier = seq.stages[k], seq.stages[:k]
    retain = list(d.retain)
    if seq.strategy == "joint":
        return {"learn": seq.stages[:k + 1], "retain": retain, "p": d.p, "weights": {}}
    if not (seq.replay and earlier):
        return {"learn": [lang], "retain": retain, "p": d.p, "weights": {}}
    r = seq.replay
    if seq.strategy == "stack" and method_class(cfg.method.name).adapter:
        # the new stage must stay neutral on what earlier stages hold: their languages are original domain (0)
        weights = {x: d.p / len(retain) for x in retain} | {x: r / len(earlier) for x in earlier}
        return {"learn": [lang], "retain": retain + earlier, "p": d.p + r, "weights": weights}
    weights = {lang: 1.0 - d.p - r} | {x: r / len(earlier) for x in earlier}
    return {"learn": [lang, *earlier], "retain": retain, "p": d.p, "weights": weights}


def _data_args(data: dict) -> list[str]:
    args = [f"data.learn=[{','.join(data['learn'])}]", f"data.retain=[{','.join(data['retain'])}]",
            f"data.p={data['p']}"]
    return args + [f"data.weights.{k}={v}" for k, v in data["weights"].items()]


# ----------------------------------------------------------------------------------------------- models


def _load_backbone(cfg: RunConfig):
    from ..backbone import load_backbone
    from ..training.train import DTYPES

    return load_backbone(cfg.backbone.name, dtype=getattr(torch, DTYPES[cfg.backbone.dtype]), seed=cfg.seed,
                         trust_remote_code=cfg.backbone.trust_remote_code)


def _extend(backbone: nn.Module, cfg: RunConfig) -> nn.Module:
    from ..extension import extend_like

    return extend_like(backbone, cfg.method)


def merge_lora_sequence(backbone: nn.Module, paths: list[Path]) -> tuple[nn.Module, list[dict]]:
    """Apply sequential LoRA stages: load each on the running model and merge it in. Returns the plain
    model and each stage's A matrices (for the O-LoRA penalty)."""
    from ..extension import load_extension
    from ..extension.olora import lora_a_matrices

    a_mats = []
    for p in paths:
        peft_model = load_extension(backbone, p)
        a_mats.append(lora_a_matrices(peft_model))
        backbone = peft_model.merge_and_unload()
        if hasattr(backbone, "nrl_config"):
            del backbone.nrl_config
    return backbone, a_mats


def _train_stage(args: list[str], builder) -> None:
    """One stage (or router) run; a preempted one (SIGUSR1/SIGTERM/SIGINT: checkpoint written) stops the whole
    sequence with exit status 3 instead of going on to a stage that needs this one's weights."""
    from ..training.train import PREEMPTED_EXIT
    from ..training.train import main as train_main

    result = train_main(args, build=builder)
    if result.get("preempted"):
        print(f"[nr-lightning] sequence stopped: {result['run_dir']} was preempted at step {result['global_step']}; "
              f"run the same command again to resume", file=sys.stderr)
        raise SystemExit(PREEMPTED_EXIT)


class Sequence:
    """One sequence run: trains the stages, rebuilds and evaluates the model after each."""

    def __init__(self, seq: SequenceConfig, train_args: list[str]) -> None:
        self.seq, self.train_args = seq, train_args
        self.cfg = compose(train_args)
        check_strategy(seq, self.cfg)
        self.dir = sequence_dir(seq, self.cfg)
        self.ext: list[Path] = []  # stage k's extension folder
        self.columns = [*seq.stages, "en"]
        self._texts: dict[str, list[str]] | None = None

    # ------------------------------------------------------------------ per strategy
    @property
    def sequential_adapters(self) -> bool:
        return self.seq.strategy == "stack" and method_class(self.cfg.method.name).adapter

    def train_model(self, backbone: nn.Module, k: int, cfg: RunConfig) -> nn.Module:
        """The model stage k trains, built on a fresh backbone from the earlier stages' saved extensions."""
        from ..extension import add_stage, load_extension, load_stages

        s = self.seq.strategy
        if k == 0 or s in ("merge", "moe", "joint"):
            return _extend(backbone, cfg)
        if self.sequential_adapters:
            m = cfg.method
            model = load_stages(backbone, self.ext[:k])
            return add_stage(model, budget=m.budget, gate=m.gate, init=m.init, init_divisor=m.init_divisor,
                             placement=m.placement, method=m.name, gate_init=m.gate_init)
        if s in ("stack", "olora"):  # sequential LoRA: earlier LoRAs merged into the backbone, fresh LoRA
            from ..extension.olora import OLoRAPenalty

            base, a_mats = merge_lora_sequence(backbone, self.ext[:k])
            model = _extend(base, cfg)
            if s == "olora" and self.seq.olora_lambda > 0:
                model.nrl_extra_loss = OLoRAPenalty(a_mats, self.seq.olora_lambda)
            return model
        return load_extension(backbone, self.ext[k - 1])  # continue

    def eval_model(self, k: int) -> tuple[nn.Module, object]:
        """The model after stage k, rebuilt from the saved extensions (and merged / routed as the strategy says)."""
        from ..extension import load_extension, load_stages
        from ..extension.merging import merge_stages

        backbone, tok = _load_backbone(self.cfg)
        s, paths = self.seq.strategy, self.ext[:k + 1]
        if self.sequential_adapters or s == "moe":
            model = load_stages(backbone, paths)
            if s == "moe" and self.seq.router == "learned" and k > 0:
                model = self._load_router(model, k)
        elif s in ("stack", "olora"):
            model, _ = merge_lora_sequence(backbone, paths)
        elif s == "merge":
            model = merge_stages(backbone, paths, self.seq.merge, self.seq.merge_weights, self.seq.merge_density,
                                 self.seq.merge_seed)
        else:  # continue, joint
            model = load_extension(backbone, paths[-1])
        return model.eval(), tok

    # ------------------------------------------------------------------ learned MoE router
    def _router_dir(self, k: int) -> Path:
        return self.dir / f"stage_{k}" / "router"

    def _load_router(self, model: nn.Module, k: int) -> nn.Module:
        from safetensors.torch import load_file

        from ..extension import add_router
        from ..extension.arch import _base_model

        add_router(model)
        _base_model(model).load_state_dict(load_file(str(self._router_dir(k) / "router.safetensors")), strict=False)
        return model

    def train_router(self, k: int) -> None:
        """Train a softmax router over stages 0..k (everything else frozen) on all seen languages."""
        from safetensors.torch import save_file

        from ..extension import add_router, load_stages
        from ..extension.arch import _base_model

        out = self._router_dir(k)
        if (out / "router.safetensors").is_file():
            return
        held: dict[str, nn.Module] = {}

        def builder(cfg: RunConfig):
            from ..data import MixedLanguageDataModule

            backbone, tok = _load_backbone(cfg)
            model = add_router(load_stages(backbone, self.ext[:k + 1]))
            held["model"] = model
            return model, tok, MixedLanguageDataModule(cfg.data, tok)

        data = {"learn": self.seq.stages[:k + 1], "retain": list(self.cfg.data.retain), "p": self.cfg.data.p,
                "weights": {}}
        args = [*self.train_args, *_data_args(data), f"run_dir={out}", f"trainer.max_steps={self.seq.router_steps}",
                "method.alpha=0", "method.beta=0", "eval.gate_stats=false"]
        if earlier_outputs(out):  # an interrupted router run: resume it (or restart it when it has no checkpoint)
            args.append("ckpt_path=last")
        _train_stage(args, builder)
        state = {n: t.detach().cpu().contiguous() for n, t in _base_model(held["model"]).state_dict().items()
                 if ".nrl_router." in n}
        save_file(state, str(out / "router.safetensors"))

    # ------------------------------------------------------------------ stages
    def run_stage(self, k: int) -> Path:
        """Train stage k (skipped when its extension already exists: a rerun resumes the sequence)."""
        from ..extension.api import WEIGHTS_FILE

        stage_dir = self.dir / f"stage_{k}"
        ext = stage_dir / "extension"
        if (ext / WEIGHTS_FILE).is_file() and (stage_dir / "metrics.json").is_file():
            print(f"[nr-lightning] stage {k} ({self.seq.stages[k]}) already trained: {ext}", file=sys.stderr)
            return ext
        lang = self.seq.stages[k]
        args = [*self.train_args, *_data_args(stage_data(self.seq, self.cfg, k)), f"run_dir={stage_dir}"]
        if lang in group_choices("lang"):
            args.insert(0, f"lang={lang}")
        if earlier_outputs(stage_dir):  # resume; restarts from scratch when no checkpoint was written yet
            args.append("ckpt_path=last")

        def builder(cfg: RunConfig):
            from ..data import MixedLanguageDataModule

            if cfg.trainer.num_threads:
                torch.set_num_threads(cfg.trainer.num_threads)
            backbone, tok = _load_backbone(cfg)
            return self.train_model(backbone, k, cfg), tok, MixedLanguageDataModule(cfg.data, tok)

        _train_stage(args, builder)
        return ext

    def heldout(self) -> dict[str, list[str]]:
        """Held-out texts of every column: each stage language and `en` (the English forgetting set)."""
        if self._texts is None:
            from ..data import MixedLanguageDataModule

            data = asdict(self.cfg.data) | {"learn": list(self.seq.stages), "weights": {}}
            dm = MixedLanguageDataModule(data, tokenizer=None)
            self._texts = {c: dm.heldout_texts(c, max_docs=self.cfg.eval.max_docs) for c in self.columns}
        return self._texts

    def baseline(self, backbone: nn.Module, tok) -> dict[str, float]:
        """The backbone row. Every sequence on the same backbone and held-out texts has the same one, so it
        is cached per column next to the sequence folder (`../.nrl-cache/`, keyed by backbone, dtype,
        max_length and the texts' hash): a sweep of strategies evaluates the backbone once."""
        if not self.seq.baseline_cache:
            return self.evaluate(backbone, tok, self.columns)
        cache, texts, ev = self.dir.parent / ".nrl-cache", self.heldout(), self.cfg.eval
        out: dict[str, float] = {}
        for c in self.columns:
            key = json.dumps([self.cfg.backbone.name, self.cfg.backbone.dtype, ev.max_length, texts[c]])
            f = cache / f"baseline-{c}-{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"
            if f.is_file():
                out[c] = float(json.loads(f.read_text(encoding="utf-8"))["bpb"])
                continue
            out[c] = self.evaluate(backbone, tok, [c])[c]
            cache.mkdir(parents=True, exist_ok=True)
            write_json_atomic(f, {"column": c, "backbone": self.cfg.backbone.name, "bpb": out[c]}, indent=None)
        return out

    @torch.no_grad()
    def evaluate(self, model: nn.Module, tok, columns: list[str]) -> dict[str, float]:
        from ..evaluation import bits_per_byte

        ev, texts = self.cfg.eval, self.heldout()
        return {c: float(bits_per_byte(model, tok, texts[c], max_length=ev.max_length, batch_size=ev.batch_size))
                for c in columns}

    def run(self) -> dict:
        from torch.utils.tensorboard import SummaryWriter

        self.dir.mkdir(parents=True, exist_ok=True)
        writer = SummaryWriter(log_dir=str(self.dir / "tb"))
        backbone, tok = _load_backbone(self.cfg)
        baseline = self.baseline(backbone.eval(), tok)
        rows: list[dict[str, float]] = []
        for c, v in baseline.items():
            writer.add_scalar(f"sequence/bpb_{c}", v, 0)
        for k, lang in enumerate(self.seq.stages):
            self.ext.append(self.run_stage(k))
            if self.seq.strategy == "moe" and self.seq.router == "learned" and k > 0:
                self.train_router(k)
            model, tok = self.eval_model(k)
            rows.append(self.evaluate(model, tok, [*self.seq.stages[:k + 1], "en"]))
            matrix = forgetting_matrix(self.seq.stages, rows, baseline)
            matrix.update(strategy=self.seq.strategy, method=self.cfg.method.name)
            self.write(matrix, k)
            for c, v in rows[-1].items():
                writer.add_scalar(f"sequence/bpb_{c}", v, k + 1)
            writer.add_text("sequence/forgetting_matrix", matrix_markdown(matrix), k + 1)
            writer.flush()
            print(f"[nr-lightning] after stage {k + 1} ({lang}): "
                  + " ".join(f"{c}={v:.4f}" for c, v in rows[-1].items()), file=sys.stderr)
        writer.close()
        print(matrix_markdown(matrix), file=sys.stderr)
        return {"run_dir": str(self.dir), "matrix": matrix}

    def write(self, matrix: dict, k: int) -> None:
        write_json_atomic(self.dir / MATRIX_JSON, matrix)
        (self.dir / MATRIX_MD).write_text(matrix_markdown(matrix), encoding="utf-8")
        # load_stack reads <dir>/router.safetensors: the router of the newest stage, trained over all stages
        router = self.seq.strategy == "moe" and self.seq.router == "learned" and k > 0
        if router:
            shutil.copyfile(self._router_dir(k) / "router.safetensors", self.dir / "router.safetensors")
        meta = {"format": "nr-lightning-sequence", "strategy": self.seq.strategy, "method": self.cfg.method.name,
                "mode": "stack" if self.sequential_adapters or self.seq.strategy == "moe" else self.seq.strategy,
                "stages": self.seq.stages, "completed": k + 1,
                "extensions": [str(p.relative_to(self.dir)) for p in self.ext],
                "router": router, "sequence": asdict(self.seq), "train_args": self.train_args}
        write_json_atomic(self.dir / SEQUENCE_FILE, meta)


def load_sequence(path: str | Path, after_stage: int | None = None) -> tuple[nn.Module, object]:
    """(model, tokenizer) of a sequence run directory after stage ``after_stage`` (1-based; default: the last
    completed), rebuilt from disk as the run evaluated it, for every strategy."""
    path = Path(path)
    meta = json.loads((path / SEQUENCE_FILE).read_text(encoding="utf-8"))
    opts = {k: v for k, v in meta["sequence"].items() if k in SEQ_KEYS} | {"run_dir": str(path)}
    run = Sequence(SequenceConfig(**opts), list(meta["train_args"]))
    run.ext = [path / e for e in meta["extensions"]]
    k = meta["completed"] if after_stage is None else after_stage
    if not 1 <= k <= meta["completed"]:
        raise ValueError(f"{path}: after_stage={after_stage}, but {meta['completed']} stage(s) completed")
    return run.eval_model(k - 1)


# ----------------------------------------------------------------------------------------------- matrix


def forgetting_matrix(stages: list[str], rows: list[dict[str, float]], baseline: dict[str, float] | None = None
                      ) -> dict:
    """Rows = after stage k, columns = stage languages then `en`; None where a language is not yet seen.

    `forgetting[lang]` = last row minus the row right after lang's own stage (bits per byte; > 0 = forgot);
    `en_drift` = last row's `en` minus the backbone's.
    """
    columns = [*stages, "en"]
    bpb = [[row.get(c) for c in columns] for row in rows]
    out: dict = {"columns": columns, "rows": [f"after {k + 1}: {stages[k]}" for k in range(len(rows))],
                 "stages": list(stages), "bpb": bpb, "baseline": dict(baseline or {})}
    last = rows[-1] if rows else {}
    out["forgetting"] = {s: last[s] - rows[k][s] for k, s in enumerate(stages[:len(rows)])
                         if s in last and s in rows[k]}
    if baseline and "en" in baseline and "en" in last:
        out["en_drift"] = last["en"] - baseline["en"]
    return out


def matrix_markdown(matrix: dict) -> str:
    """The forgetting matrix as a Markdown table (held-out bits per byte, lower is better)."""
    cols = matrix["columns"]
    title = f"Forgetting matrix ({matrix.get('strategy', '?')}, {matrix.get('method', '?')}): bits per byte"
    lines = [f"# {title}", "", "| after stage | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]

    def fmt(v: float | None) -> str:
        return "—" if v is None else f"{v:.4f}"

    if matrix.get("baseline"):
        lines.append(f"| {BASELINE_ROW} | " + " | ".join(fmt(matrix["baseline"].get(c)) for c in cols) + " |")
    for name, row in zip(matrix["rows"], matrix["bpb"]):
        lines.append(f"| {name} | " + " | ".join(fmt(v) for v in row) + " |")
    if matrix.get("forgetting"):
        lines += ["", "Forgetting (final minus right after the stage): "
                  + ", ".join(f"{k} {v:+.4f}" for k, v in matrix["forgetting"].items())]
    if "en_drift" in matrix:
        lines.append(f"English drift vs backbone: {matrix['en_drift']:+.4f}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if keyvalue.help_requested(argv):
        print(__doc__)
        print(keyvalue.keys_help(SequenceConfig, "sequence keys"))
        print("Every other key=value is a training override of each stage (python -m nr_lightning.train --help).")
        return {}
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    seq, rest = parse_args(argv)
    return Sequence(seq, rest).run()


def cli() -> None:
    from ..errors import run_cli

    run_cli(main)


if __name__ == "__main__":
    cli()
