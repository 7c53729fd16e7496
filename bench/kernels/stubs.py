"""Stand-ins for Triton launches, for timing the host path around a kernel on a machine without
a GPU (and without the interpreter's cost): a launch takes its arguments and does nothing.
Nothing is computed; for host timing only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from kernels.runtime import launch as runtime_launch


class StubCompiled:
    """Stands for a compiled kernel: its launcher takes any arguments and does nothing."""

    packed_metadata = None
    function = 0

    @staticmethod
    def run(*args: object) -> None:
        return None

    def launch_metadata(self, *args: object) -> None:
        return None


class StubKernel:
    """Stands for a JIT (or autotuned) kernel: `kernel[grid](...)` evaluates a callable grid as
    Triton does (with `config`'s meta-parameters) and returns a `StubCompiled`."""

    def __init__(self, arg_names: list[str] | None = None, config: Any = None) -> None:
        self.arg_names = arg_names or []
        self.best_config = config

    def __getitem__(self, grid: Any) -> Callable[..., StubCompiled]:
        def launch(*args: object, **kwargs: object) -> StubCompiled:
            if callable(grid):
                grid({**(self.best_config.kwargs if self.best_config else {}), **kwargs})
            return StubCompiled()

        return launch


@contextlib.contextmanager
def direct_launches_forced() -> Iterator[None]:
    """Direct launches on (as on a GPU) with stream 0, whatever this machine is."""
    saved = (runtime_launch.FAST_LAUNCH["on"], runtime_launch.raw_stream)
    runtime_launch.FAST_LAUNCH["on"] = True
    runtime_launch.raw_stream = lambda index: 0
    try:
        yield
    finally:
        runtime_launch.FAST_LAUNCH["on"], runtime_launch.raw_stream = saved
