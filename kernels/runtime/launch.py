"""Bound direct launches: call a compiled Triton kernel without the JIT's per-call work.

Triton's general launch (the autotuner's key, the JIT's argument binding and specialisation
key, a `data_ptr()` and a driver pointer query per tensor) costs tens of µs on a slow host; an
optimizer step of many small launches is then paced by the host, not the GPU. A caller launches
once through the JIT (which compiles), keeps the returned kernel as a `BoundLaunch`, and later
calls it with integer device pointers and every other argument positional, constexprs included.

The direct call uses Triton's private launcher (``run(grid, stream, function, metadata, hooks,
*args)``, triton 3.6 to 3.9). If a Triton refuses it (it raises before launching), `BoundLaunch`
returns False, turns direct launches off for the process, and the caller takes its ordinary
launch. Direct launches skip Triton's launch hooks, so they are not taken while a hook (a
profiler's) is set. Under the interpreter nothing is compiled: every launch is ordinary.
"""

from __future__ import annotations

from typing import Any

import torch
from triton import knobs

from .device import interpreting

# Whether compiled kernels may be launched directly: off under the interpreter, and for good
# once a launcher refuses the direct call.
FAST_LAUNCH = {"on": not interpreting()}
# what a launcher raises when it takes other arguments (before launching anything)
REFUSED = (TypeError, SystemError, AttributeError)
_current_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)


def raw_stream(index: int) -> int:
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


def hooks_set() -> bool:
    """Whether a launch hook (a profiler's) wants each launch's metadata."""
    rt = knobs.runtime
    return _hook_active(rt.launch_enter_hook) or _hook_active(rt.launch_exit_hook)


def direct_launch_allowed() -> bool:
    """Direct launches are on and no launch hook is set (evaluate once per step, not per
    launch)."""
    return FAST_LAUNCH["on"] and not hooks_set()


def specialisation(v: int) -> tuple[bool, bool]:
    """What Triton specialises an integer argument on: == 1, and divisibility by 16."""
    return v == 1, v % 16 == 0


class BoundLaunch:
    """A compiled kernel and its device, launched directly with positional arguments."""

    __slots__ = ("device", "function", "handle", "packed", "run")

    def __init__(self, handle: Any, device: int) -> None:
        self.handle = handle
        self.run = handle.run
        self.function = handle.function
        self.packed = handle.packed_metadata
        self.device = device

    @classmethod
    def of(cls, handle: Any, device: int) -> BoundLaunch | None:
        """The bound launch of what a JIT launch returned; None when it returned no compiled
        kernel (the interpreter) or direct launches are off."""
        if not FAST_LAUNCH["on"] or handle is None or not hasattr(handle, "packed_metadata"):
            return None
        try:
            return cls(handle, device)
        except (AttributeError, RuntimeError):
            return None

    def __call__(self, grid: tuple[int, int, int], *args: Any) -> bool:
        """Launch on the current stream with `args` (every kernel argument, constexprs
        included, pointers as ints or tensors). False when this Triton refused the call: direct
        launches are then off and the caller launches the ordinary way."""
        try:
            self.run(
                *grid, raw_stream(self.device), self.function, self.packed, None, None, None, *args
            )
        except REFUSED:
            FAST_LAUNCH["on"] = False
            return False
        return True

    def with_hooks(self, grid: tuple[int, int, int], *args: Any) -> bool:
        """As `__call__`, passing Triton's launch metadata and hooks (for the general path,
        where a profiler may be listening)."""
        stream = raw_stream(self.device)
        try:
            self.run(
                *grid,
                stream,
                self.function,
                self.packed,
                self.handle.launch_metadata(grid, stream, *args),
                knobs.runtime.launch_enter_hook,
                knobs.runtime.launch_exit_hook,
                *args,
            )
        except REFUSED:
            FAST_LAUNCH["on"] = False
            return False
        return True
