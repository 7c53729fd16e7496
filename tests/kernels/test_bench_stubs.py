"""The host-path benches run real optimizer code around stubbed launches (no GPU, no
interpreter), through the bound direct launch, and put every kernel and flag back after."""

from __future__ import annotations

from kernels.runtime import launch as runtime_launch


def test_forge_host_bench_goes_through_the_bound_launch_and_restores() -> None:
    from bench.kernels import forge as bench
    from kernels.forge import launch

    kernel = launch._forge_linear_step_kernel
    flags = (runtime_launch.FAST_LAUNCH["on"], runtime_launch.raw_stream)
    res = bench.host_path_cpu(width=8, tokens=4, depth=2, rounds=1, iters=3)
    assert set(res) == {
        f"{m}_{k}" for m in bench.METHODS for k in ("backward_step_us", "per_layer_us")
    }
    assert all(v > 0 for v in res.values())
    assert launch._forge_linear_step_kernel is kernel
    assert (runtime_launch.FAST_LAUNCH["on"], runtime_launch.raw_stream) == flags


def test_stubbed_direct_launch_is_bound_and_called() -> None:
    from bench.kernels.stubs import StubKernel, direct_launches_forced

    with direct_launches_forced():
        assert runtime_launch.FAST_LAUNCH["on"] and runtime_launch.raw_stream(0) == 0
        handle = StubKernel()[(1,)](1, 2, 3)
        bound = runtime_launch.BoundLaunch.of(handle, 0)
        assert bound is not None and bound((1, 1, 1), 1, 2, 3) is True
