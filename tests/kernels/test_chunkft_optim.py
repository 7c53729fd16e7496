"""The ChunkFT drop-in against plain AdamW applied to the slice it updates.

The reference run is independent of the optimizer's machinery: torch autograd forms the whole
gradient of an untouched copy of the model, and the reference AdamW updates, for the chunk the
schedule makes active, only that chunk's slices, with that chunk's own states and step count.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from kernels.chunkft import reference as ref
from kernels.chunkft.optim import ChunkFT, ChunkFTUnsupported, UnchunkedAdamW
from kernels.forge.rules import StepScalars
from kernels.runtime.testing import generator, rel_err

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
HYPER = dict(lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.05)
VOCAB, WIDTH, HIDDEN = 50, 16, 24


class Net(nn.Module):
    """Embedding -> Linear (bias) -> tanh -> LayerNorm -> Linear: every kind of slice."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, WIDTH)
        self.up = nn.Linear(WIDTH, HIDDEN)
        self.norm = nn.LayerNorm(HIDDEN)
        self.head = nn.Linear(HIDDEN, VOCAB, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(torch.tanh(self.up(self.emb(ids)))))


def _net(seed: str) -> Net:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(generator(seed).initial_seed())
        return Net().to(DEVICE)


def _batches(name: str, n: int) -> list[torch.Tensor]:
    g = generator(name)
    return [torch.randint(0, VOCAB, (3, 7), generator=g).to(DEVICE) for _ in range(n)]


def _loss(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    logits = model(ids[:, :-1])
    return nn.functional.cross_entropy(logits.reshape(-1, VOCAB).float(), ids[:, 1:].reshape(-1))


def _reference_run(model: Net, opt: ChunkFT, batches: list[torch.Tensor]) -> None:
    """Train `model` (plain torch) as ChunkFT's schedule says: AdamW on the active slices only."""
    params = [e.name for e in opt.entries]
    named = dict(model.named_parameters())
    states: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
    steps = [0] * opt.chunks
    k = 0
    for i, ids in enumerate(batches):
        model.zero_grad(set_to_none=True)
        _loss(model, ids).backward()
        steps[k] += 1
        sc = StepScalars.adamw(step=steps[k], **HYPER)
        for j, piece in enumerate(opt.plan[k]):
            e = opt.entries[piece.tensor]
            p = named[params[piece.tensor]]
            view = e.slice_of(p.data, piece.start, piece.end)
            grad = e.slice_of(p.grad, piece.start, piece.end).contiguous()
            if (k, j) not in states:
                states[(k, j)] = (torch.zeros_like(grad), torch.zeros_like(grad))
            ref.adamw_slice_reference_(view, grad, *states[(k, j)], sc)
        if (i + 1) % opt.interval == 0:
            k = (k + 1) % opt.chunks


@pytest.mark.parametrize(
    "chunks,interval,strategy,offload",
    [(3, 2, "column", True), (4, 1, "row", True), (2, 1, "column", False)],
    ids=["3chunks-interval2", "4chunks-row", "2chunks-no-offload"],
)
def test_matches_adamw_on_the_active_slices(chunks, interval, strategy, offload):
    model = _net("net")
    plain = copy.deepcopy(model)
    opt = ChunkFT(
        model, chunks=chunks, interval=interval, strategy=strategy, offload=offload, **HYPER
    )
    batches = _batches("batches", 2 * chunks * interval)
    for n, ids in enumerate(batches):
        before = {k: v.detach().clone() for k, v in model.named_parameters()}
        k = opt.active_chunk
        assert k == (n // interval) % chunks
        _loss(model, ids).backward()
        opt.step()
        for j, (name, p) in enumerate(model.named_parameters()):
            moved = p.detach() != before[name]
            mine = [pc for pc in opt.plan[k] if pc.tensor == j]
            allowed = torch.zeros_like(moved)
            for pc in mine:
                e = opt.entries[j]
                e.slice_of(allowed, pc.start, pc.end).fill_(True)
            assert not (moved & ~allowed).any(), f"{name} moved outside chunk {k}"
    _reference_run(plain, opt, batches)
    for (name, p), q in zip(model.named_parameters(), plain.parameters(), strict=True):
        assert rel_err(p, q) <= 1e-5, name
        assert not torch.equal(p, dict(_net("net").named_parameters())[name]), name


def test_one_chunk_bit_identical_to_the_same_kernels_unchunked():
    a, b = _net("bitwise"), _net("bitwise")
    opt_a = ChunkFT(a, chunks=1, **HYPER)
    opt_b = UnchunkedAdamW(b, **HYPER)
    for ids in _batches("bitwise-batches", 3):
        _loss(a, ids).backward()
        opt_a.step()
        _loss(b, ids).backward()
        opt_b.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_offloading_changes_no_number():
    a, b = _net("offload"), _net("offload")
    opt_a = ChunkFT(a, chunks=3, offload=True, **HYPER)
    opt_b = ChunkFT(b, chunks=3, offload=False, **HYPER)
    assert len(opt_a._host) == 3 and not opt_b._host  # every chunk's states start on the host
    for ids in _batches("offload-b", 7):
        for m, o in ((a, opt_a), (b, opt_b)):
            _loss(m, ids).backward()
            o.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert set(opt_a._resident) <= {opt_a.active_chunk, (opt_a.active_chunk + 1) % 3}
    assert len(opt_b._resident) == 3  # without offload every visited chunk stays on the device


def test_accumulation_and_lr_schedule():
    """Two backwards before a step add up like one on the summed loss; a torch LR scheduler
    drives the step size (a zero learning rate moves nothing)."""
    a, b = _net("accum"), _net("accum")
    opt_a = ChunkFT(a, chunks=2, **HYPER)
    opt_b = ChunkFT(b, chunks=2, **HYPER)
    x1, x2 = _batches("accum-b", 2)
    _loss(a, x1).backward()
    _loss(a, x2).backward()
    opt_a.step()
    (_loss(b, x1) + _loss(b, x2)).backward()
    opt_b.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert rel_err(p, q) <= 1e-6
    sched = torch.optim.lr_scheduler.LambdaLR(opt_a, lambda step: 0.0)
    assert opt_a.param_groups[0]["lr"] == 0.0
    before = [p.detach().clone() for p in a.parameters()]
    _loss(a, x1).backward()
    opt_a.step()
    sched.step()
    # decoupled weight decay is lr-scaled too: nothing moves at lr 0
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), before, strict=True))


def test_slice_gradients_equal_autograd():
    model = _net("grads")
    plain = copy.deepcopy(model)
    opt = ChunkFT(model, chunks=4, **HYPER)
    ids = _batches("grads-batch", 1)[0]
    full = dict(plain.named_parameters())
    for k in range(4):
        assert opt.active_chunk == k
        plain.load_state_dict(model.state_dict())  # the weights as the earlier steps left them
        plain.zero_grad(set_to_none=True)
        _loss(plain, ids).backward()
        _loss(model, ids).backward()
        for piece in opt.plan[k]:
            slot = opt.slots[piece.tensor]
            e = slot.entry
            got = slot.grad if e.kind != "dense" else e.param.grad
            got = got if e.kind != "dense" else e.slice_of(got, piece.start, piece.end)
            want = e.slice_of(full[e.name].grad, piece.start, piece.end)
            assert rel_err(got, want) <= 1e-5, e.name
        # inactive tensors have no gradient at all
        active = {p.tensor for p in opt.plan[k]}
        for i, slot in enumerate(opt.slots):
            if i not in active:
                assert slot.grad is None and slot.entry.param.grad is None
        opt.step()


def test_backward_stops_below_the_lowest_active_layer():
    model = _net("stop")
    opt = ChunkFT(model, chunks=4, **HYPER)
    while {p.tensor for p in opt.plan[opt.active_chunk]} != {len(opt.entries) - 1}:
        _loss(model, _batches("stop-b", 1)[0]).backward()
        opt.step()
    seen = {}
    hooks = [
        m.register_forward_hook(lambda mod, inp, out, n=n: seen.__setitem__(n, out))
        for n, m in model.named_children()
    ]
    _loss(model, _batches("stop-b", 1)[0]).backward()
    for h in hooks:
        h.remove()
    # only the head is active: nothing below it recorded a graph
    assert seen["head"].grad_fn is not None
    assert all(seen[n].grad_fn is None for n in ("emb", "up", "norm"))
    opt.step()


def test_fused_epilogue_matches_unfused():
    a, b = _net("fused"), _net("fused")
    opt_a = ChunkFT(a, chunks=3, fused=True, **HYPER)
    opt_b = ChunkFT(b, chunks=3, fused=False, **HYPER)
    for ids in _batches("fused-b", 6):
        _loss(a, ids).backward()
        opt_a.step()
        _loss(b, ids).backward()
        opt_b.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert rel_err(p, q) <= 1e-5


def test_state_dict_round_trip_continues_identically():
    a = _net("sd")
    opt_a = ChunkFT(a, chunks=3, **HYPER)
    batches = _batches("sd-b", 6)
    for ids in batches[:4]:
        _loss(a, ids).backward()
        opt_a.step()
    b = _net("other-init")
    b.load_state_dict(a.state_dict())
    opt_b = ChunkFT(b, chunks=3, **HYPER)
    opt_b.load_state_dict(opt_a.state_dict())
    assert opt_b.active_chunk == opt_a.active_chunk == 1
    for ids in batches[4:]:
        for m, o in ((a, opt_a), (b, opt_b)):
            _loss(m, ids).backward()
            o.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    other = ChunkFT(_net("sd"), chunks=2, **HYPER)
    with pytest.raises(ValueError, match="another model or chunking"):
        other.load_state_dict(opt_a.state_dict())


def test_what_it_cannot_do_is_refused():
    model = _net("refuse")
    opt = ChunkFT(model, chunks=2, **HYPER)
    with pytest.raises(ChunkFTUnsupported, match="clipping"):
        opt.clip_grad_norm_(1.0)
    with pytest.raises(ChunkFTUnsupported, match="no gradient reached"):
        opt.step()
    with pytest.raises(ChunkFTUnsupported, match="no groups"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(2))]})
    with pytest.raises(ChunkFTUnsupported, match="AdamW only"):
        ChunkFT(_net("refuse"), optimizer="sgd")
    tied = _net("refuse")
    tied.head.weight = tied.emb.weight = nn.Parameter(torch.randn(VOCAB, WIDTH, device=DEVICE))
    tied.up = nn.Linear(WIDTH, WIDTH).to(DEVICE)
    tied.norm = nn.LayerNorm(WIDTH).to(DEVICE)
    with pytest.raises(ChunkFTUnsupported, match="tied"):
        ChunkFT(tied)
    fused = ChunkFT(_net("refuse2"), chunks=1, fused=True, **HYPER)
    ids = _batches("refuse-b", 1)[0]
    _loss(fused.model, ids).backward()
    with pytest.raises(ChunkFTUnsupported, match="one backward per step"):
        _loss(fused.model, ids).backward()


def test_hf_llama_trains_unchanged_with_checkpointing():
    """A transformers Llama, activation checkpointing on (non-reentrant): one cycle of 2 chunks
    moves every parameter and equals the same run without checkpointing."""
    from replication.models import build_llama

    def run(checkpointing: bool) -> nn.Module:
        model = build_llama("tiny", 64, seed=3).to(DEVICE)
        if checkpointing:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        model.train()
        opt = ChunkFT(model, chunks=2, lr=1e-3)
        for ids in [torch.randint(0, 64, (2, 9), generator=generator("llama")).to(DEVICE)] * 2:
            out = model(input_ids=ids, labels=ids)
            assert torch.isfinite(out.loss)
            out.loss.backward()
            opt.step()
        return model

    first = build_llama("tiny", 64, seed=3)
    with sdpa_kernel(SDPBackend.MATH):  # a deterministic attention backward on a GPU too
        a, b = run(True), run(False)
    for (name, p), q, p0 in zip(
        a.named_parameters(), b.parameters(), first.parameters(), strict=True
    ):
        assert torch.equal(p, q), name
        assert not torch.equal(p.cpu(), p0), f"{name} never trained"
