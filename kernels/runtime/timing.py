"""One timing harness for benchmarks and claims: median time, the host's time to issue a call,
back-to-back time per call, per-kernel device time (profiler) and peak memory.

On CUDA the median comes from ``triton.testing.do_bench`` (L2 flushed between calls); on the CPU
(smoke runs, the interpreter) from a few wall-clock calls, so the same code runs in CI.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def sync(device: torch.device) -> None:
    """Wait for `device` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(
    fn: Callable[[], Any], device: torch.device, *, warmup: int = 25, rep: int = 100
) -> float:
    """Median milliseconds of fn: do_bench on CUDA (warmup/rep in ms), three timed calls
    after one untimed call on the CPU."""
    if device.type == "cuda":
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))
    fn()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def host_issue_us(fn: Callable[[], Any], device: torch.device, iters: int) -> float:
    """Median µs the host takes to return from fn, the GPU idle at each call (synchronised
    before): the cost of issuing the call, whatever the GPU then takes to run it."""
    fn()
    times = []
    for _ in range(iters):
        sync(device)
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    sync(device)
    return statistics.median(times) * 1e6


def back_to_back_ms(fn: Callable[[], Any], device: torch.device, n: int = 30) -> float:
    """ms per call over `n` calls issued back to back (no cache flush between them): the GPU's
    time per call when the host issues faster than the GPU runs, the host's otherwise."""
    fn()
    sync(device)
    if device.type != "cuda":
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) * 1e3 / n
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(n):
        fn()
    end.record()
    sync(device)
    return start.elapsed_time(end) / n


def event_median_ms(
    prepare: Callable[[int], Any],
    timed: Callable[[Any], Any],
    *,
    iters: int,
    warmup: int,
) -> tuple[float, float]:
    """Median GPU ms (CUDA events) of ``timed(prepare(i))`` with prepare untimed, and the median
    ms the host took to issue it: when the two are close the call is paced by the host."""
    gpu, host = [], []
    for i in range(warmup + iters):
        arg = prepare(i)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        t0 = time.perf_counter()
        timed(arg)
        t1 = time.perf_counter()
        end.record()
        if i >= warmup:
            gpu.append((start, end))
            host.append((t1 - t0) * 1e3)
        del arg
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in gpu), statistics.median(host)


def kernel_times_us(fn: Callable[[], Any], device: torch.device, steps: int = 10) -> str:
    """Device µs per call of each kernel fn launches (torch.profiler), 'name=µs;...'; a
    diagnostic, so a profiler failure is reported in the string, never raised."""
    try:
        from torch.profiler import ProfilerActivity, profile

        fn()
        sync(device)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(steps):
                fn()
            sync(device)
        parts = []
        for evt in prof.key_averages():
            total = getattr(evt, "device_time_total", None)
            if total is None:
                total = getattr(evt, "cuda_time_total", 0.0)
            if total > 0:
                parts.append((evt.key[:48], total / steps))
        parts.sort(key=lambda kv: -kv[1])
        return ";".join(f"{k}={v:.1f}" for k, v in parts) or "none recorded"
    except Exception as exc:
        return f"unavailable: {exc!r}"[:200]


def peak_memory_bytes(fn: Callable[[], Any], device: torch.device) -> int:
    """Bytes of fn's peak allocation above what lived before it (CUDA). Call fn once before so
    weights and states already exist and count as 'before'."""
    sync(device)
    gc.collect()  # nothing left over from earlier work may be freed inside the measurement
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    sync(device)
    return torch.cuda.max_memory_allocated(device) - before
