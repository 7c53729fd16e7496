"""SAGE's, Lion's and SinkGD's host launchers, and the bound launches of the SAGE (and Lion)
step: one plan per parameter, the host's work done once.

`sage_step_`, `lion_step_` and `sinkgd_step_` are the general entries (checks, scratch, grids
and Triton's launch path on every call). A SAGE step is three launches (column statistic, scale,
fused apply); on a 4096×4096 fp32 matrix the GPU needs ~0.15 ms for all three, while Triton
3.6's general launch path plus two scratch allocations cost tens of µs a launch on the host: the
step was paced by the host, not the GPU.

`SageStepPlan` binds one parameter's step: at the first call (and whenever what Triton
specialised on changes: shape, dtypes, contiguity, pointer alignment, where the parameter and
its state live, the momentum order) it checks the inputs, allocates its scratch (column
partials and H), launches through the general path (which tunes and compiles) and keeps each
compiled kernel as a `kernels.runtime.launch.BoundLaunch` with its config, grid and constexprs.
Later calls compare a short signature and launch directly with integer device pointers. The
kernels, their configs and every argument value are those of `sage_step_`: the results are
bit-identical.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import triton

from kernels.runtime.launch import FAST_LAUNCH, BoundLaunch, direct_launch_allowed
from kernels.sage import kernels as sk
from kernels.sage.reference import MomentumOrder, as_matrix

__all__ = [
    "FAST_LAUNCH",
    "SageScalars",
    "SageStepPlan",
    "direct_launch_allowed",
    "lion_step_",
    "sage_scalars",
    "sage_step_",
    "sinkgd_scales",
    "sinkgd_step_",
]

# the scale kernel's column block (one program walks the columns in blocks of this size)
SCALE_BLOCK = 1024
SCALE_WARPS = 4


class SageScalars(NamedTuple):
    """A group's step scalars, formed once per step on the host in double precision (as torch
    does with Python scalars) and handed to the kernels as floats."""

    apply: tuple[float, float, float, float, float, float]  # decay, lr, β1, 1−β1, β2, 1−β2
    beta2: float
    one_minus_beta2: float
    eps: float
    code_order: bool


def sage_scalars(
    *,
    lr: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
    eps: float = 0.0,
    order: MomentumOrder = "paper",
) -> SageScalars:
    """The scalars of one step (floats always: an int would compile another kernel variant)."""
    if order not in ("paper", "code"):
        raise ValueError(f"order must be 'paper' or 'code', not {order!r}")
    lr, beta1, beta2 = float(lr), float(beta1), float(beta2)
    wd, eps = float(weight_decay), float(eps)
    return SageScalars(
        apply=(1.0 - lr * wd, lr, beta1, 1.0 - beta1, beta2, 1.0 - beta2),
        beta2=beta2,
        one_minus_beta2=1.0 - beta2,
        eps=eps,
        code_order=order == "code",
    )


def cdiv(a: int, b: int) -> int:
    """Ceiling division of ints (`triton.cdiv` is a JIT-aware function, µs a call on the host)."""
    return -(-a // b)


_TARGET_PROGRAMS: dict[tuple[str, int | None], int] = {}


def _target_programs(device: torch.device) -> int:
    """Programs the column statistic aims for: 4 per SM (cached per device)."""
    key = (device.type, device.index)
    n = _TARGET_PROGRAMS.get(key)
    if n is None:
        if sk.INTERPRET or device.type != "cuda":
            n = 4
        else:
            n = 4 * torch.cuda.get_device_properties(device).multi_processor_count
        _TARGET_PROGRAMS[key] = n
    return n


def row_splits(n_rows: int, n_cols: int, device: torch.device) -> tuple[int, int]:
    """(n_splits, rows_per_split) of the column statistic's deterministic split reduction."""
    n_col_blocks = cdiv(n_cols, 128)
    n_splits = max(1, min(n_rows, _target_programs(device) // n_col_blocks))
    rows_per_split = cdiv(n_rows, n_splits)
    return cdiv(n_rows, rows_per_split), rows_per_split


def apply_grid(n_rows: int, n_cols: int, meta: dict[str, Any]) -> int:
    """Programs of the apply kernel: one per (BLOCK_R, BLOCK_C) tile, on a flat grid."""
    return cdiv(n_rows, meta["BLOCK_R"]) * cdiv(n_cols, meta["BLOCK_C"])


def _check(p: torch.Tensor, *others: torch.Tensor) -> None:
    if p.dtype not in sk.SUPPORTED_DTYPES:
        raise TypeError(f"SAGE kernels take fp32, bf16 or fp16 parameters, not {p.dtype}")
    for t in (p, *others):
        if not t.is_contiguous():
            raise ValueError("SAGE kernels need contiguous tensors")
        if t.device != p.device:
            raise ValueError("all tensors of one step must be on one device")


def launch_col_abs_sum(gm: torch.Tensor, partial: torch.Tensor, rows_per_split: int) -> Any:
    """Launch the column statistic of the (rows, cols) gradient `gm` into `partial`
    (n_splits, cols), as `row_splits` cuts the rows; returns what the launch returned (the
    compiled kernel on a GPU)."""
    n_rows, n_cols = gm.shape
    n_splits = partial.shape[0]

    def grid(meta: dict) -> tuple[int, int]:
        return (cdiv(n_cols, meta["BLOCK_C"]), n_splits)

    return sk._sage_col_abs_sum_kernel[grid](gm, partial, n_rows, n_cols, rows_per_split)


def launch_scale(
    partial: torch.Tensor,
    s_ema: torch.Tensor,
    h: torch.Tensor,
    n_rows: int,
    beta2: float,
    bias_correction: float,
    eps: float,
) -> Any:
    """Launch the scale kernel (one program): S and H from the column partials."""
    return sk._sage_scale_kernel[(1,)](
        partial,
        s_ema,
        h,
        h.numel(),
        partial.shape[0],
        float(n_rows),
        beta2,
        1.0 - beta2,
        bias_correction,
        eps,
        BLOCK=SCALE_BLOCK,
        num_warps=SCALE_WARPS,
    )


def launch_apply(
    pm: torch.Tensor,
    gm: torch.Tensor,
    mm: torch.Tensor,
    h: torch.Tensor,
    sc: SageScalars,
    *,
    has_scale: bool,
) -> Any:
    """Launch the fused apply pass on (rows, cols) views; `h` is ignored without a scale."""
    n_rows, n_cols = pm.shape

    def grid(meta: dict) -> tuple[int]:
        return (apply_grid(n_rows, n_cols, meta),)

    return sk._sage_apply_kernel[grid](
        pm,
        gm,
        mm,
        h,
        n_rows,
        n_cols,
        *sc.apply,
        HAS_SCALE=has_scale,
        CODE_ORDER=sc.code_order,
    )


def sage_column_abs_sum_partials(g: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Partial column sums of |g| (n_splits, cols) in fp32, and the row count they cover."""
    gm = as_matrix(g)
    n_rows, n_cols = gm.shape
    n_splits, rows_per_split = row_splits(n_rows, n_cols, g.device)
    partial = torch.empty((n_splits, n_cols), dtype=torch.float32, device=g.device)
    launch_col_abs_sum(gm, partial, rows_per_split)
    return partial, n_rows


def sage_step_(
    p: torch.Tensor,
    g: torch.Tensor,
    m: torch.Tensor,
    s_ema: torch.Tensor,
    step: int,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    order: MomentumOrder = "paper",
    scale_out: torch.Tensor | None = None,
) -> torch.Tensor:
    """One SAGE step with the Triton kernels, in place on p, m (dtype of p) and s_ema (fp32,
    (cols,)); returns H (fp32, (cols,)), written into `scale_out` when given. `step` counts from 1.

    The general entry: it checks, allocates its scratch and goes through Triton's launcher on
    every call. The optimizers step each parameter through a bound `launch.SageStepPlan`.
    """
    _check(p, g, m)
    if s_ema.dtype != torch.float32 or not s_ema.is_contiguous():
        raise TypeError("s_ema must be a contiguous fp32 tensor")
    sc = sage_scalars(
        lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay, eps=eps, order=order
    )
    if step < 1:
        raise ValueError("step counts from 1")
    pm, gm, mm = as_matrix(p), as_matrix(g), as_matrix(m)
    n_rows, n_cols = pm.shape
    if s_ema.numel() != n_cols:
        raise ValueError(f"s_ema has {s_ema.numel()} entries, the parameter has {n_cols} columns")
    h = scale_out
    if h is None:
        h = torch.empty(n_cols, dtype=torch.float32, device=p.device)
    elif h.numel() != n_cols or h.dtype != torch.float32 or not h.is_contiguous():
        raise ValueError("scale_out must be a contiguous fp32 tensor with one entry per column")
    partial, _ = sage_column_abs_sum_partials(g)
    launch_scale(partial, s_ema, h, n_rows, sc.beta2, 1.0 - sc.beta2**step, sc.eps)
    launch_apply(pm, gm, mm, h, sc, has_scale=True)
    return h


def lion_step_(
    p: torch.Tensor,
    g: torch.Tensor,
    m: torch.Tensor,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
) -> None:
    """One Lion step with the SAGE apply kernel (H ≡ 1), in place on p and m."""
    _check(p, g, m)
    sc = sage_scalars(lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay)
    pm, gm, mm = as_matrix(p), as_matrix(g), as_matrix(m)
    launch_apply(pm, gm, mm, pm, sc, has_scale=False)


_TABLES: dict[tuple[int, ...], torch.Tensor] = {}


def _pointer_table(tensors: list[torch.Tensor]) -> torch.Tensor:
    """An int64 device tensor of the tensors' addresses (cached: the caching allocator hands
    gradients the same addresses step after step)."""
    key = (tensors[0].device.index or 0, *(t.data_ptr() for t in tensors))
    table = _TABLES.get(key)
    if table is None:
        if len(_TABLES) > 256:
            _TABLES.clear()
        ptrs = [t.data_ptr() for t in tensors]
        table = torch.tensor(ptrs, dtype=torch.int64).to(tensors[0].device)
        _TABLES[key] = table
    return table


def sinkgd_scales(
    grads: list[torch.Tensor], *, iters: int = 5, eps: float = 1e-8
) -> tuple[torch.Tensor, torch.Tensor]:
    """The row and column scales (B, rows), (B, cols) in fp32 such that the SinkGD update of
    grads[k] is a[k, :, None] · G_k · b[k, None, :]. All grads share shape, dtype and device."""
    if iters < 1:
        raise ValueError("SinkGD needs at least one normalisation")
    g0 = as_matrix(grads[0])
    n_rows, n_cols = g0.shape
    for g in grads:
        if g.shape != grads[0].shape or g.dtype != g0.dtype or g.device != g0.device:
            raise ValueError("one SinkGD group holds tensors of one shape, dtype and device")
        if not g.is_contiguous():
            raise ValueError("SinkGD kernels need contiguous gradients")
    n = len(grads)
    a = torch.empty((n, n_rows), dtype=torch.float32, device=g0.device)
    b = torch.empty((n, n_cols), dtype=torch.float32, device=g0.device)
    table = _pointer_table(grads)
    row_target, col_target = math.sqrt(n_cols), math.sqrt(n_rows)

    def row_grid(meta: dict) -> tuple[int, int]:
        return (triton.cdiv(n_rows, meta["BLOCK_R"]), n)

    def col_grid(meta: dict) -> tuple[int, int]:
        return (triton.cdiv(n_cols, meta["BLOCK_C"]), n)

    for it in range(iters):
        first = it == 0
        sk._sinkgd_row_kernel[row_grid](
            table, g0, a, b, n_rows, n_cols, row_target, eps, FIRST=first
        )
        sk._sinkgd_col_kernel[col_grid](
            table, g0, a, b, n_rows, n_cols, col_target, eps, FIRST=first
        )
    return a, b


def sinkgd_step_(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    *,
    lr: float,
    weight_decay: float,
    iters: int = 5,
    eps: float = 1e-8,
) -> None:
    """One SinkGD step on a group of same-shape parameters, in place, with the Triton kernels."""
    if len(params) != len(grads) or not params:
        raise ValueError("one gradient per parameter, at least one parameter")
    p0 = as_matrix(params[0])
    for p, g in zip(params, grads, strict=True):
        if p.shape != g.shape or p.dtype != params[0].dtype or not p.is_contiguous():
            raise ValueError("SinkGD parameters must be contiguous and match their gradients")
    a, b = sinkgd_scales(grads, iters=iters, eps=eps)
    n_rows, n_cols = p0.shape
    p_table = _pointer_table(params)
    g_table = _pointer_table(grads)

    def grid(meta: dict) -> tuple[int, int]:
        blocks = triton.cdiv(n_rows, meta["BLOCK_R"]) * triton.cdiv(n_cols, meta["BLOCK_C"])
        return (blocks, len(params))

    sk._sinkgd_apply_kernel[grid](
        p_table,
        p0,
        g_table,
        as_matrix(grads[0]),
        a,
        b,
        n_rows,
        n_cols,
        1.0 - lr * weight_decay,
        lr,
    )


# Argument order of each kernel (the compiled launcher takes them positionally, constexprs
# included); checked against the kernels' signatures at import.
COL_SUM_ARGS = ("g_ptr", "partial_ptr", "n_rows", "n_cols", "rows_per_split", "BLOCK_R", "BLOCK_C")
SCALE_ARGS = (
    "partial_ptr",
    "s_ema_ptr",
    "h_ptr",
    "n_cols",
    "n_splits",
    "n_rows_f",
    "beta2",
    "one_minus_beta2",
    "bias_correction",
    "eps",
    "BLOCK",
)
APPLY_ARGS = (
    "p_ptr",
    "g_ptr",
    "m_ptr",
    "h_ptr",
    "n_rows",
    "n_cols",
    "decay",
    "lr",
    "beta1",
    "one_minus_beta1",
    "beta2",
    "one_minus_beta2",
    "HAS_SCALE",
    "CODE_ORDER",
    "BLOCK_R",
    "BLOCK_C",
)


def check_argument_orders() -> None:
    """Raise if a kernel's signature no longer matches the order the direct launch uses."""
    for kernel, names in (
        (sk._sage_col_abs_sum_kernel, COL_SUM_ARGS),
        (sk._sage_scale_kernel, SCALE_ARGS),
        (sk._sage_apply_kernel, APPLY_ARGS),
    ):
        if tuple(kernel.arg_names) != names:
            raise RuntimeError(f"kernel signature changed: {kernel.arg_names} != {names}")


check_argument_orders()


class SageStepPlan:
    """One parameter's SAGE step (or Lion's, ``has_scale=False``), bound once.

    Call it with the parameter, its gradient, its state and the group's `SageScalars`; it owns
    the scratch of the step (column partials and H, fp32), so a step allocates nothing.
    """

    __slots__ = (
        "_apply_grid",
        "_apply_tail",
        "_col_grid",
        "_col_tail",
        "_device",
        "_direct",
        "_n_cols",
        "_n_rows",
        "_rows_per_split",
        "_scale_head",
        "_sig",
        "has_scale",
        "partial",
        "scale",
    )

    def __init__(self, has_scale: bool = True) -> None:
        self.has_scale = has_scale
        self._sig: tuple | None = None
        self._direct: tuple | None = None
        self.partial: torch.Tensor | None = None  # (n_splits, cols) fp32
        self.scale: torch.Tensor | None = None  # H, (cols,) fp32
        self._n_rows = self._n_cols = self._rows_per_split = 0
        self._device = 0
        self._col_grid: tuple[int, int, int] = (0, 0, 1)
        self._apply_grid: tuple[int, int, int] = (0, 1, 1)
        self._col_tail: tuple = ()
        self._scale_head: tuple = ()
        self._apply_tail: tuple = ()

    def __call__(
        self,
        p: torch.Tensor,
        g: torch.Tensor,
        m: torch.Tensor,
        s_ema: torch.Tensor | None,
        step: int,
        sc: SageScalars,
        direct: bool,
    ) -> None:
        """One step in place on p, m and s_ema (`step` counts from 1; unused by Lion).
        `direct` is `direct_launch_allowed()`, evaluated by the caller once per step."""
        pp = p.data_ptr()
        gp = g.data_ptr()
        mp = m.data_ptr()
        sp = s_ema.data_ptr() if s_ema is not None else 0
        sig = (
            pp,
            mp,
            sp,
            gp % 16 == 0,
            p.shape,
            p.dtype,
            g.dtype,
            m.dtype,
            p.is_contiguous() and g.is_contiguous() and m.is_contiguous(),
            sc.code_order,
        )
        if sig != self._sig:
            self._bind(sig, p, g, m, s_ema, step, sc)
            return
        run = self._direct
        if run is None or not direct:
            self._launch_general(p, g, m, s_ema, step, sc)
            return
        scaled = False  # whether S and H of this step are already written
        if self.has_scale:
            col, scale, apply = run
            if not col(self._col_grid, gp, *self._col_tail) or not scale(
                (1, 1, 1),
                *self._scale_head,
                sc.beta2,
                sc.one_minus_beta2,
                1.0 - sc.beta2**step,
                sc.eps,
                SCALE_BLOCK,
            ):
                self._refused(p, g, m, s_ema, step, sc, apply_only=False)
                return
            scaled = True
            hp = self._scale_head[2]
        else:
            (apply,) = run
            hp = pp
        if not apply(
            self._apply_grid,
            pp,
            gp,
            mp,
            hp,
            self._n_rows,
            self._n_cols,
            *sc.apply,
            *self._apply_tail,
        ):
            self._refused(p, g, m, s_ema, step, sc, apply_only=scaled)

    def _refused(
        self,
        p: torch.Tensor,
        g: torch.Tensor,
        m: torch.Tensor,
        s_ema: torch.Tensor | None,
        step: int,
        sc: SageScalars,
        apply_only: bool,
    ) -> None:
        """This Triton's launcher refused the direct call (before launching): the general path
        from now on, resuming where the direct launches stopped, so S is updated once."""
        self._direct = None
        self._launch_general(p, g, m, s_ema, step, sc, apply_only=apply_only)

    def _bind(
        self,
        sig: tuple,
        p: torch.Tensor,
        g: torch.Tensor,
        m: torch.Tensor,
        s_ema: torch.Tensor | None,
        step: int,
        sc: SageScalars,
    ) -> None:
        """A new signature: check, (re)allocate the scratch, launch through the general path
        (tuning and compiling on first sight) and keep what a direct launch needs."""
        self._sig = None
        self._direct = None
        _check(p, g, m)
        if tuple(g.shape) != tuple(p.shape) or tuple(m.shape) != tuple(p.shape):
            raise ValueError("p, g and m must have one shape")
        n_rows, n_cols = as_matrix(p).shape
        if self.has_scale:
            if s_ema is None:
                raise ValueError("a SAGE step needs its column statistic s_ema")
            if s_ema.dtype != torch.float32 or not s_ema.is_contiguous():
                raise TypeError("s_ema must be a contiguous fp32 tensor")
            if s_ema.numel() != n_cols or s_ema.device != p.device:
                raise ValueError(f"s_ema must hold {n_cols} entries on the parameter's device")
            if step < 1:
                raise ValueError("step counts from 1")
            n_splits, rows_per_split = row_splits(n_rows, n_cols, p.device)
            if (
                self.partial is None
                or self.partial.shape != (n_splits, n_cols)
                or self.partial.device != p.device
            ):
                self.partial = torch.empty((n_splits, n_cols), dtype=torch.float32, device=p.device)
                self.scale = torch.empty(n_cols, dtype=torch.float32, device=p.device)
        else:
            n_splits = rows_per_split = 0
            self.partial = self.scale = None
        self._n_rows, self._n_cols, self._rows_per_split = n_rows, n_cols, rows_per_split
        self._device = p.device.index if p.device.type == "cuda" else 0
        handles = self._launch_general(p, g, m, s_ema, step, sc)
        self._sig = sig
        bound = [BoundLaunch.of(h, self._device) for h in handles]
        if any(b is None for b in bound):
            return
        apply_cfg = sk._sage_apply_kernel.best_config.kwargs
        self._apply_grid = (apply_grid(n_rows, n_cols, apply_cfg), 1, 1)
        self._apply_tail = (
            self.has_scale,
            sc.code_order,
            apply_cfg["BLOCK_R"],
            apply_cfg["BLOCK_C"],
        )
        if self.has_scale:
            col_cfg = sk._sage_col_abs_sum_kernel.best_config.kwargs
            self._col_grid = (cdiv(n_cols, col_cfg["BLOCK_C"]), n_splits, 1)
            self._col_tail = (
                self.partial.data_ptr(),
                n_rows,
                n_cols,
                rows_per_split,
                col_cfg["BLOCK_R"],
                col_cfg["BLOCK_C"],
            )
            self._scale_head = (
                self.partial.data_ptr(),
                s_ema.data_ptr(),
                self.scale.data_ptr(),
                n_cols,
                n_splits,
                float(n_rows),
            )
        self._direct = tuple(bound)

    def _launch_general(
        self,
        p: torch.Tensor,
        g: torch.Tensor,
        m: torch.Tensor,
        s_ema: torch.Tensor | None,
        step: int,
        sc: SageScalars,
        apply_only: bool = False,
    ) -> list[Any]:
        """The step through Triton's general launch path, on the plan's scratch; returns what
        each launch returned (compiled kernels on a GPU). `apply_only`: S and H are written."""
        pm, gm, mm = as_matrix(p), as_matrix(g), as_matrix(m)
        handles = []
        if self.has_scale and not apply_only:
            handles.append(launch_col_abs_sum(gm, self.partial, self._rows_per_split))
            handles.append(
                launch_scale(
                    self.partial,
                    s_ema,
                    self.scale,
                    self._n_rows,
                    sc.beta2,
                    1.0 - sc.beta2**step,
                    sc.eps,
                )
            )
        h = self.scale if self.has_scale else pm
        handles.append(launch_apply(pm, gm, mm, h, sc, has_scale=self.has_scale))
        return handles
