"""Choose a kernel config by timing every candidate, for kernels that update in place.

`triton.autotune` times in-place kernels on its own restored copies (``restore_value``) and
keeps per-call bookkeeping; here each candidate runs on scratch copies of the in-place arguments
(the real ones are never touched while tuning), the choice is remembered by a caller's key, and
every candidate's time is logged for the benchmarks to report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import torch

from .timing import median_ms

Config = TypeVar("Config")


@dataclass
class Tuner(Generic[Config]):
    """Remembered choices by key, and a log of every tuning (times in ms, or the error)."""

    name: Callable[[Config], str] = repr
    chosen: dict[Any, Config] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)

    def choose(
        self,
        key: Any,
        candidates: Sequence[Config],
        launch: Callable[[Config, Sequence[torch.Tensor]], Any],
        inplace: Sequence[torch.Tensor],
        *,
        warmup_ms: int = 10,
        rep_ms: int = 40,
    ) -> Config:
        """The fastest of `candidates` for `key` (timed once per key). `launch(cfg, scratch)`
        runs the kernel with `cfg` on `scratch`, copies of `inplace` in their order."""
        if key in self.chosen:
            return self.chosen[key]
        if len(candidates) == 1:
            self.chosen[key] = candidates[0]
            return candidates[0]
        scratch = [t.clone() for t in inplace]
        times: dict[str, float] = {}
        best, best_ms = candidates[0], float("inf")
        for cfg in candidates:

            def run(cfg: Config = cfg) -> None:
                launch(cfg, scratch)

            try:
                run()  # compile
                ms = median_ms(run, scratch[0].device, warmup=warmup_ms, rep=rep_ms)
            except Exception as exc:  # a config the compiler or the GPU cannot take
                times[self.name(cfg)] = float("inf")
                self.log.append({"key": repr(key), "config": self.name(cfg), "error": repr(exc)})
                continue
            times[self.name(cfg)] = ms
            if ms < best_ms:
                best, best_ms = cfg, ms
        self.log.append({"key": repr(key), "times_ms": times, "best": self.name(best)})
        self.chosen[key] = best
        return best
