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


def test_environment_figures_without_python_keep_the_older_names() -> None:
    env = environment_figures(torch.device("cpu"), python=False)
    assert "env_python" not in env and "env_triton" in env
    assert "env_python" in environment_figures(torch.device("cpu"))


def test_claim_device_refuses_unknown_profiles_and_full_without_cuda() -> None:
    from replication.claims.common import claim_device

    known = {"smoke": 1, "full": 2}
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        claim_device("huge", known)
    assert claim_device("smoke", known).type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="needs a CUDA device"):
            claim_device("full", known)


class _TinyLM(torch.nn.Module):
    """A bigram model with the transformers call shape (input_ids, labels -> .loss)."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(vocab, vocab)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> object:
        logits = self.emb(input_ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels[:, 1:].flatten())
        return type("Out", (), {"loss": loss})()


def test_train_loop_matches_a_hand_written_loop_and_eval_loss_is_the_batch_mean() -> None:
    from replication.claims.common import eval_loss, train_loop

    vocab, steps = 11, 5
    gen = torch.Generator().manual_seed(3)
    data = [torch.randint(0, vocab, (2, 8), generator=gen) for _ in range(steps)]
    seen: list[int] = []

    def run(loop: bool) -> tuple[torch.nn.Module, float]:
        model = _TinyLM(vocab)
        opt = torch.optim.AdamW(model.parameters(), lr=0.1)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(2, steps))
        if loop:
            last, seconds = train_loop(
                model, opt, sched, iter(data), steps, torch.device("cpu"), 0.5,
                timed_from=2, before_step=seen.append,
            )  # fmt: skip
            assert seconds >= 0
            return model, float(last)
        for ids in data:
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        return model, float(loss.detach())

    (a, last_a), (b, last_b) = run(True), run(False)
    assert seen == list(range(steps))
    assert last_a == last_b and torch.equal(a.emb.weight, b.emb.weight)
    assert not torch.equal(a.emb.weight, _TinyLM(vocab).emb.weight)  # it did train
    a.eval()
    by_hand = sum(float(a(input_ids=x, labels=x).loss.detach()) for x in data) / len(data)
    assert eval_loss(a, data, torch.device("cpu")) == pytest.approx(by_hand, rel=1e-6)
    assert a.training  # left in training mode


def test_random_llama_is_built_in_the_dtype_and_repeats_by_seed() -> None:
    from replication.claims.common import large_llama_config, random_llama

    shape = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        vocab_size=50,
    )
    config = large_llama_config(**shape, max_position_embeddings=64)
    assert config.tie_word_embeddings is False and config.use_cache is False
    default = torch.get_default_dtype()
    a = random_llama(config, torch.device("cpu"), torch.bfloat16, seed=4)
    b = random_llama(config, torch.device("cpu"), torch.bfloat16, seed=4)
    c = random_llama(config, torch.device("cpu"), torch.bfloat16, seed=5)
    assert torch.get_default_dtype() == default
    assert {p.dtype for p in a.parameters()} == {torch.bfloat16}
    wa, wb, wc = (m.model.layers[0].mlp.up_proj.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
