"""Measure-side helpers shared by claims: the run's environment figures and the LR schedule."""

from __future__ import annotations

import pytest
import torch

from replication.claims.common import environment_figures, warmup_cosine


def test_warmup_then_cosine_to_the_floor() -> None:
    f = warmup_cosine(10, 110, floor=0.1)
    assert f(0) == pytest.approx(0.1)  # first of 10 warm-up steps
    assert f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)  # the cosine starts at the top
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5)  # half way down
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(10, 110))


def test_environment_figures_name_the_device_and_versions() -> None:
    env = environment_figures(torch.device("cpu"))
    assert env["env_device"] == "cpu" and env["env_torch"] == str(torch.__version__)
    assert all(k.startswith("env_") and isinstance(v, str) for k, v in env.items())


def test_corpus_comes_with_its_figures() -> None:
    from replication.claims.common import shakespeare_with_figures

    corpus, figures = shakespeare_with_figures()
    assert figures["data_train_tokens"] == corpus.train.numel() > 1_000_000
    assert figures["data_eval_tokens"] == corpus.eval.numel() > 0
    assert figures["data_vocab_size"] == corpus.vocab_size
    assert figures["data_corpus_sha256"] == corpus.digest and figures["seconds_data"] >= 0
