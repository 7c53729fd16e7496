"""The drop-in: ``POETLinear`` (W = R·W0·P, W0 frozen) and ``patch(model, block)`` for HF models.

A POETLinear keeps its frozen base weight in the frame of its current permutations
(``w0p = W0[perm_out][:, perm_in]``, see ``reference``), the packed free parameters of its
output-side blocks (``theta_r``) and input-side blocks (``theta_p``) as views of one flat fp32
parameter ``theta`` starting at 0 (R = P = I: the layer starts as the plain linear map), and
the two permutations as int32 buffers. ``merge()`` folds R and P into the base weight, draws
new permutations and resets θ (the optimizer resets its state for θ: ``POETAdamW``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from kernels.poet import reference as ref
from kernels.poet.reference import TAYLOR4, n_free
from kernels.runtime.device import kernels_run_on

MODES = ("fast", "mem")


def block_for(dim: int, block: int) -> int:
    """The block size used on a side of `dim` features: the largest divisor of `dim` that is
    ≤ `block` (256 on every Llama-3-8B side: 1024, 4096, 14336)."""
    if dim < 1 or block < 1:
        raise ValueError("dimensions and block must be positive")
    for b in range(min(block, dim), 0, -1):
        if dim % b == 0:
            return b
    return 1


def _randperm(n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return torch.randperm(n, generator=generator).to(device=device, dtype=torch.int32)


class POETLinear(nn.Module):
    """y = x·W_effᵀ (+ bias), W_eff = R·W0·P: only the rotations' free parameters train.

    `mode` "fast" saves the layer's output before the last rotation for backward; "mem" saves
    only the input and recomputes (POET-X_mem). `use_kernels` None: the Triton kernels wherever
    they can run (CUDA, or the CPU under the interpreter), else the plain-PyTorch path.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        block: int = 256,
        *,
        bias: bool = False,
        mode: str = "fast",
        use_kernels: bool | None = None,
        c: float = TAYLOR4,
        weight: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.in_features, self.out_features = in_features, out_features
        self.block_in = block_for(in_features, block)
        self.block_out = block_for(out_features, block)
        self.mode, self.use_kernels, self.c = mode, use_kernels, float(c)
        dev = torch.device(device) if device is not None else None
        if weight is None:
            weight = torch.empty(out_features, in_features, device=dev, dtype=dtype)
            nn.init.kaiming_uniform_(weight, a=5**0.5, generator=generator)
        if weight.shape != (out_features, in_features):
            raise ValueError(f"weight must be [{out_features}, {in_features}]")
        dev = weight.device
        perm_in = _randperm(in_features, generator, dev)
        perm_out = _randperm(out_features, generator, dev)
        self.register_buffer("perm_in", perm_in)
        self.register_buffer("perm_out", perm_out)
        w0p = weight.detach()[perm_out.long()][:, perm_in.long()]
        self.register_buffer("w0p", w0p.to(dtype) if dtype is not None else w0p)
        self.register_buffer(
            "bias", torch.zeros(out_features, device=dev, dtype=w0p.dtype) if bias else None
        )
        self.nb_in, self.nb_out = in_features // self.block_in, out_features // self.block_out
        n_r, n_p = self.nb_out * n_free(self.block_out), self.nb_in * n_free(self.block_in)
        # one flat parameter, R's blocks then P's: with one block size both sides go through
        # each kernel in one launch (the released code's single oft_R, too)
        self.theta = nn.Parameter(torch.zeros(n_r + n_p, device=dev, dtype=torch.float32))

    def split(self, flat: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Views [nb_out, b_out(b_out−1)/2] and [nb_in, b_in(b_in−1)/2] of the flat θ (or of a
        tensor shaped like it, e.g. its gradient)."""
        flat = self.theta if flat is None else flat
        n_r = self.nb_out * n_free(self.block_out)
        return (
            flat[:n_r].view(self.nb_out, n_free(self.block_out)),
            flat[n_r:].view(self.nb_in, n_free(self.block_in)),
        )

    @property
    def theta_r(self) -> torch.Tensor:
        """The output side's packed parameters (a view of θ)."""
        return self.split()[0]

    @property
    def theta_p(self) -> torch.Tensor:
        """The input side's packed parameters (a view of θ)."""
        return self.split()[1]

    def theta_grads(self) -> tuple[torch.Tensor, torch.Tensor]:
        """θ's gradient as (output side, input side)."""
        if self.theta.grad is None:
            raise RuntimeError("θ has no gradient yet")
        return self.split(self.theta.grad)

    @classmethod
    def from_linear(cls, linear: nn.Linear, block: int = 256, **kwargs: object) -> POETLinear:
        """A POETLinear whose W0 is `linear`'s weight (its bias kept, frozen)."""
        layer = cls(
            linear.in_features,
            linear.out_features,
            block,
            bias=linear.bias is not None,
            weight=linear.weight,
            **kwargs,  # type: ignore[arg-type]
        )
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach())
        return layer

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"block_in={self.block_in}, block_out={self.block_out}, mode={self.mode}"
        )

    def _kernels(self, x: torch.Tensor) -> bool:
        if self.use_kernels is None:
            return kernels_run_on(x.device)
        return self.use_kernels

    def rotations(
        self, *, kernels: bool | None = None, precision: str = "ieee"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(R blocks, P blocks), fp32 [nb, b, b], differentiable in θ."""
        use = kernels_run_on(self.theta.device) if kernels is None else kernels
        if use:
            from kernels.poet import launch

            def rot(theta: torch.Tensor, b: int) -> torch.Tensor:
                return launch.cayley_neumann(launch.skew_from_vec(theta, b), self.c, precision)
        else:

            def rot(theta: torch.Tensor, b: int) -> torch.Tensor:
                return ref.cayley_neumann(ref.skew_from_vec(theta, b), self.c)

        if self.block_in == self.block_out:  # both sides in one batch of blocks
            both = rot(self.theta.view(self.nb_out + self.nb_in, -1), self.block_out)
            return both[: self.nb_out], both[self.nb_out :]
        return rot(self.theta_r, self.block_out), rot(self.theta_p, self.block_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self.w0p.dtype
        if torch.is_autocast_enabled(x.device.type):
            dtype = torch.get_autocast_dtype(x.device.type)
        use = self._kernels(x)
        with torch.autocast(x.device.type, enabled=False):
            x = x.to(dtype)
            w0p = self.w0p.to(dtype)
            bias = None if self.bias is None else self.bias.to(dtype)
            # R is rounded to the activations' dtype: below fp32, bf16 products lose little
            precision = "ieee" if dtype == torch.float32 else "bf16"
            r, p = self.rotations(kernels=use, precision=precision)
            if use:
                from kernels.poet import launch

                return launch.poet_linear(
                    x, w0p, r, p, self.perm_in, self.perm_out, bias, recompute=self.mode == "mem"
                )
            lead = x.shape[:-1]
            y = ref.poet_linear(
                x.reshape(-1, self.in_features),
                w0p,
                r,
                p,
                self.perm_in.long(),
                self.perm_out.long(),
                bias,
            )
            return y.view(*lead, self.out_features)

    @torch.no_grad()
    def effective_weight(self) -> torch.Tensor:
        """W_eff = R·W0·P in fp32, materialised (tests and merging)."""
        r, p = self.rotations(kernels=False)
        return ref.effective_weight(
            self.w0p.float(), r, p, self.perm_in.long(), self.perm_out.long()
        )

    @torch.no_grad()
    def base_weight(self) -> torch.Tensor:
        """W0 in the natural frame (fp32)."""
        inv_in, inv_out = torch.argsort(self.perm_in.long()), torch.argsort(self.perm_out.long())
        return self.w0p.float()[inv_out][:, inv_in]

    @torch.no_grad()
    def merge(self, generator: torch.Generator | None = None) -> None:
        """Fold R and P into W0, draw new permutations, reset θ to 0 (the function is kept,
        up to rounding W_eff to the base weight's dtype)."""
        w_eff = self.effective_weight()
        dev = self.w0p.device
        self.perm_in.copy_(_randperm(self.in_features, generator, dev))
        self.perm_out.copy_(_randperm(self.out_features, generator, dev))
        self.w0p.copy_(w_eff[self.perm_out.long()][:, self.perm_in.long()].to(self.w0p.dtype))
        self.theta.zero_()


def poet_layers(model: nn.Module) -> list[POETLinear]:
    """Every POETLinear in `model`."""
    return [m for m in model.modules() if isinstance(m, POETLinear)]


def patch(
    model: nn.Module,
    block: int = 256,
    *,
    mode: str = "fast",
    skip: Iterable[str] = ("lm_head",),
    use_kernels: bool | None = None,
    seed: int = 0,
) -> list[str]:
    """Replace every nn.Linear of `model` (except modules whose name ends with one of `skip`)
    by a POETLinear on the same weight, in place; freeze nothing else. Returns the names
    replaced. Each layer's permutations come from one generator seeded with `seed`."""
    skip = tuple(skip)
    gen = torch.Generator().manual_seed(seed)
    replaced = []
    # hold the parents only: a replaced nn.Linear (and its weight) is freed at once
    parents = [
        (name, m)
        for name, m in model.named_modules()
        if any(type(c) is nn.Linear for c in m.children())
    ]
    for name, module in parents:
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if type(child) is not nn.Linear or full.endswith(skip):
                continue
            layer = POETLinear.from_linear(
                child, block, mode=mode, use_kernels=use_kernels, generator=gen
            )
            setattr(module, child_name, layer)
            del child
            replaced.append(full)
    if not replaced:
        raise ValueError("patch found no nn.Linear to replace")
    return replaced
