"""Multiple-choice task registry, loaders and prompt templates.

Every task is normalised to a list of items ``{"id", "question", "choices", "label"}`` (+
``"passage"`` for Belebele, ``"subject"`` for MMLU): the format of the shipped fixtures
(``nr_lightning/evaluation/data/benchmarks``, see its ``SOURCES.md``).
Sources are either a local JSONL in that format or a Hugging Face dataset (name, config, split),
converted by a per-source function; the registry defaults to the fixture when it exists (offline),
otherwise to the Hugging Face dataset.

Prompts are lm-evaluation-harness-style *cloze* prompts (OLMES "CF" formulation): the answer text
itself is the continuation, ``" " + choice``, scored after the prompt. The keywords stay English
("Question:", "Answer:", "Passage:") in French and German too, as in lm-eval's Okapi tasks
(``arc_fr`` etc.), so that only the content language changes across languages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .fixtures import BENCHMARKS as FIXTURE_DIR

FAMILIES = ("arc_challenge", "arc_easy", "hellaswag", "mmlu", "csqa", "belebele")
LANGS = ("en", "fr", "de")
NORMALIZATIONS = ("none", "per_token", "per_char", "pmi")
UNCONDITIONAL_PROMPT = "Answer:"  # OLMES's unconditional prompt for PMI


@dataclass(frozen=True)
class HFSource:
    """A Hugging Face dataset split plus the function mapping its rows to our item format."""

    path: str
    name: str | None
    split: str
    fewshot_split: str | None
    convert: str  # key of _CONVERTERS


@dataclass(frozen=True)
class TaskSpec:
    """A registry entry: prompt family, language, OLMES defaults and where the data lives."""

    name: str
    family: str
    lang: str
    shots: int
    normalization: str
    hf: HFSource | None
    fixture: Path | None = None

    def default_source(self) -> str:
        """Fixture path if present (offline), else ``hf:<dataset>``."""
        if self.fixture is not None and self.fixture.is_file():
            return str(self.fixture)
        if self.hf is None:
            raise FileNotFoundError(f"task {self.name}: no fixture at {self.fixture} and no Hugging Face source")
        return f"hf:{self.hf.path}"


@dataclass
class Task:
    """Loaded task: items to evaluate and the few-shot pool.

    ``fewshot_same_split`` is True when the pool is the evaluated file itself (single-split
    fixtures); the scored item is then excluded from its own prompt.
    """

    spec: TaskSpec
    items: list[dict]
    fewshot_pool: list[dict] = field(default_factory=list)
    fewshot_same_split: bool = True
    source: str = ""


# --------------------------------------------------------------------------- converters (HF rows)

def _preprocess_hellaswag(text: str) -> str:
    """lm-eval's HellaSwag cleaning (WikiHow bracket artefacts)."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def _conv_ai2_arc(row: dict, i: int) -> dict:
    labels = list(row["choices"]["label"])
    key = str(row["answerKey"])
    if key not in labels:  # a few ARC items use "1".."4" keys
        key = {"1": "A", "2": "B", "3": "C", "4": "D", "5": "E"}.get(key, key)
    return {"id": row.get("id", str(i)), "question": row["question"], "choices": list(row["choices"]["text"]),
            "label": labels.index(key)}


def _conv_okapi(row: dict, i: int) -> dict:
    opts = [row.get(f"option_{c}") for c in "abcde"]
    item = {"id": row.get("id", str(i)), "question": row["instruction"], "choices": [o for o in opts if o],
            "label": "ABCDE".index(row["answer"].strip())}
    if "/" in item["id"]:
        item["subject"] = item["id"].split("/")[0]
    return item


def _conv_okapi_hellaswag(row: dict, i: int) -> dict:
    ctx = row["ctx_a"] + " " + row["ctx_b"].capitalize()
    return {"id": str(row.get("ind", i)), "question": _preprocess_hellaswag(row["activity_label"] + ": " + ctx),
            "choices": [_preprocess_hellaswag(e) for e in row["endings"]], "label": int(str(row["label"]).strip())}


def _conv_cais_mmlu(row: dict, i: int) -> dict:
    return {"id": f"{row['subject']}/{i}", "subject": row["subject"], "question": row["question"],
            "choices": list(row["choices"]), "label": int(row["answer"])}


def _conv_csqa(row: dict, i: int) -> dict:
    labels = list(row["choices"]["label"])
    return {"id": row.get("id", str(i)), "question": row["question"], "choices": list(row["choices"]["text"]),
            "label": labels.index(row["answerKey"])}


def _conv_belebele(row: dict, i: int) -> dict:
    return {"id": f"{row.get('link', '')}#{row.get('question_number', i)}", "passage": row["flores_passage"],
            "question": row["question"], "choices": [row[f"mc_answer{k}"] for k in range(1, 5)],
            "label": int(row["correct_answer_num"]) - 1}


_CONVERTERS: dict[str, Callable[[dict, int], dict]] = {
    "ai2_arc": _conv_ai2_arc, "okapi": _conv_okapi, "okapi_hellaswag": _conv_okapi_hellaswag,
    "hellaswag": _conv_okapi_hellaswag, "cais_mmlu": _conv_cais_mmlu, "csqa": _conv_csqa, "belebele": _conv_belebele,
}

# --------------------------------------------------------------------------- registry

_HF: dict[tuple[str, str], HFSource] = {
    ("arc_challenge", "en"): HFSource("allenai/ai2_arc", "ARC-Challenge", "test", "train", "ai2_arc"),
    ("arc_challenge", "fr"): HFSource("alexandrainst/m_arc", "fr", "test", "train", "okapi"),
    ("arc_challenge", "de"): HFSource("alexandrainst/m_arc", "de", "test", "train", "okapi"),
    # Okapi's ARC-Easy fr/de are not on the hub (m_arc is ARC-Challenge only): fixture-only
    ("arc_easy", "en"): HFSource("allenai/ai2_arc", "ARC-Easy", "test", "train", "ai2_arc"),
    ("hellaswag", "en"): HFSource("Rowan/hellaswag", None, "validation", "train", "hellaswag"),
    ("hellaswag", "fr"): HFSource("alexandrainst/m_hellaswag", "fr", "val", None, "okapi_hellaswag"),
    ("hellaswag", "de"): HFSource("alexandrainst/m_hellaswag", "de", "val", None, "okapi_hellaswag"),
    ("mmlu", "en"): HFSource("cais/mmlu", "all", "test", "dev", "cais_mmlu"),
    ("mmlu", "fr"): HFSource("alexandrainst/m_mmlu", "fr", "test", "train", "okapi"),
    ("mmlu", "de"): HFSource("alexandrainst/m_mmlu", "de", "test", "train", "okapi"),
    ("csqa", "en"): HFSource("tau/commonsense_qa", None, "validation", "train", "csqa"),
    ("csqa", "fr"): HFSource("yusuke1997/mCSQA", "fr", "validation", "train", "csqa"),
    ("csqa", "de"): HFSource("yusuke1997/mCSQA", "de", "validation", "train", "csqa"),
    ("belebele", "en"): HFSource("facebook/belebele", "eng_Latn", "test", None, "belebele"),
    ("belebele", "fr"): HFSource("facebook/belebele", "fra_Latn", "test", None, "belebele"),
    ("belebele", "de"): HFSource("facebook/belebele", "deu_Latn", "test", None, "belebele"),
}
# OLMES shots and normalisation (Gu et al. 2024): PMI for ARC-Challenge and CSQA, per-character
# otherwise (ARC-Easy included).
_DEFAULTS = {"arc_challenge": (5, "pmi"), "arc_easy": (5, "per_char"), "hellaswag": (0, "per_char"),
             "mmlu": (5, "per_char"), "csqa": (5, "pmi"), "belebele": (0, "per_char")}
# `<task>_more`: 500 later items of the same source (see data/SOURCES.md), a task of its own rather than
# appended to `<task>`, so the 20-item tasks, and every score already measured on them, stay as they are.
# Fixture-only: the slice has no Hugging Face equivalent.
MORE = (*[("arc_challenge", lang) for lang in LANGS], *[("mmlu", lang) for lang in LANGS],
        ("csqa", "en"), ("belebele", "en"))


def _spec(fam: str, lang: str, variant: str = "") -> TaskSpec:
    name = f"{fam}_{lang}{variant}"
    return TaskSpec(name=name, family=fam, lang=lang, shots=_DEFAULTS[fam][0], normalization=_DEFAULTS[fam][1],
                    hf=None if variant else _HF.get((fam, lang)), fixture=FIXTURE_DIR / f"{name}.jsonl")


TASKS: dict[str, TaskSpec] = {
    **{f"{fam}_{lang}": _spec(fam, lang) for fam in FAMILIES for lang in LANGS},
    **{f"{fam}_{lang}_more": _spec(fam, lang, "_more") for fam, lang in MORE},
}
_NAME = re.compile(rf"^(?P<family>{'|'.join(FAMILIES)})_(?P<lang>{'|'.join(LANGS)})(?P<variant>_more)?$")

# --------------------------------------------------------------------------- loading


def validate_item(item: dict, where: str = "") -> dict:
    """Check one item has the fixture format; raise ValueError naming ``where`` otherwise."""
    for key, typ in (("question", str), ("choices", list), ("label", int)):
        if not isinstance(item.get(key), typ):
            raise ValueError(f"{where}: field {key!r} missing or not {typ.__name__}")
    if len(item["choices"]) < 2 or not all(isinstance(c, str) for c in item["choices"]):
        raise ValueError(f"{where}: 'choices' must be a list of >= 2 strings")
    if not 0 <= item["label"] < len(item["choices"]):
        raise ValueError(f"{where}: label {item['label']} out of range for {len(item['choices'])} choices")
    item.setdefault("id", where)
    return item


def load_jsonl(path: str | Path) -> list[dict]:
    """Items of a fixture-format JSONL file (every non-blank line, validated)."""
    path = Path(path)
    items = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    item = json.loads(line)
                except ValueError as e:
                    raise ValueError(f"{path}:{lineno}: corrupt JSON line ({e.msg})") from None
                if not isinstance(item, dict):
                    raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(item).__name__}")
                items.append(validate_item(item, f"{path.name}:{lineno}"))
    return items


def load_hf(source: HFSource, split: str | None = None) -> list[dict]:
    """Items of a Hugging Face dataset split (needs the hub or a local datasets cache)."""
    from datasets import load_dataset

    ds = load_dataset(source.path, source.name, split=split or source.split)
    conv = _CONVERTERS[source.convert]
    return [validate_item(conv(dict(row), i), f"{source.path}:{i}") for i, row in enumerate(ds)]


def parse_task_name(stem: str) -> tuple[str, str]:
    """(family, language) of a task file name: ``mmlu_fr_more`` -> ("mmlu", "fr"), ``arc_easy_de`` ->
    ("arc_easy", "de"). Other names get family ``generic`` and the last ``en``/``fr``/``de`` word of the
    name as their language (English when there is none)."""
    m = _NAME.match(stem)
    if m:
        return m["family"], m["lang"]
    fam = next((f for f in sorted(FAMILIES, key=len, reverse=True) if stem.startswith(f + "_")), "generic")
    langs = [w for w in stem.split("_") if w in LANGS]
    return fam, langs[-1] if langs else "en"


def load_task(task: str | Path, *, source: str | Path | None = None, limit: int | None = None) -> Task:
    """Load a registry task (``"mmlu_de"``) or a fixture-format JSONL path.

    ``source`` overrides the registry default: a JSONL path, or ``"hf"`` for the registry's Hugging
    Face dataset. With a JSONL source the few-shot pool is the same file (the scored item is
    excluded when prompts are built); with Hugging Face it is the task's train/dev split.
    """
    name = str(task)
    if name in TASKS:
        spec = TASKS[name]
    elif name.endswith(".jsonl") or Path(name).is_file():
        stem = Path(name).stem
        fam, lang = parse_task_name(stem)
        shots, norm = _DEFAULTS.get(fam, (0, "per_char"))
        spec = TaskSpec(name=stem, family=fam, lang=lang, shots=shots, normalization=norm,
                        hf=_HF.get((fam, lang)), fixture=Path(name))
    else:
        raise KeyError(f"unknown task {name!r}; registry: {', '.join(sorted(TASKS))} (or a .jsonl path)")
    src = str(source) if source is not None else spec.default_source()
    if src == "hf" or src.startswith("hf:"):
        if spec.hf is None:
            raise ValueError(f"task {spec.name} has no Hugging Face source")
        items = load_hf(spec.hf)
        if spec.hf.fewshot_split and spec.shots:
            pool, same = load_hf(spec.hf, spec.hf.fewshot_split), False
        else:
            pool, same = items, True
    else:
        items = load_jsonl(src)
        pool, same = items, True
    # the few-shot pool keeps every item of the file even when only the first `limit` are scored
    return Task(spec=spec, items=items[:limit] if limit is not None else items, fewshot_pool=pool,
                fewshot_same_split=same, source=src)


# --------------------------------------------------------------------------- prompts


def item_prompt(item: dict, family: str) -> str:
    """The text the answer continues (no trailing space; the continuation is ``" " + choice``)."""
    if family == "hellaswag":
        return item["question"]
    if family == "belebele" or "passage" in item:
        return f"Passage: {item['passage']}\nQuestion: {item['question'].strip()}\nAnswer:"
    return f"Question: {item['question'].strip()}\nAnswer:"


def description(family: str, item: dict) -> str:
    """Task header: MMLU's subject line (lm-eval wording), empty otherwise."""
    if family == "mmlu" and item.get("subject"):
        return f"The following are multiple choice questions (with answers) about {item['subject'].replace('_', ' ')}.\n\n"
    return ""


def build_context(task: Task, index: int, shots: int, seed: int = 1234) -> str:
    """Few-shot prompt for item ``index``: description + ``shots`` solved examples + the question.

    Examples come from the task's train/dev pool when it has one; otherwise (single-split fixture
    files) from the same file **excluding the scored item** (matched by identity and id). They are
    drawn with ``random.Random(f"{seed}:{index}")``, so every item has its own reproducible set; for
    MMLU, examples of the same subject are preferred when enough exist.
    """
    import random

    item = task.items[index]
    fam = task.spec.family
    parts = []
    if shots > 0:
        pool = task.fewshot_pool
        if task.fewshot_same_split:
            pool = [x for x in pool if x is not item and x.get("id") != item.get("id")]
        if fam == "mmlu" and item.get("subject"):
            same = [x for x in pool if x.get("subject") == item["subject"]]
            if len(same) >= shots:
                pool = same
        if len(pool) < shots:
            raise ValueError(f"task {task.spec.name}: {shots} shots requested, only {len(pool)} examples available")
        rng = random.Random(f"{seed}:{index}")
        for ex in rng.sample(pool, shots):
            parts.append(f"{item_prompt(ex, fam)} {ex['choices'][ex['label']]}")
    parts.append(item_prompt(item, fam))
    return description(fam, item) + "\n\n".join(parts)
