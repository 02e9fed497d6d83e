"""Multiple choice: normalisations by hand, fixture loaders, prompts, end-to-end on a tiny model."""

from __future__ import annotations

import json

import pytest

from helpers import toy_model
from nr_lightning.evaluation import TASKS, load_jsonl, load_task, loglikelihoods, multiple_choice
from nr_lightning.evaluation.tasks import build_context, parse_task_name

TOY_CONTEXT = "Question: Q?\nAnswer:"


@pytest.fixture
def toy_jsonl(tmp_path):
    path = tmp_path / "toy_en.jsonl"
    path.write_text(json.dumps({"id": "t1", "question": "Q?", "choices": ["aa", "b"], "label": 0}) + "\n")
    return path


def test_toy_loglikelihoods_by_hand(toy_model, char_tokenizer, toy_expected):
    got = loglikelihoods(toy_model, char_tokenizer, [(TOY_CONTEXT, " aa"), (TOY_CONTEXT, " b"),
                                                     ("Answer:", " aa"), ("Answer:", " b")])
    e = toy_expected
    assert [n for _, n in got] == [3, 2, 3, 2]
    for (lp, _), want in zip(got, [e["L_A"], e["L_B"], e["U_A"], e["U_B"]]):
        assert lp == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("norm,score_a,score_b,pred", [
    ("none", lambda e: e["L_A"], lambda e: e["L_B"], 1),
    ("per_token", lambda e: e["L_A"] / 3, lambda e: e["L_B"] / 2, 1),  # " aa" = 3 tokens, " b" = 2
    ("per_char", lambda e: e["L_A"] / 2, lambda e: e["L_B"] / 1, 0),  # len("aa") = 2, len("b") = 1
    ("pmi", lambda e: e["L_A"] - e["U_A"], lambda e: e["L_B"] - e["U_B"], 1),
])
def test_normalizations_by_hand(toy_model, char_tokenizer, toy_expected, toy_jsonl, norm, score_a, score_b, pred):
    a, b = score_a(toy_expected), score_b(toy_expected)
    assert (0 if a > b else 1) == pred  # the hand computation itself
    r = multiple_choice(toy_model, char_tokenizer, toy_jsonl, shots=0, normalization=norm, return_items=True)
    item = r["items"][0]
    assert item["context"] == TOY_CONTEXT
    assert item["pred"] == pred and r["acc_norm"] == float(pred == 0) and r["n"] == 1
    assert r["acc"] == 0.0  # unnormalised picks "b"
    assert item["logprobs"] == pytest.approx([toy_expected["L_A"], toy_expected["L_B"]], abs=1e-5)
    if norm == "pmi":
        assert item["unconditional"] == pytest.approx([toy_expected["U_A"], toy_expected["U_B"]], abs=1e-5)


def test_unknown_normalization(toy_model, char_tokenizer, toy_jsonl):
    with pytest.raises(ValueError, match="normalization"):
        multiple_choice(toy_model, char_tokenizer, toy_jsonl, shots=0, normalization="bogus")


def test_fixture_loaders_parse_every_line(fixtures_dir):
    files = sorted((fixtures_dir / "benchmarks").glob("*.jsonl"))
    assert files
    for path in files:
        # split on "\n" only: a few Okapi strings hold U+0085, which str.splitlines treats as a line break
        lines = [line for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
        items = load_jsonl(path)
        assert len(items) == len(lines) and [it["id"] for it in items] == [json.loads(x)["id"] for x in lines]
        if path.stem.startswith("belebele"):
            assert all(it["passage"] for it in items)
        if path.stem.startswith("mmlu"):
            assert all(it["subject"] for it in items)


def test_registry_defaults_to_fixtures(fixtures_dir):
    assert {"arc_challenge_fr", "mmlu_de", "belebele_en", "csqa_en", "hellaswag_fr"} <= set(TASKS)
    for path in sorted((fixtures_dir / "benchmarks").glob("*.jsonl")):
        task = load_task(path.stem)
        assert task.source == str(path) and task.fewshot_same_split
        assert len(task.items) == len(load_jsonl(path))
    # registry tasks without a fixture fall back to their Hugging Face dataset
    assert TASKS["hellaswag_fr"].default_source() == "hf:alexandrainst/m_hellaswag"
    assert TASKS["belebele_de"].hf.name == "deu_Latn"


def test_arc_easy_is_a_family_of_its_own(fixtures_dir):
    for lang, n in (("en", 997), ("fr", 1000), ("de", 1000)):
        task = load_task(f"arc_easy_{lang}")
        assert (task.spec.family, task.spec.lang, len(task.items)) == ("arc_easy", lang, n)
        assert (task.spec.shots, task.spec.normalization) == (5, "per_char")  # OLMES ARC-Easy
        # loaded by path it is the same family, not the "generic" fallback (0 shots)
        by_path = load_task(fixtures_dir / "benchmarks" / f"arc_easy_{lang}.jsonl")
        assert (by_path.spec.family, by_path.spec.lang, by_path.spec.shots) == ("arc_easy", lang, 5)
    assert TASKS["arc_easy_en"].hf.name == "ARC-Easy" and TASKS["arc_easy_fr"].hf is None


def test_more_files_are_tasks_of_their_own_in_their_language(fixtures_dir):
    more = load_task("mmlu_fr_more")
    assert (more.spec.family, more.spec.lang, len(more.items)) == ("mmlu", "fr", 499)
    by_path = load_task(fixtures_dir / "benchmarks" / "mmlu_fr_more.jsonl")
    assert (by_path.spec.family, by_path.spec.lang) == ("mmlu", "fr")  # the old parser read "more" -> en
    base = load_task("mmlu_fr")
    assert len(base.items) == 20 and not {i["id"] for i in base.items} & {i["id"] for i in more.items}
    assert TASKS["arc_challenge_de_more"].hf is None  # a slice of the source: never the whole hub split
    assert {n for n in TASKS if n.endswith("_more")} == {
        p.stem for p in (fixtures_dir / "benchmarks").glob("*_more.jsonl")}


@pytest.mark.parametrize("stem, expected", [
    ("mmlu_fr_more", ("mmlu", "fr")), ("arc_easy_de", ("arc_easy", "de")), ("arc_challenge_en", ("arc_challenge", "en")),
    ("belebele_en_more", ("belebele", "en")), ("mmlu_de_sample", ("mmlu", "de")), ("my_quiz", ("generic", "en")),
    ("quiz_fr_v2", ("generic", "fr")),
])
def test_parse_task_name(stem, expected):
    assert parse_task_name(stem) == expected


def test_fewshot_prompts_exclude_the_item_and_are_deterministic(fixtures_dir):
    task = load_task("arc_challenge_en", limit=3)
    assert len(task.items) == 3 and len(task.fewshot_pool) == 20  # limit keeps the whole pool
    for i, item in enumerate(task.items):
        ctx = build_context(task, i, 5)
        blocks = ctx.split("\n\n")
        assert len(blocks) == 6 and blocks[-1] == f"Question: {item['question']}\nAnswer:"
        assert f"Question: {item['question']}\n" not in "\n\n".join(blocks[:-1])
        assert ctx == build_context(task, i, 5)
    mmlu = load_task("mmlu_en", limit=1)
    assert build_context(mmlu, 0, 0).startswith(
        "The following are multiple choice questions (with answers) about abstract algebra.\n\nQuestion: ")
    bele = load_task("belebele_en", limit=1)
    assert build_context(bele, 0, 0).startswith("Passage: Make sure your hand")


def test_multiple_choice_end_to_end_tiny(smollm2_tokenizer, fixtures_dir):
    tok = smollm2_tokenizer
    model = toy_model("llama", vocab_size=len(tok))
    for name in ("mmlu_fr", "belebele_en", "csqa_en"):
        r = multiple_choice(model, tok, name, limit=2, batch_size=8, return_items=True)
        assert r["n"] == 2 and 0.0 <= r["acc"] <= 1.0 and 0.0 <= r["acc_norm"] <= 1.0
        assert r["normalization"] == TASKS[name].normalization and r["shots"] == TASKS[name].shots
        assert len(r["items"]) == 2 and all(len(it["logprobs"]) == len(it["n_tokens"]) for it in r["items"])
    # batch size does not change predictions
    a = multiple_choice(model, tok, "arc_challenge_de", limit=1, batch_size=1, return_items=True)
    b = multiple_choice(model, tok, "arc_challenge_de", limit=1, batch_size=16, return_items=True)
    assert [it["preds"] for it in a["items"]] == [it["preds"] for it in b["items"]]


def test_prefix_cache_matches_batched_path(smollm2_tokenizer):
    """Scoring choices from the prompt's KV cache gives the batched path's numbers (HF model)."""
    tok = smollm2_tokenizer
    model = toy_model("llama", vocab_size=len(tok))
    task = load_task("mmlu_en", limit=2)
    kw = dict(limit=2, return_items=True, max_length=300)  # item 0's 5-shot prompt needs truncation
    a = multiple_choice(model, tok, task, prefix_cache=True, **kw)
    b = multiple_choice(model, tok, task, prefix_cache=False, **kw)
    for x, y in zip(a["items"], b["items"]):
        assert x["logprobs"] == pytest.approx(y["logprobs"], abs=1e-3) and x["preds"] == y["preds"]


def test_prefix_cache_through_a_lora_model(smollm2_tokenizer):
    """LoRA runs load as a PEFT model whose forward only takes **kwargs: the KV-cache path must still be
    chosen (it was silently off, 3.5x slower on ARC-Easy) and give the batched path's numbers."""
    import torch

    from nr_lightning import extend
    from nr_lightning.evaluation.scoring import accepts_past_key_values

    tok = smollm2_tokenizer
    model = extend(toy_model("llama", vocab_size=len(tok)), method="lora", budget=0.2)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # B = 0 at init: make the adapter change the scores
            p.data.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    model.eval()
    assert type(model).__name__.startswith("Peft") and accepts_past_key_values(model)
    task = load_task("arc_easy_en", limit=2)
    kw = dict(limit=2, return_items=True, max_length=300)
    a = multiple_choice(model, tok, task, **kw)
    b = multiple_choice(model, tok, task, prefix_cache=False, **kw)
    for x, y in zip(a["items"], b["items"]):
        assert x["logprobs"] == pytest.approx(y["logprobs"], abs=1e-3) and x["preds"] == y["preds"]


def test_progress_lines_on_stderr(smollm2_tokenizer, monkeypatch, capsys):
    """A long task says how far it is (items scored, time left) on stderr; numbers are unchanged."""
    import importlib

    mc = importlib.import_module("nr_lightning.evaluation.multiple_choice")  # the package re-exports the function

    tok = smollm2_tokenizer
    model = toy_model("llama", vocab_size=len(tok))
    quiet = multiple_choice(model, tok, "arc_easy_en", limit=3, max_length=600)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(mc, "PROGRESS_EVERY_S", 0.0)
    loud = multiple_choice(model, tok, "arc_easy_en", limit=3, max_length=600)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"  arc_easy_en: {i}/3 items scored" + line.split("scored", 1)[1] for i, line in
                     zip((1, 2), lines)] and all("s left" in line for line in lines)
    assert loud["acc_norm"] == quiet["acc_norm"]


def test_paired_test_matches_scipy_binomtest():
    """McNemar's exact test = a two-sided binomial test on the discordant items (scipy as the reference)."""
    from scipy.stats import binomtest

    from nr_lightning.evaluation.multiple_choice import paired_test

    sha = {"items_sha256": "x"}
    a = {"correct": "1" * 40 + "0" * 12 + "1" * 3 + "0" * 45, **sha}
    b = {"correct": "1" * 40 + "1" * 12 + "0" * 3 + "0" * 45, **sha}
    r = paired_test(a, b)
    assert (r["only_a"], r["only_b"], r["n"]) == (3, 12, 100) and r["diff"] == pytest.approx(-0.09)
    assert r["p"] == pytest.approx(binomtest(3, 15, 0.5).pvalue, rel=1e-12)
    assert paired_test(a, a)["p"] == 1.0
    assert paired_test(a, {**b, "items_sha256": "y"}) is None and paired_test(a, {"acc": 0.5}) is None
    assert paired_test({**a, "shots": 5}, {**b, "shots": 0}) is None  # scored differently: no pairing


def test_per_item_results_agree_with_the_accuracy(smollm2_tokenizer):
    tok = smollm2_tokenizer
    model = toy_model("llama", vocab_size=len(tok))
    r = multiple_choice(model, tok, "arc_easy_en", limit=6, max_length=600, return_items=True)
    assert len(r["correct"]) == 6 and r["correct"].count("1") / 6 == pytest.approx(r["acc_norm"])
    assert r["correct"] == "".join("1" if it["pred"] == it["label"] else "0" for it in r["items"])
    assert r["items_sha256"] == multiple_choice(model, tok, "arc_easy_en", limit=6, max_length=600)["items_sha256"]
    assert r["items_sha256"] != multiple_choice(model, tok, "arc_easy_en", limit=5, max_length=600)["items_sha256"]
