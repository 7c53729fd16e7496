"""Bound launches of the SAGE (and Lion) step: one plan per parameter, the host's work done once.

A SAGE step is three launches (column statistic, scale, fused apply). On a 4096×4096 fp32
matrix the GPU needs ~0.15 ms for all three, while Triton 3.6's general launch path (the
autotuner's key, the JIT's argument binding and specialisation key, `triton.cdiv`, a device
property query) plus two scratch allocations cost tens of µs a launch on the host: the step was
paced by the host, not the GPU.

`SageStepPlan` binds one parameter's step: at the first call (and whenever what Triton
specialised on changes: shape, dtypes, contiguity, pointer alignment, where the parameter and
its state live, the momentum order) it checks the inputs, allocates its scratch (column
partials and H), launches through the general path (which tunes and compiles) and keeps each
compiled kernel with its config, grid and constexprs. Later calls compare a short signature and
call the compiled launchers directly with integer device pointers. The kernels, their configs
and every argument value are those of `sage_step_`: the results are bit-identical.
"""

from __future__ import annotations

from typing import Any

import torch
from triton import knobs

from kernels.sage import sage_kernels as sk
from kernels.sage.reference import as_matrix
from kernels.sage.sage_kernels import SageScalars, sage_scalars

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

__all__ = ["SageScalars", "SageStepPlan", "direct_launch_allowed", "sage_scalars"]

# Whether compiled kernels may be launched directly (off under the interpreter, which compiles
# nothing, and for good once a launcher refuses the direct call).
FAST_LAUNCH = {"on": not sk.INTERPRET}
_current_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)


def _raw_stream(index: int) -> int:
    """The current CUDA stream's handle, as Triton's own launcher gets it."""
    if _current_raw_stream is not None:
        return _current_raw_stream(index)
    return torch.cuda.current_stream(index).cuda_stream


def _hook_active(hook: Any) -> bool:
    """A launch hook that would run: triton 3.6 keeps None when unset, later ones an empty
    HookChain."""
    if hook is None:
        return False
    calls = getattr(hook, "calls", None)
    return calls is None or len(calls) > 0


def direct_launch_allowed() -> bool:
    """Direct launches skip Triton's launch hooks, so they are taken only when none is set (a
    profiler such as proton sets them). Evaluated once per optimizer step and group."""
    if not FAST_LAUNCH["on"]:
        return False
    rt = knobs.runtime
    return not (_hook_active(rt.launch_enter_hook) or _hook_active(rt.launch_exit_hook))


def _compiled(handle: Any) -> tuple | None:
    """(run, function, packed metadata) of what a JIT launch returned, or None when it is not a
    compiled kernel (the interpreter returns None)."""
    if handle is None or not hasattr(handle, "packed_metadata"):
        return None
    try:
        return handle.run, handle.function, handle.packed_metadata
    except (AttributeError, RuntimeError):
        return None


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
        self._col_grid: tuple[int, int] = (0, 0)
        self._apply_grid = 0
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
        stream = _raw_stream(self._device)
        scaled = False  # whether S and H of this step are already written
        try:
            if self.has_scale:
                c_run, c_fn, c_meta, s_run, s_fn, s_meta, a_run, a_fn, a_meta = run
                c0, c1 = self._col_grid
                c_run(c0, c1, 1, stream, c_fn, c_meta, None, None, None, gp, *self._col_tail)
                s_run(
                    1,
                    1,
                    1,
                    stream,
                    s_fn,
                    s_meta,
                    None,
                    None,
                    None,
                    *self._scale_head,
                    sc.beta2,
                    sc.one_minus_beta2,
                    1.0 - sc.beta2**step,
                    sc.eps,
                    sk.SCALE_BLOCK,
                )
                scaled = True
                hp = self._scale_head[2]
            else:
                a_run, a_fn, a_meta = run
                hp = pp
            a_run(
                self._apply_grid,
                1,
                1,
                stream,
                a_fn,
                a_meta,
                None,
                None,
                None,
                pp,
                gp,
                mp,
                hp,
                self._n_rows,
                self._n_cols,
                *sc.apply,
                *self._apply_tail,
            )
        except (TypeError, SystemError, AttributeError):
            # This Triton's launcher takes other arguments (it refuses them before launching):
            # the general path from now on, resuming where the direct launches stopped, so S is
            # updated once.
            FAST_LAUNCH["on"] = False
            self._direct = None
            self._launch_general(p, g, m, s_ema, step, sc, apply_only=scaled)

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
        sk._check(p, g, m)
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
            n_splits, rows_per_split = sk.row_splits(n_rows, n_cols, p.device)
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
        compiled = [_compiled(h) for h in handles]
        if any(c is None for c in compiled):
            return
        apply_cfg = sk._sage_apply_kernel.best_config.kwargs
        self._apply_grid = sk.apply_grid(n_rows, n_cols, apply_cfg)
        self._apply_tail = (
            self.has_scale,
            sc.code_order,
            apply_cfg["BLOCK_R"],
            apply_cfg["BLOCK_C"],
        )
        if self.has_scale:
            col_cfg = sk._sage_col_abs_sum_kernel.best_config.kwargs
            self._col_grid = (sk.cdiv(n_cols, col_cfg["BLOCK_C"]), n_splits)
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
        self._direct = tuple(x for c in compiled for x in c)

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
            handles.append(sk.launch_col_abs_sum(gm, self.partial, self._rows_per_split))
            handles.append(
                sk.launch_scale(
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
        handles.append(sk.launch_apply(pm, gm, mm, h, sc, has_scale=self.has_scale))
        return handles
