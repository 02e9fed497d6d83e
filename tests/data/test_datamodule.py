"""MixedLanguageDataModule: mixing, labels, packing, determinism, resume and distributed disjointness."""

from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nr_lightning.data import DataConfig, MixedLanguageDataModule, mixing_decisions
from nr_lightning.data.sources import DataSourceError


def _batches(dm, n, **kw):
    return list(itertools.islice(iter(dm.train_dataloader(**kw)), n))



def _lang_from_ids(ids: torch.Tensor) -> set[str]:
    vals = ids[ids != 0]
    return {("fr", "de", "en")[int(v) // 1000 - 1] for v in vals}


# ------------------------------------------------------------------------------------------------ mixing


@pytest.mark.parametrize("p", [0.0, 0.01, 0.1, 0.5, 1.0])
def test_mixing_decisions_ratio(p):
    n = 50_000
    langs = mixing_decisions(seed=3, p=p, n_learn=1, n_retain=1, start=0, count=n)
    frac = float((langs == 1).mean())
    tol = 4 * np.sqrt(p * (1 - p) / n) + 1e-12
    assert abs(frac - p) <= tol
    # A pure function of (seed, k): any window agrees with the full sequence of decisions.
    assert np.array_equal(mixing_decisions(3, p, 1, 1, 1234, 100), langs[1234:1334])


def test_mixing_balanced_within_groups():
    n = 60_000
    langs = mixing_decisions(seed=0, p=0.1, n_learn=2, n_retain=2, start=0, count=n)
    counts = np.bincount(langs, minlength=4) / n
    assert abs(counts[0] - 0.45) < 0.01 and abs(counts[1] - 0.45) < 0.01
    assert abs(counts[2] - 0.05) < 0.005 and abs(counts[3] - 0.05) < 0.005
    assert not np.array_equal(langs[:1000], mixing_decisions(1, 0.1, 2, 2, 0, 1000))  # the seed matters


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 1.0])
def test_loader_ratio_and_labels(make_dm, p):
    dm = make_dm(p=p, learn=["fr", "de"], retain=["en"], batch_size=8)
    assert dm.languages == ["fr", "de", "en"]
    batches = _batches(dm, 250)  # 2000 sequences
    domain = torch.cat([b["domain"] for b in batches])
    lang = torch.cat([b["lang"] for b in batches])
    ids = torch.cat([b["input_ids"] for b in batches])
    assert ids.shape == (2000, 16) and ids.dtype == torch.long and domain.shape == lang.shape == (2000,)
    frac = (domain == 0).float().mean().item()
    assert abs(frac - p) <= 4 * np.sqrt(p * (1 - p) / 2000) + 1e-12
    if 0 < p < 1:  # learned group balanced
        fr, de = (lang == 0).sum().item(), (lang == 1).sum().item()
        assert abs(fr - de) < 0.1 * (fr + de)
    for row, d, li in zip(ids, domain.tolist(), lang.tolist()):
        name = dm.languages[li]
        assert _lang_from_ids(row) <= {name}  # every non-EOS token comes from that language's file
        assert d == (0 if name == "en" else 1)


# ------------------------------------------------------------------------------------------------ packing



def test_packing_each_language_reproduces_its_stream(make_dm, corpora, data_helpers):
    dm = make_dm(p=0.3, learn=["fr", "de"], retain=["en"], seq_len=13, batch_size=5)
    batches = _batches(dm, 120)
    ids = torch.cat([b["input_ids"] for b in batches])
    lang = torch.cat([b["lang"] for b in batches])
    for li, name in enumerate(dm.languages):
        got = ids[lang == li].reshape(-1).tolist()
        docs = [json.loads(x)["text"] for x in (corpora / name / "train.jsonl").read_text().splitlines()]
        assert len(got) > sum(len(d.split()) + 1 for d in docs) or name == "en"  # fr/de wrap to epoch 2
        assert got == data_helpers.expected_stream(docs, len(got))


def test_packing_real_tokenizer(tmp_path, smollm2_tokenizer, data_helpers):
    texts = ["Le chat dort sur le canapé.", "Un deuxième document, un peu plus long que le premier, avec des accents: "
             "é è à ç ô.", "Drei.", "Dernier document\navec un saut de ligne."]
    data_helpers.write_jsonl(tmp_path / "fr" / "train.jsonl", texts)
    dm = MixedLanguageDataModule(tokenizer=smollm2_tokenizer, corpora_dir=str(tmp_path), p=0.0, retain=[],
                                 seq_len=8, batch_size=2)
    ids = torch.cat([b["input_ids"] for b in _batches(dm, 20)]).reshape(-1).tolist()
    eos = smollm2_tokenizer.eos_token_id
    ref: list[int] = []
    while len(ref) < len(ids):
        for t in texts:
            ref += smollm2_tokenizer(t, add_special_tokens=False)["input_ids"] + [eos]
    assert ids == ref[: len(ids)]
    # and decoding one epoch gives the documents back
    n_epoch = sum(len(smollm2_tokenizer(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts)
    decoded = smollm2_tokenizer.decode(ids[:n_epoch]).split(smollm2_tokenizer.eos_token)
    assert decoded[:-1] == texts


# ------------------------------------------------------------------------------------------------ determinism / resume


def test_deterministic_under_seed(make_dm):
    a = _batches(make_dm(seed=5), 30)
    b = _batches(make_dm(seed=5), 30)
    c = _batches(make_dm(seed=6), 30)
    assert all(torch.equal(x["input_ids"], y["input_ids"]) for x, y in zip(a, b))
    assert any(not torch.equal(x["domain"], y["domain"]) for x, y in zip(a, c))


def _same(a, b):
    return (torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["domain"], b["domain"])
            and torch.equal(a["lang"], b["lang"]))


def test_resume_without_trainer(make_dm):
    dm = make_dm(p=0.4)
    it = iter(dm.train_dataloader())
    for _ in range(7):
        next(it)
    state = dm.state_dict()
    assert state["sequences_consumed"] == 7 * 4
    expected = [next(it) for _ in range(10)]

    dm2 = make_dm(p=0.4)
    dm2.load_state_dict(json.loads(json.dumps(state)))  # survives a JSON / checkpoint round trip
    got = _batches(dm2, 10)
    assert all(_same(a, b) for a, b in zip(expected, got))
    # a second iter() on the same loader continues too (e.g. Lightning starting a new epoch)
    dm3 = make_dm(p=0.4)
    loader = dm3.train_dataloader()
    first = list(itertools.islice(iter(loader), 7))
    again = list(itertools.islice(iter(loader), 10))
    assert all(_same(a, b) for a, b in zip(expected, again)) and len(first) == 7


def test_resume_with_trainer_formula(make_dm):
    full = _batches(make_dm(p=0.3), 40)
    dm = make_dm(p=0.3)
    dm.trainer = SimpleNamespace(global_step=3, accumulate_grad_batches=2, world_size=1, global_rank=0)
    state = dm.state_dict()
    assert state["sequences_consumed"] == 3 * 2 * 4 and state["global_step"] == 3
    dm2 = make_dm(p=0.3)
    dm2.load_state_dict(state)
    trainer = SimpleNamespace(global_step=3, accumulate_grad_batches=2, world_size=1, global_rank=0)
    dm2.trainer = trainer
    it = iter(dm2.train_dataloader())
    got = [next(it) for _ in range(10)]
    assert all(_same(a, b) for a, b in zip(full[6:16], got))
    trainer.global_step = 5  # two more optimizer steps of 2 micro-batches
    assert dm2.state_dict()["sequences_consumed"] == 24 + 16


def test_fingerprint_change_is_refused(make_dm):
    from nr_lightning.data.sources import DataSourceError

    state = make_dm(seed=1).state_dict()
    with pytest.raises(DataSourceError, match="data config changed.*overwrite=true or a new run dir"):
        make_dm(seed=2).load_state_dict(state)


# ------------------------------------------------------------------------------------------------ distributed


def test_ranks_disjoint_and_cover_the_global_stream(make_dm):
    W, n = 3, 12
    glob = torch.cat([b["input_ids"] for b in _batches(make_dm(p=0.5), W * n)])
    seen = set()
    for r in range(W):
        rows = torch.cat([b["input_ids"] for b in _batches(make_dm(p=0.5), n, rank=r, world_size=W)])
        assert torch.equal(rows, glob[r::W][: len(rows)])  # rank r gets global sequences k ≡ r (mod W)
        keys = {tuple(x.tolist()) for x in rows}
        assert not (keys & seen)
        seen |= keys
    assert len(seen) == len(glob)  # (sequences are unique here: the corpora are long and seq_len is odd-sized)


def test_ranks_resume_after_distributed_steps(make_dm):
    W = 2
    ref = [_batches(make_dm(p=0.5), 20, rank=r, world_size=W) for r in range(W)]
    for r in range(W):
        dm = make_dm(p=0.5)
        dm.trainer = SimpleNamespace(global_step=0, accumulate_grad_batches=1, world_size=W, global_rank=r)
        dm.load_state_dict({**dm.state_dict(), "sequences_consumed": 5 * 4 * W})
        got = list(itertools.islice(iter(dm.train_dataloader()), 6))
        assert all(_same(a, b) for a, b in zip(ref[r][5:11], got))


def test_workers_give_the_same_batches(make_dm):
    ref = _batches(make_dm(p=0.5), 9)
    got = _batches(make_dm(p=0.5, num_workers=2), 9)
    assert all(_same(a, b) for a, b in zip(ref, got))


# ------------------------------------------------------------------------------------------------ sources, held-out, config


def test_heldout_sets(make_dm, corpora):
    dm = make_dm()
    hs = dm.heldout_sources()
    assert set(hs) == {"fr", "en", "en_indomain"}
    assert dm.heldout_texts("en")[0] == "pubmed abstract 0"  # 'en' = the other-domain forgetting set
    assert dm.heldout_texts("en_indomain", max_docs=2) == ["en heldout 0", "en heldout 1"]
    assert dm.heldout_texts("fr", max_docs=3) == ["fr heldout 0", "fr heldout 1", "fr heldout 2"]
    assert dm.heldout_texts("de")[-1] == "de heldout 4"  # any prepared language, even if not trained


def test_overrides_new_and_en(make_dm, tmp_path, data_helpers):
    new = data_helpers.write_jsonl(tmp_path / "x" / "web_de.jsonl", data_helpers.make_docs("de", 10))
    held = data_helpers.write_jsonl(tmp_path / "x" / "held_de.jsonl", ["held de"])
    dm = make_dm(new={"path": str(new), "heldout": str(held)}, p=0.0)
    assert dm.train_source("fr") == str(new)
    assert dm.heldout_texts("fr") == ["held de"]
    ids = torch.cat([b["input_ids"] for b in _batches(dm, 5)])
    assert _lang_from_ids(ids) == {"de"}  # the override's tokens, labelled as the learned language


def test_config_structured_and_describe(make_dm, corpora):
    from omegaconf import OmegaConf

    base = OmegaConf.structured(DataConfig)
    cfg = OmegaConf.merge(base, OmegaConf.from_dotlist(["p=0.5", "learn=[de]", "new.path=/x.jsonl", "seq_len=32"]))
    dm = MixedLanguageDataModule(cfg, tokenizer=None, corpora_dir=str(corpora))
    assert dm.config.p == 0.5 and dm.config.learn == ["de"] and dm.config.new.path == "/x.jsonl"
    with pytest.raises(Exception, match="nonexistent"):
        MixedLanguageDataModule({"nonexistent": 1})
    with pytest.raises(ValueError, match=r"data.p"):
        MixedLanguageDataModule(p=1.5)
    d = make_dm(seq_len=32, batch_size=2).describe()
    assert d["tokens_per_batch"] == 64 and d["languages"] == ["fr", "en"] and d["p_retain"] == 0.1
    assert d["heldout_sources"]["en"].endswith("en_pubmed/heldout.jsonl")


def test_missing_training_data_error(tmp_path, digit_tokenizer):
    dm = MixedLanguageDataModule(tokenizer=digit_tokenizer, corpora_dir=str(tmp_path / "nowhere"))
    with pytest.raises(DataSourceError, match=r"'fr'.*nowhere/fr/train.jsonl.*does not exist.*make data"):
        dm.train_dataloader()


def test_empty_training_file_error(make_dm, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DataSourceError, match="holds no documents"):
        make_dm(new={"path": str(empty)}).setup("fit")


def test_resume_many_epochs_later(make_dm):
    """A resumed position many epochs in is computed (offsets wrap modulo each language's epoch); the result
    must equal plain iteration."""
    dm = make_dm(p=0.5, seq_len=24)
    loader = dm.train_dataloader()
    it = iter(loader)
    for _ in range(150):  # 600 sequences, ~14k tokens: many epochs of every language
        next(it)
    assert min(loader.dataset.epochs.values()) >= 3
    expected = [next(it) for _ in range(5)]
    dm2 = make_dm(p=0.5, seq_len=24)
    dm2.load_state_dict(dm.state_dict() | {"sequences_consumed": 150 * 4})
    assert all(_same(a, b) for a, b in zip(expected, _batches(dm2, 5)))


# ------------------------------------------------------------------------------------------ stratified mixing


@pytest.mark.parametrize("p,batch", [(0.1, 10), (0.1, 8), (0.25, 4), (0.5, 6)])
def test_stratified_decisions_have_exactly_round_pb_retained_per_batch(p, batch):
    langs = mixing_decisions(seed=0, p=p, n_learn=1, n_retain=1, start=0, count=batch * 300, stratify=batch)
    per_batch = (langs.reshape(300, batch) == 1).sum(1)
    assert (per_batch == round(p * batch)).all()
    random = mixing_decisions(seed=0, p=p, n_learn=1, n_retain=1, start=0, count=batch * 300)
    assert not ((random.reshape(300, batch) == 1).sum(1) == round(p * batch)).all()  # random mixing varies


def test_stratified_loader_every_rank_every_batch(make_dm):
    W = 2
    for r in range(W):
        dm = make_dm(p=0.25, learn=["fr", "de"], retain=["en"], batch_size=4, mixing="stratified")
        for b in _batches(dm, 40, rank=r, world_size=W):
            assert int((b["domain"] == 0).sum()) == 1
    dm = make_dm(p=0.25, learn=["fr", "de"], retain=["en"], batch_size=4, mixing="stratified")
    langs = torch.cat([b["lang"] for b in _batches(dm, 200)])
    assert abs((langs == 0).float().mean().item() - 0.375) < 0.05  # the learned group stays uniform


def test_stratified_resume_continues_the_same_stream(make_dm):
    ref = _batches(make_dm(p=0.25, batch_size=4, mixing="stratified"), 12)
    dm = make_dm(p=0.25, batch_size=4, mixing="stratified")
    dm.load_state_dict({**dm.state_dict(), "sequences_consumed": 5 * 4})
    again = _batches(dm, 7)
    for a, b in zip(ref[5:], again):
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["domain"], b["domain"])


def test_stratified_with_no_room_for_english_is_refused(make_dm):
    with pytest.raises(ValueError, match="raise data.batch_size"):
        make_dm(p=0.1, batch_size=4, mixing="stratified")


@pytest.mark.parametrize("damage", [b'{"text": "cut off\n', b'{"text": "caf\xe9 latin-1"}\n'])
def test_setup_checks_every_record_of_the_training_files(make_dm, corpora, damage):
    """A damaged record deep in a training file stops the run at setup, naming file and line, instead of
    crashing at the step that reaches it (or never being read in a short run)."""
    path = corpora / "fr" / "train.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:40]) + damage + b"".join(lines[40:]))
    with pytest.raises(DataSourceError, match=r"'fr'.*train.jsonl:41: (corrupt JSON line|not UTF-8)") as e:
        make_dm().setup("fit")
    assert "at at" not in str(e.value)
