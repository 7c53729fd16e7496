"""The FP4 kernels compile for Hopper (sm_90) on a machine without a GPU: the GPU-only paths
(bf16 ``tl.dot``, the packed-nibble reshape/split, the NVFP4 branch, two-pass rows) are compiled
to PTX and SASS by Triton's own ptxas in CI, so a compile error cannot wait for the GPU run.

Runs in a child process without ``TRITON_INTERPRET`` (the suite sets it before triton loads).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from kernels.fp4 import kernels as K

TARGET = GPUTarget("cuda", 90, 32)
done = []


def build(fn, sig, consts, warps=4):
    sig = dict(sig, **{c: "constexpr" for c in consts})
    triton.compile(ASTSource(fn=fn, signature=sig, constexprs=consts), target=TARGET,
                   options={"num_warps": warps})
    done.append(1)


for dt, out, scale, clamp, res, single in [
    ("bf16", 0, 0, 0, False, True), ("bf16", 1, 0, 1, True, True), ("bf16", 2, 1, 0, False, True),
    ("fp16", 2, 0, 2, False, False),
]:
    sig = {"x_ptr": "*" + dt, "out_ptr": "*" + dt if out == 0 else "*u8", "scale_ptr": "*fp32",
           "res_ptr": "*" + dt if res else "*fp32", "lo_ptr": "*fp32", "hi_ptr": "*fp32",
           "nv_ptr": "*fp32", "n_rows": "i32", "row_len": "i32"}
    consts = {"OUT_MODE": out, "SCALE_MODE": scale, "CLAMP": clamp, "WRITE_RES": res,
              "SINGLE_PASS": single, "BLOCK_M": 1, "BLOCK_N": 4096 if single else 8192}
    build(K._fp4_quantize_kernel, sig, consts)
build(K._dge_kernel, {"x_ptr": "*bf16", "out_ptr": "*bf16", "n": "i32", "inv_k": "fp32",
                      "power": "fp32", "clamp": "fp32"}, {"BLOCK": 1024})
for dt, dot_f32, per_col, use_dge in [("bf16", False, True, True), ("bf16", False, False, True),
                                      ("fp32", True, True, True), ("bf16", False, True, False)]:
    sig = {"dy_ptr": "*" + dt, "x_ptr": "*" + dt, "w_ptr": "*" + dt, "sf_ptr": "*fp32",
           "out_ptr": "*" + dt, "M": "i32", "N": "i32", "K": "i32", "inv_k": "fp32",
           "power": "fp32", "clamp": "fp32"}
    cfg = K.dge_grad_configs()[0]  # the largest tile
    consts = {"SF_PER_COL": per_col, "USE_DGE": use_dge, "DOT_F32": dot_f32,
              "EVEN_M": per_col, **cfg.kwargs}
    build(K._dge_weight_grad_kernel.fn, sig, consts, cfg.num_warps)
print("compiled", len(done))
"""


def test_kernels_compile_for_sm90(tmp_path: Path) -> None:
    try:
        import triton.backends.nvidia  # noqa: F401  (ships ptxas)
    except ImportError:
        pytest.skip("triton without its NVIDIA backend")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    env["PYTHONPATH"] = str(REPO)
    env["TRITON_CACHE_DIR"] = str(tmp_path)  # compile for real, not from an earlier run's cache
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "compiled 9" in proc.stdout
