"""The shared kernel runtime: device detection, the timing harness, same-run ceilings, the test
support (guards, poison, the low-precision rule) and the interpreter canary."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kernels.runtime import device, timing
from kernels.runtime.ceilings import measure_ceilings
from kernels.runtime.testing import (
    assert_close_lowp,
    guarded,
    interpreter_quirks,
    poisoned,
    rel_err,
    seed_for,
)

REPO = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")


def test_device_module_is_the_one_reader_of_the_interpreter_switch() -> None:
    reads = re.compile(r"[\"']TRITON_INTERPRET[\"']")  # the variable's name as a string
    readers = [
        p.relative_to(REPO).as_posix()
        for root in ("kernels/runtime", "kernels/forge", "kernels/sage", "replication", "bench")
        for p in (REPO / root).rglob("*.py")
        if reads.search(p.read_text(encoding="utf-8"))
    ]
    assert readers == ["kernels/runtime/device.py"], readers


def test_interpreter_is_asked_for_only_without_a_gpu() -> None:
    code = (
        "import os\n"
        "from kernels.runtime.device import use_interpreter_without_gpu, interpreting\n"
        "print(use_interpreter_without_gpu(), interpreting(), os.environ.get('TRITON_INTERPRET'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "PITH_FORCE_GPU")}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    gpu = os.path.exists("/dev/nvidiactl")
    assert out.stdout.split() == (["False", "False", "None"] if gpu else ["True", "True", "1"])
    forced = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**env, "PITH_FORCE_GPU": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert forced.stdout.split() == ["False", "False", "None"]  # forced GPU: never interpret


def test_kernels_run_on_follows_the_mode() -> None:
    assert device.kernels_run_on(torch.device("cuda")) is True
    assert device.kernels_run_on(CPU) is device.interpreting()
    assert device.describe(CPU)["device"] == "cpu"


def test_timing_harness_measures_real_work() -> None:
    small = torch.randn(16, 16)
    big = torch.randn(1024, 1024)
    t_small = timing.median_ms(lambda: small @ small, CPU)
    t_big = timing.median_ms(lambda: big @ big, CPU)
    assert 0 < t_small < t_big  # 2**18 times the FLOPs (~2 GFLOP) cannot run faster
    calls = []
    host = timing.host_issue_us(lambda: calls.append(1), CPU, iters=5)
    assert host > 0 and len(calls) == 6  # one untimed call first, then the timed ones
    assert timing.back_to_back_ms(lambda: big @ big, CPU, n=3) > 0


def test_ceilings_are_measured_not_assumed() -> None:
    c = measure_ceilings(CPU, copy_numel=1 << 20, gemm_n=128)
    assert c.copy_tbps > 0 and c.gemm_bf16_tflops > 0 and c.device == "cpu"
    figures = c.figures()
    assert float(figures["ceiling_copy_tbps"]) == c.copy_tbps
    # moving twice the bytes in the same time is twice the fraction
    assert c.frac_of_copy(2e9, 1.0) == pytest.approx(2 * c.frac_of_copy(1e9, 1.0))
    assert c.frac_of_copy(c.copy_tbps * 1e9, 1.0) == pytest.approx(1.0)  # TB/s·1 ms = 1e9 B
    assert c.frac_of_gemm(c.gemm_bf16_tflops * 1e9, 1.0) == pytest.approx(1.0)


def test_guarded_buffer_catches_a_write_past_the_end() -> None:
    view, check = guarded(torch.arange(10, dtype=torch.float32))
    view.mul_(2)
    check()
    base = view.untyped_storage()
    flat = torch.empty(0, dtype=torch.float32).set_(base)
    offset = view.storage_offset()
    flat[offset + 10] = 0.0  # one element past the tensor
    with pytest.raises(AssertionError, match="outside"):
        check()


def test_poisoned_buffers_and_errors() -> None:
    assert torch.isnan(poisoned((3, 4), torch.bfloat16, "cpu")).all()
    assert (poisoned((5,), torch.int32, "cpu") == -12345).all()
    a = torch.ones(4)
    assert rel_err(a * 1.01, a) == pytest.approx(0.01, rel=1e-6)
    assert seed_for("a") == seed_for("a") != seed_for("b")


def test_low_precision_rule() -> None:
    g = torch.Generator().manual_seed(seed_for("lowp"))
    x = torch.randn(1000, generator=g)
    ref32 = x * 3.0
    torch_bf16 = (x.bfloat16() * 3.0).float()
    assert_close_lowp(torch_bf16, ref32, x.bfloat16() * 3.0)  # torch itself passes
    with pytest.raises(AssertionError, match="bound"):
        assert_close_lowp(ref32 + 0.5, ref32, x.bfloat16() * 3.0)  # far beyond 2x + 5e-2
    with pytest.raises(AssertionError):
        assert_close_lowp(torch.full_like(ref32, float("nan")), ref32, x.bfloat16() * 3.0)


@pytest.mark.skipif(not device.interpreting(), reason="checks the CPU interpreter's known quirks")
def test_interpreter_canary() -> None:
    """The interpreter quirks kernels work around are still there (and wraps still wrap): if
    bf16 tl.dot becomes right, upcast switches can go; if uint32 products stop wrapping,
    stochastic-rounding hashes break."""
    assert interpreter_quirks("cpu") == {"bf16_dot_wrong": True, "uint32_products_wrap": True}


@pytest.mark.gpu
def test_gpu_has_none_of_the_interpreter_quirks() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    assert interpreter_quirks("cuda") == {"bf16_dot_wrong": False, "uint32_products_wrap": True}


def test_optimizer_hyper_parameters_are_checked_once_for_all() -> None:
    from kernels.runtime.hyper import check_hyper

    assert check_hyper(lr=1e-3, eps=1e-8, weight_decay=0.1, betas=(0.9, 0.99)) == (0.9, 0.99)
    assert check_hyper(lr=0.0) is None
    for bad, word in (
        ({"lr": -1.0}, "learning rate"),
        ({"lr": 1.0, "eps": -1e-8}, "eps"),
        ({"lr": 1.0, "weight_decay": -0.1}, "weight_decay"),
        ({"lr": 1.0, "betas": (0.9, 1.0)}, "betas"),
        ({"lr": 1.0, "betas": (-0.1, 0.9)}, "betas"),
    ):
        with pytest.raises(ValueError, match=word):
            check_hyper(**bad)


class _FakeCompiled:
    """What a JIT launch returns on a GPU, reduced to what a bound launch reads."""

    packed_metadata = b"meta"
    function = 7

    def __init__(self, refuse: bool = False) -> None:
        self.calls: list[tuple] = []
        self.refuse = refuse

    def run(self, *args: object) -> None:
        if self.refuse:
            raise TypeError("this launcher takes other arguments")
        self.calls.append(args)

    def launch_metadata(self, grid: object, stream: int, *args: object) -> str:
        return "launch-metadata"


def test_bound_launch_calls_the_compiled_launcher_directly(monkeypatch) -> None:
    from kernels.runtime import launch

    monkeypatch.setitem(launch.FAST_LAUNCH, "on", True)
    monkeypatch.setattr(launch, "raw_stream", lambda index: 1000 + index)
    handle = _FakeCompiled()
    bound = launch.BoundLaunch.of(handle, 3)
    assert bound is not None
    assert bound((4, 2, 1), 11, 22, 0.5) is True
    assert handle.calls == [(4, 2, 1, 1003, 7, b"meta", None, None, None, 11, 22, 0.5)]
    assert bound.with_hooks((4, 1, 1), 5) is True
    assert handle.calls[-1][:7] == (4, 1, 1, 1003, 7, b"meta", "launch-metadata")
    assert launch.BoundLaunch.of(None, 0) is None  # the interpreter compiles nothing
    assert launch.BoundLaunch.of(object(), 0) is None


def test_a_refused_direct_launch_turns_direct_launches_off(monkeypatch) -> None:
    from kernels.runtime import launch

    monkeypatch.setitem(launch.FAST_LAUNCH, "on", True)
    monkeypatch.setattr(launch, "raw_stream", lambda index: 0)
    bound = launch.BoundLaunch.of(_FakeCompiled(refuse=True), 0)
    assert bound is not None
    assert bound((1, 1, 1), 1) is False  # the caller takes its ordinary launch
    assert launch.FAST_LAUNCH["on"] is False and launch.direct_launch_allowed() is False
    assert launch.BoundLaunch.of(_FakeCompiled(), 0) is None  # nothing is bound any more


def test_tuner_times_candidates_on_scratch_copies() -> None:
    import time

    from kernels.runtime.tune import Tuner

    weight = torch.zeros(8)
    calls: list[str] = []

    def launch(cfg: str, scratch) -> None:
        calls.append(cfg)
        if cfg == "broken":
            raise RuntimeError("out of resources")
        scratch[0].add_(1.0)
        time.sleep(0.004 if cfg == "slow" else 0.0)

    tuner: Tuner[str] = Tuner(name=str)
    assert tuner.choose(("k", 1), ["slow", "fast", "broken"], launch, [weight]) == "fast"
    assert torch.equal(weight, torch.zeros(8))  # the real in-place argument is never touched
    (entry,) = [e for e in tuner.log if "times_ms" in e]
    assert entry["best"] == "fast" and entry["times_ms"]["broken"] == float("inf")
    assert entry["times_ms"]["slow"] > entry["times_ms"]["fast"]
    assert any("out of resources" in e.get("error", "") for e in tuner.log)
    n = len(calls)
    assert tuner.choose(("k", 1), ["slow", "fast"], launch, [weight]) == "fast"
    assert len(calls) == n  # remembered by key: no second tuning
    assert tuner.choose(("k", 2), ["only"], launch, [weight]) == "only"
    assert len(calls) == n  # a single candidate is not timed
