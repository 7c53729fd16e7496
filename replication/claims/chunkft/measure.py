"""ChunkFT's figures (see spec.py for the claim and its checks): exactness and quality on every
profile; on ``full`` (a CUDA GPU) the 7B memory cycle, offload traffic and same-run ceilings.

Time budget of ``full`` on one H200 (estimated from FLOPs and bytes; the log prints each phase's
wall time): ceilings ~5 s; exactness ~5 s; quality 2 seeds × (100 + 400) steps of a d512-l8
Llama at 4096 tokens (~25 ms a step, host-paced) ~30 s; 7B: building the bf16 model ~10 s,
pinning 54 GB of host states ~15 s, one cycle of ~270 chunks at ~0.1 s a step (forward 13.8
TFLOP, backward down to the active layer, recompute) ~35 s, 2 × 16 steps for the overlap ~5 s,
then the fp32 AdamW baseline's build and step ~15 s. About 120 s in all.
"""

from __future__ import annotations

import gc
import math
import statistics
import sys
import time
from dataclasses import dataclass

import torch

from replication.claims import base, common
from replication.claims.judge import mean_and_sem

Figures = dict[str, float | int | str]
GB = 1e9


@dataclass(frozen=True)
class Profile:
    exact_size: str
    exact_vocab: int
    exact_seq: int
    exact_steps: int
    quality_size: str
    quality_seq: int
    quality_batch: int
    quality_steps: int  # S: AdamW's steps; ChunkFT takes 4·S
    quality_seeds: tuple[int, ...]
    quality_lr: float
    eval_batches: int
    memory_7b: bool
    chunk_budget_bytes: int  # parameter + state bytes per chunk on the 7B model
    overlap_steps: int


PROFILE = {
    "smoke": Profile("micro", 64, 9, 2, "micro", 16, 2, 1, (0, 1), 3e-3, 1, False, 0, 0),
    "full": Profile(
        "tiny", 256, 64, 4, "d512-l8", 256, 16, 100, (0, 1), 1e-3, 16, True, 250_000_000, 16
    ),
}
QUALITY_CHUNKS = 4


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def _llama(size: str, vocab: int, seed: int):
    """A random-init Llama of a named size of `replication.models`, or "micro" (1 layer of
    width 32: the smoke profile's, so the interpreter gets through it in seconds)."""
    from replication.models import build_llama, llama_config

    if size != "micro":
        return build_llama(size, vocab, seed)
    from transformers import LlamaForCausalLM

    config = llama_config("tiny", vocab)
    config.hidden_size, config.intermediate_size, config.num_hidden_layers = 32, 64, 1
    config.num_attention_heads = config.num_key_value_heads = 2
    config.head_dim = 16
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


# --- exactness -------------------------------------------------------------------------------


def exactness(p: Profile, device: torch.device) -> Figures:
    """fp32, TF32 off, a tiny Llama: ChunkFT with one chunk against the same kernels unchunked
    (bitwise) and against ``torch.optim.AdamW`` (the optimizer the paper's claim is about, not
    our code: the worst norm-wise error of a weight's update), and with four chunks each slice
    gradient against autograd's."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from kernels.chunkft.optim import ChunkFT, UnchunkedAdamW
    from kernels.forge.reference import tf32_off
    from kernels.runtime.testing import rel_err

    g = torch.Generator().manual_seed(7)
    batches = [
        torch.randint(0, p.exact_vocab, (2, p.exact_seq), generator=g).to(device)
        for _ in range(max(p.exact_steps, 4))
    ]
    out: Figures = {}
    # SDPA's fused attention backward may accumulate in a varying order on a GPU: the math
    # backend keeps the bitwise comparison about ChunkFT, not about attention kernels
    with tf32_off(), sdpa_kernel(SDPBackend.MATH):
        a = _llama(p.exact_size, p.exact_vocab, seed=1).to(device)
        b = _llama(p.exact_size, p.exact_vocab, seed=1).to(device)
        opt_a = ChunkFT(a, chunks=1, lr=1e-3, weight_decay=0.01)
        opt_b = UnchunkedAdamW(b, lr=1e-3, weight_decay=0.01)
        for ids in batches[: p.exact_steps]:
            for model, opt in ((a, opt_a), (b, opt_b)):
                model(input_ids=ids, labels=ids).loss.backward()
                opt.step()
        out["exact_one_chunk_max_abs_diff"] = max(
            float((x.detach().double() - y.detach().double()).abs().max())
            for x, y in zip(a.parameters(), b.parameters(), strict=True)
        )
        first = _llama(p.exact_size, p.exact_vocab, seed=1)
        out["exact_one_chunk_weights_moved_rel"] = rel_err(
            a.model.layers[0].mlp.up_proj.weight.cpu(), first.model.layers[0].mlp.up_proj.weight
        )
        del b, opt_b

        # the same steps by torch's own AdamW (single-tensor path) on autograd's gradients, in
        # fp32 and in float64: a weight's update (W_k - W_0) is a small difference of fp32
        # weights, so two correct fp32 runs differ in it by about ulp(W)/|update| (~1e-5 at
        # lr 1e-3); float64 is the reference both fp32 runs are held to (KERNELS.md's rule:
        # ours within 2x torch's own fp32 error of it, plus 1e-6)
        def torch_adamw_run(dtype: torch.dtype) -> torch.nn.Module:
            model = _llama(p.exact_size, p.exact_vocab, seed=1).to(device=device, dtype=dtype)
            opt = torch.optim.AdamW(
                model.parameters(), lr=1e-3, weight_decay=0.01, foreach=False, fused=False
            )
            for ids in batches[: p.exact_steps]:
                model(input_ids=ids, labels=ids).loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            return model

        def update_err(got: torch.nn.Module, want: torch.nn.Module) -> float:
            return max(
                rel_err(x.detach().cpu().double() - w0.double(), y.detach().cpu().double() - w0)
                for x, y, w0 in zip(
                    got.parameters(), want.parameters(), first.parameters(), strict=True
                )
            )

        ref = torch_adamw_run(torch.float32)
        ref64 = torch_adamw_run(torch.float64)
        ours_err = update_err(a, ref64)
        torch_err = update_err(ref, ref64)
        out["exact_one_chunk_vs_torch_adamw_update_rel_err"] = update_err(a, ref)
        out["exact_one_chunk_vs_adamw64_update_rel_err"] = ours_err
        out["exact_torch_adamw_fp32_vs_adamw64_update_rel_err"] = torch_err
        out["exact_one_chunk_vs_torch_adamw_bound_ratio"] = ours_err / (2 * torch_err + 1e-6)
        del a, opt_a, ref, ref64

        c = _llama(p.exact_size, p.exact_vocab, seed=2).to(device)
        plain = _llama(p.exact_size, p.exact_vocab, seed=2).to(device)
        opt = ChunkFT(c, chunks=QUALITY_CHUNKS, lr=1e-3)
        named = dict(plain.named_parameters())
        worst = 0.0
        for k, ids in enumerate(batches[:QUALITY_CHUNKS]):
            if opt.active_chunk != k:
                raise AssertionError(f"chunk {opt.active_chunk} active at step {k}")
            plain.load_state_dict(c.state_dict())
            plain.zero_grad(set_to_none=True)
            plain(input_ids=ids, labels=ids).loss.backward()
            c(input_ids=ids, labels=ids).loss.backward()
            for piece in opt.plan[k]:
                slot = opt.slots[piece.tensor]
                e = slot.entry
                got = slot.grad if e.kind != "dense" else e.param.grad
                if got is None:
                    raise AssertionError(f"{e.name}: no gradient in its active chunk")
                if e.kind == "dense":
                    got = e.slice_of(got, piece.start, piece.end)
                want = e.slice_of(named[e.name].grad, piece.start, piece.end)
                worst = max(worst, rel_err(got, want))
            opt.step()
        out["exact_four_chunks_slice_grad_rel_err"] = worst
    return out


# --- quality ---------------------------------------------------------------------------------


def _eval_loss(model, batches, device, autocast: bool) -> float:
    model.eval()
    losses = []
    with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=autocast):
        for ids in batches:
            ids = ids.to(device)
            losses.append(float(model(input_ids=ids, labels=ids).loss))
    model.train()
    return statistics.fmean(losses)


def quality(p: Profile, device: torch.device) -> Figures:
    """Per seed: AdamW for S steps and ChunkFT (4 chunks, interval 1) for 4·S steps from the same
    init on the same stream of Shakespeare batches; eval loss of each, and their ratio."""
    from kernels.chunkft.optim import ChunkFT
    from replication.data import eval_batches, load_shakespeare, train_batches

    corpus = load_shakespeare()
    vocab = corpus.tokenizer.get_vocab_size()
    evals = eval_batches(corpus.eval, p.quality_batch, p.quality_seq, p.eval_batches)
    autocast = device.type == "cuda"
    out: Figures = {}
    ratios = []
    for seed in p.quality_seeds:
        losses = {}
        for name, steps in (("adamw", p.quality_steps), ("chunkft", 4 * p.quality_steps)):
            model = _llama(p.quality_size, vocab, seed=seed).to(device)
            model.train()
            if name == "adamw":
                opt = torch.optim.AdamW(
                    model.parameters(), lr=p.quality_lr, weight_decay=0.0, fused=autocast
                )
            else:
                opt = ChunkFT(model, chunks=QUALITY_CHUNKS, lr=p.quality_lr, weight_decay=0.0)
            stream = train_batches(corpus.train, p.quality_batch, p.quality_seq, seed)
            t0 = time.monotonic()
            for _ in range(steps):
                ids = next(stream).to(device)
                with torch.autocast(device.type, torch.bfloat16, enabled=autocast):
                    loss = model(input_ids=ids, labels=ids).loss
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            losses[name] = _eval_loss(model, evals, device, autocast)
            out[f"quality_seed{seed}_{name}_eval_loss"] = losses[name]
            out[f"quality_seed{seed}_{name}_steps"] = steps
            out[f"quality_seed{seed}_{name}_ms_per_step"] = (time.monotonic() - t0) * 1e3 / steps
            _log(f"quality seed {seed} {name}: {losses[name]:.4f} after {steps} steps")
            del model, opt
            _free()
        ratios.append(losses["chunkft"] / losses["adamw"])
        out[f"quality_seed{seed}_loss_ratio"] = ratios[-1]
    out["quality_loss_ratio"], out["quality_loss_ratio_sem"] = mean_and_sem(ratios)
    out["quality_seeds"] = len(ratios)
    out["quality_chunks"] = QUALITY_CHUNKS
    out["quality_adamw_steps"] = p.quality_steps
    return out


# --- the 7B memory cycle and offload ---------------------------------------------------------


def llama7b_config():
    return common.large_llama_config(
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=1024,
    )


def build_7b(device: torch.device, dtype: torch.dtype, config=None):
    """The Llama-2-7B shape (or `config`), random init, built on the device in `dtype` (no
    download), activation checkpointing on (non-reentrant), in training mode."""
    model = common.random_llama(config or llama7b_config(), device, dtype, seed=0)
    wrong = {str(p.dtype) for p in model.parameters() if p.dtype != dtype}
    if wrong:  # a transformers version that builds in its own dtype: cast (costs a copy once)
        _log(f"the 7B model came out in {wrong}; casting to {dtype}")
        model.to(dtype)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    return model


def pinned_copy_gbps(device: torch.device, nbytes: int = 1 << 30) -> tuple[float, float]:
    """Pinned host -> device and device -> host copy bandwidth (GB/s), median of 5."""
    host = torch.empty(nbytes // 4, dtype=torch.float32, pin_memory=True)
    dev = torch.empty(nbytes // 4, dtype=torch.float32, device=device)
    rates = []
    for dst, src in ((dev, host), (host, dev)):
        times = []
        for _ in range(6):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            dst.copy_(src, non_blocking=True)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        rates.append(nbytes / (statistics.median(times[1:]) * 1e-3) / GB)
    del host, dev
    return rates[0], rates[1]


def _steps(model, opt, ids, n: int) -> float:
    """n ChunkFT steps on one batch; wall seconds, the device drained at both ends."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def memory_7b(p: Profile, device: torch.device, config=None, seq: int = 1024) -> Figures:
    """Peak allocated memory over one whole ChunkFT cycle on the 7B shape (bf16, seq 1024,
    batch 1, checkpointing), the offload traffic and its overlap, then the standard
    mixed-precision AdamW step on the same shape. `config`/`seq`: a smaller model, for the GPU
    test that runs this code path in seconds before the claim does."""
    from kernels.chunkft.optim import STATE_BYTES, ChunkFT

    out: Figures = {}
    h2d_gbps, d2h_gbps = pinned_copy_gbps(device)
    out["pinned_h2d_gbps"] = h2d_gbps
    out["pinned_d2h_gbps"] = d2h_gbps

    t0 = time.monotonic()
    model = build_7b(device, torch.bfloat16, config)
    n_params = sum(q.numel() for q in model.parameters())
    out["mem_7b_params"] = n_params
    out["mem_7b_weight_gb"] = sum(q.numel() * q.element_size() for q in model.parameters()) / GB
    stream_bytes = sum(q.numel() * (q.element_size() + STATE_BYTES) for q in model.parameters())
    chunks = math.ceil(stream_bytes / p.chunk_budget_bytes)
    out["mem_chunks"] = chunks
    _log(f"7B built in {time.monotonic() - t0:.1f} s: {n_params} params, {chunks} chunks")
    g = torch.Generator().manual_seed(11)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (1, seq), generator=g).to(device)

    t0 = time.monotonic()
    opt = ChunkFT(model, chunks=chunks, interval=1, offload=True, lr=1e-5)
    out["mem_chunkft_setup_s"] = time.monotonic() - t0
    out["offload_host_pinned"] = "yes" if opt.host_pinned else "no"
    out["offload_host_state_gb"] = opt._host_flat.numel() * 4 / GB
    out["offload_bytes_per_switch_each_way"] = statistics.fmean(
        opt.state_bytes(k) for k in range(chunks)
    )
    _log(f"ChunkFT set up in {out['mem_chunkft_setup_s']:.1f} s")
    opt.record_transfers = True
    _free()
    torch.cuda.reset_peak_memory_stats(device)
    t0 = time.monotonic()
    for step in range(chunks):
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        if step % 50 == 0:
            _log(f"cycle step {step}/{chunks}: {time.monotonic() - t0:.1f} s")
    torch.cuda.synchronize()
    cycle_s = time.monotonic() - t0
    if opt.active_chunk != 0:
        raise AssertionError(f"after one cycle chunk {opt.active_chunk} is active, not 0")
    peak = torch.cuda.max_memory_allocated(device)
    out["mem_chunkft_cycle_peak_gb"] = peak / GB
    out["mem_chunkft_cycle_peak_gib"] = peak / 2**30
    out["mem_chunkft_cycle_peak_above_weights_gb"] = peak / GB - out["mem_7b_weight_gb"]
    out["mem_chunkft_cycle_s"] = cycle_s
    out["mem_chunkft_ms_per_step"] = cycle_s * 1e3 / chunks
    _log(f"cycle: peak {peak / GB:.2f} GB in {cycle_s:.1f} s")

    moved = {"h2d": [0, 0.0], "d2h": [0, 0.0]}
    for t in opt.transfers:
        moved[t["direction"]][0] += t["bytes"]
        moved[t["direction"]][1] += t["start"].elapsed_time(t["end"])
    for direction, (nbytes, ms) in moved.items():
        gbps = nbytes / (ms * 1e-3) / GB if ms > 0 else math.nan
        out[f"offload_{direction}_bytes"] = nbytes
        out[f"offload_{direction}_gbps"] = gbps
        ceiling = h2d_gbps if direction == "h2d" else d2h_gbps
        out[f"offload_{direction}_frac_of_pinned"] = gbps / ceiling
    switches = max(sum(1 for t in opt.transfers if t["direction"] == "d2h"), 1)
    transfer_s = (moved["h2d"][1] + moved["d2h"][1]) * 1e-3 / switches
    out["offload_transfer_ms_per_switch"] = transfer_s * 1e3
    opt.record_transfers = False

    # overlap: the same first steps of a cycle with offload, then with every state resident
    n = p.overlap_steps
    with_offload = _steps(model, opt, ids, n)
    opt.detach()
    del opt
    _free()
    resident = ChunkFT(model, chunks=chunks, interval=1, offload=False, lr=1e-5)
    without = _steps(model, resident, ids, n)
    resident.detach()
    del resident
    exposed = max(with_offload - without, 0.0) / n
    out["offload_step_ms_with"] = with_offload * 1e3 / n
    out["offload_step_ms_resident"] = without * 1e3 / n
    out["offload_exposed_ms_per_switch"] = exposed * 1e3
    hidden = 1.0 - exposed / transfer_s if transfer_s > 0 else math.nan
    out["offload_hidden_fraction"] = min(max(hidden, 0.0), 1.0) if transfer_s > 0 else hidden
    del model
    _free()

    # the standard mixed-precision AdamW step: fp32 weights, bf16 autocast, fused AdamW
    t0 = time.monotonic()
    try:
        model = build_7b(device, torch.float32, config)
        adamw = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
        _free()
        torch.cuda.reset_peak_memory_stats(device)
        with torch.autocast("cuda", torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        adamw.step()
        torch.cuda.synchronize()
        base_peak = torch.cuda.max_memory_allocated(device)
        out["mem_adamw_peak_gb"] = base_peak / GB
        out["mem_adamw_over_chunkft"] = base_peak / peak
        out["mem_adamw_outcome"] = "fits"
    except torch.cuda.OutOfMemoryError:
        out["mem_adamw_outcome"] = "oom"
        out["mem_adamw_peak_gb"] = "oom"
    finally:
        model = adamw = loss = None
        _free()
    out["mem_adamw_s"] = time.monotonic() - t0
    _log(f"AdamW baseline: {out['mem_adamw_peak_gb']} GB in {out['mem_adamw_s']:.1f} s")
    return out


def measure(profile: str) -> Figures:
    """ChunkFT's figures at `profile` (``smoke`` or ``full``)."""
    device = common.claim_device(profile, PROFILE)
    p = PROFILE[profile]
    started = time.monotonic()
    cuda = device.type == "cuda"
    figures: Figures = common.environment_figures(device, python=False)
    if cuda:
        from kernels.runtime.ceilings import measure_ceilings

        base.phase("ceilings")
        figures.update(measure_ceilings(device).figures())
    for name, fn in (("exactness", exactness), ("quality", quality)):
        base.phase(name)
        t0 = time.monotonic()
        figures.update(fn(p, device))
        figures[f"{name}_s"] = time.monotonic() - t0
        _log(f"{name} done in {figures[f'{name}_s']:.1f} s")
    if p.memory_7b:
        base.phase("memory_7b")
        figures.update(memory_7b(p, device))
    figures["wall_s"] = time.monotonic() - started
    return figures
