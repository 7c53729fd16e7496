"""Plain-PyTorch FORGE: the CPU path and the oracle the Triton kernel is tested against.

The weight gradient is formed in full (fp32 matmul, TF32 off), then the rule is written out
element-wise with exactly the tensor operations torch's own single-tensor optimizers use
(`torch.optim.AdamW(foreach=False)`, `torch.optim.SGD`), so on the CPU this path matches them
bit for bit. bf16 weights are updated in fp32 and rounded back to bf16, to nearest or
stochastically with the same 16 random bits per element the kernel draws (`sr_random_bits`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch

from .rules import STEP_SLOT, Rule, StepScalars

_MASK32 = 0xFFFFFFFF
# lowbias32 constants (Wellons' integer hash search): a cheap, well-mixing 32-bit hash.
_MIX_C1 = 0x7FEB352D
_MIX_C2 = 0x846CA68B


def mix32_int(x: int) -> int:
    """The 32-bit integer hash the kernel uses, on one Python int."""
    x &= _MASK32
    x ^= x >> 16
    x = (x * _MIX_C1) & _MASK32
    x ^= x >> 15
    x = (x * _MIX_C2) & _MASK32
    x ^= x >> 16
    return x


def sr_param_key(seed: int, index: int) -> int:
    """The parameter's part of its stochastic-rounding keys, in [0, 2**32)."""
    return mix32_int(mix32_int(seed) ^ index)


def sr_seed_key(seed: int, index: int, step: int) -> int:
    """The per-(parameter, step) key of the stochastic-rounding stream, in [0, 2**31)."""
    return mix32_int(sr_param_key(seed, index) ^ step) & 0x7FFFFFFF


def as_int32(key: int) -> int:
    """A uint32 key as the int32 with the same bits (what a kernel's i32 argument takes)."""
    return key - (1 << 32) if key >= 1 << 31 else key


def device_seed_key(param_key: int, step: torch.Tensor) -> torch.Tensor:
    """`sr_seed_key` from a device step count (0-d tensor): an int64 0-d tensor, no host read.
    `param_key` is `sr_param_key` (its int32 bits accepted too)."""
    return mix32(step.to(torch.int64) ^ (param_key & _MASK32)) & 0x7FFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2**32 on int64 tensors holding uint32 values, without int64 overflow."""
    lo = x * (c & 0xFFFF)
    hi = ((x * (c >> 16)) & 0xFFFF) << 16
    return (lo + hi) & _MASK32


def mix32(x: torch.Tensor) -> torch.Tensor:
    """`mix32_int` element-wise on an int64 tensor of uint32 values."""
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = _mul32(x, _MIX_C1)
    x = x ^ (x >> 15)
    x = _mul32(x, _MIX_C2)
    return x ^ (x >> 16)


def sr_random_bits(
    n: int, k: int, key: int | torch.Tensor, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """The 16 random bits the kernel adds below each element of an [n, k] weight (int64)."""
    offsets = torch.arange(n * k, device=device, dtype=torch.int64).reshape(n, k)
    return mix32(offsets ^ key) & 0xFFFF


def round_to_bf16(x: torch.Tensor, random_bits: torch.Tensor | None = None) -> torch.Tensor:
    """fp32 -> bf16 by integer arithmetic: to nearest even, or stochastic given 16 random bits.

    Stochastic rounding adds the random bits below bit 16 of the magnitude and truncates, so a
    value rounds away from zero with probability equal to its fraction of an ulp: unbiased.
    """
    bits = x.float().contiguous().view(torch.int32).to(torch.int64) & _MASK32
    # Nearest-even: add half an ulp less one, plus the kept lowest bit, then truncate.
    bits = bits + (0x7FFF + ((bits >> 16) & 1) if random_bits is None else random_bits)
    top = (bits >> 16) & 0xFFFF
    top = torch.where(torch.isnan(x), torch.full_like(top, 0x7FC0), top)
    return top.to(torch.int32).to(torch.int16).view(torch.bfloat16)


def apply_rule_(
    rule: Rule, sc: StepScalars, w: torch.Tensor, g: torch.Tensor, states: Sequence[torch.Tensor]
) -> None:
    """One update of fp32 `w` and its fp32 `states` in place, as torch's optimizers write it."""
    if rule is Rule.ADAMW:
        m, v = states
        w.mul_(sc.decay)
        m.lerp_(g, 1.0 - sc.beta1)
        v.mul_(sc.beta2).addcmul_(g, g, value=1.0 - sc.beta2)
        denom = (v.sqrt() / sc.bc2_sqrt).add_(sc.eps)
        w.addcdiv_(m, denom, value=-sc.step_size)
    elif rule is Rule.LION:
        (m,) = states
        c = m.mul(sc.beta1).add_(g, alpha=1.0 - sc.beta1)
        w.mul_(sc.decay).add_(torch.sign(c), alpha=-sc.lr)
        m.mul_(sc.beta2).add_(g, alpha=1.0 - sc.beta2)
    elif rule is Rule.SGD_MOMENTUM:
        (buf,) = states
        d = g.add(w, alpha=sc.weight_decay) if sc.weight_decay != 0 else g
        if sc.first_step:
            buf.copy_(d)
        else:
            buf.mul_(sc.beta1).add_(d, alpha=1.0 - sc.dampening)
        d = d.add(buf, alpha=sc.beta1) if sc.nesterov else buf
        w.add_(d, alpha=-sc.lr)
    else:  # pragma: no cover - Rule is closed
        raise ValueError(f"unknown rule {rule!r}")


def apply_rule_from_buffer_(
    rule: Rule,
    scalars: torch.Tensor,
    w: torch.Tensor,
    g: torch.Tensor,
    states: Sequence[torch.Tensor],
    *,
    nesterov: bool = False,
) -> None:
    """`apply_rule_` with the step's scalars read from a capturable optimizer's device vector
    (`rules.DeviceScalars.values`, float64, or its fp32 `buffer`): tensor ops only, no host
    read, so a CUDA graph can hold it. Same formulas; each scalar (and `1 - beta`) is formed
    in the vector's precision and rounded to fp32 where torch's optimizers round theirs."""
    s = scalars[:10]
    one_minus = (1.0 - s).to(w.dtype)
    lr, decay, wd, beta1, beta2, eps, step_size, bc2_sqrt, _, first = s.to(w.dtype).unbind()
    if rule is Rule.ADAMW:
        m, v = states
        w.mul_(decay)
        m.lerp_(g, one_minus[3])
        v.mul_(beta2).add_(g * g * one_minus[4])
        denom = (v.sqrt() / bc2_sqrt).add_(eps)
        w.sub_(m / denom * step_size)
    elif rule is Rule.LION:
        (m,) = states
        c = m.mul(beta1).add_(g * one_minus[3])
        w.mul_(decay).sub_(torch.sign(c) * lr)
        m.mul_(beta2).add_(g * one_minus[4])
    elif rule is Rule.SGD_MOMENTUM:
        (buf,) = states
        d = g + wd * w
        buf.copy_(torch.where(first != 0, d, buf * beta1 + one_minus[8] * d))
        d = d + beta1 * buf if nesterov else buf
        w.sub_(d * lr)
    else:  # pragma: no cover - Rule is closed
        raise ValueError(f"unknown rule {rule!r}")


def apply_update_from_buffer_(
    rule: Rule,
    scalars: torch.Tensor,
    param: torch.Tensor,
    g: torch.Tensor,
    states: Sequence[torch.Tensor],
    *,
    nesterov: bool = False,
    stochastic: bool = True,
    param_key: int = 0,
) -> None:
    """`apply_update_` for a capturable optimizer: scalars and step from the device buffer,
    the stochastic-rounding key mixed on the device (`device_seed_key`)."""
    if param.dtype == torch.float32:
        apply_rule_from_buffer_(rule, scalars, param, g.float(), states, nesterov=nesterov)
        return
    if param.dtype != torch.bfloat16:
        raise TypeError(f"FORGE updates fp32 or bf16 weights, not {param.dtype}")
    w32 = param.float()
    apply_rule_from_buffer_(rule, scalars, w32, g.float(), states, nesterov=nesterov)
    bits = None
    if stochastic:
        step = (
            scalars[STEP_SLOT]
            if scalars.dtype == torch.float64
            else scalars.view(torch.int32)[STEP_SLOT]
        )
        key = device_seed_key(param_key, step)
        flat = w32.reshape(1, -1) if w32.dim() != 2 else w32
        bits = sr_random_bits(flat.shape[0], flat.shape[1], key, w32.device).reshape(w32.shape)
    param.copy_(round_to_bf16(w32, bits))


def apply_update_(
    rule: Rule,
    sc: StepScalars,
    param: torch.Tensor,
    g: torch.Tensor,
    states: Sequence[torch.Tensor],
    *,
    stochastic: bool = True,
    seed_key: int = 0,
) -> None:
    """Update `param` (fp32, or bf16 with an fp32 update rounded back) and fp32 states in place."""
    if param.dtype == torch.float32:
        apply_rule_(rule, sc, param, g.float(), states)
        return
    if param.dtype != torch.bfloat16:
        raise TypeError(f"FORGE updates fp32 or bf16 weights, not {param.dtype}")
    w32 = param.float()
    apply_rule_(rule, sc, w32, g.float(), states)
    bits = None
    if stochastic:
        flat = w32.reshape(1, -1) if w32.dim() != 2 else w32
        bits = sr_random_bits(flat.shape[0], flat.shape[1], seed_key, w32.device).reshape(w32.shape)
    param.copy_(round_to_bf16(w32, bits))


@contextlib.contextmanager
def tf32_off() -> Iterator[None]:
    """fp32 matmuls in full fp32 (no TF32) inside the block; restores the previous setting."""
    old_matmul = torch.backends.cuda.matmul.allow_tf32
    old_cudnn = torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old_matmul
        torch.backends.cudnn.allow_tf32 = old_cudnn


def weight_grad(dy: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """dW = dYᵀ·X in fp32 (TF32 off): dy [T, N], x [T, K] -> [N, K]."""
    with tf32_off():
        return dy.float().t() @ x.float()


def forge_linear_step_reference(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    states: Sequence[torch.Tensor],
    rule: Rule,
    sc: StepScalars,
    *,
    stochastic: bool = True,
    seed_key: int = 0,
    grad: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> None:
    """What the fused kernel computes, unfused: form dW (by `grad`, `weight_grad` unless
    given), then update W and states in place."""
    with torch.no_grad():
        apply_update_(
            rule,
            sc,
            weight,
            (grad or weight_grad)(dy, x),
            states,
            stochastic=stochastic,
            seed_key=seed_key,
        )


def forge_linear_step_from_buffer(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    states: Sequence[torch.Tensor],
    rule: Rule,
    scalars: torch.Tensor,
    *,
    nesterov: bool = False,
    stochastic: bool = True,
    param_key: int = 0,
) -> None:
    """`forge_linear_step_reference` for a capturable optimizer (scalars on the device)."""
    with torch.no_grad():
        apply_update_from_buffer_(
            rule,
            scalars,
            weight,
            weight_grad(dy, x),
            states,
            nesterov=nesterov,
            stochastic=stochastic,
            param_key=param_key,
        )
