"""FORGE's Hopper kernel (kernels/forge/hopper.py) on one layer, in one device call.

`python -m bench.kernels.forge_hopper` (H100/H200, about 2-4 minutes, mostly compiling):
1. ceilings of this run: fp32 `copy_` and a bf16 8192³ GEMM (kernels.runtime.ceilings);
2. the sweep at the largest T (default 8192, 4096²): every config of `hopper.sweep_configs()`
   and of the classic kernel (`kernels.autotune_configs()`), each checked and timed. The check
   is the GPU tests' (kernels/forge/step_check.py): W, m, v within KERNELS.md's rule of the
   fp32 reference (2·torch_lowp's relative error + 1e-5, torch_lowp = the step from cuBLAS's
   bf16 dW with fp32 accumulation: the tensor cores' error grows with T), and within 1e-6 of
   the classic kernel's default config on the same inputs. A negative control (the step from
   dy with its last token dropped) must fail the same check. A config that fails to compile or
   runs out of shared memory is reported and skipped, never fatal; one that fails the check
   is timed but marked, and picked for the side-by-side only where no config of its kernel
   passed (then marked "unverified");
3. side by side at each T (default 8192, 2048, 512), interleaved, median of CUDA-event timings
   with L2 flushed before each call: cuBLAS dW (`dy.t() @ x`, bf16 out, and fp32 out where
   torch has `mm(..., out_dtype=)`), the unfused step it replaces (cuBLAS dW, cast to fp32,
   torch's fused AdamW), the classic fused kernel (its best config at that T) and the Hopper
   kernel (its best few sweep configs re-timed at that T);
4. a table on stdout and JSON in $OUT/forge_hopper.json (or --out): ms, TFLOP/s, fractions of
   the measured ceilings, and each kernel's time ratio to cuBLAS dW (target: cuBLAS dW time
   / fused time ≥ 0.85 at T=8192).

Every fused call is fp32 AdamW with the bf16 old-W copy written (what the claim's autocast
step runs): 26 B a weight of epilogue traffic beside the GEMM.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch
import triton

from kernels.forge import hopper, reference
from kernels.forge.kernels import INTERPRET, _forge_linear_step_kernel, autotune_configs
from kernels.forge.kernels import default_config as classic_default
from kernels.forge.launch import config_name as classic_name
from kernels.forge.launch import forge_linear_step_
from kernels.forge.rules import Rule, StepScalars
from kernels.forge.step_check import AGREE_REL, lowp_step_, step_errors
from kernels.runtime.ceilings import measure_ceilings
from kernels.runtime.testing import rel_err

TARGET_VS_CUBLAS = 0.85
EPILOGUE_BYTES_PER_WEIGHT = 24 + 2  # W, m, v read + written (fp32), the bf16 old W written


def log(msg: str) -> None:
    print(msg, flush=True)


class Layer:
    """One [n, k] layer's tensors at T tokens: operands, fp32 W/m/v, the old-W buffer."""

    def __init__(self, t: int, n: int, k: int, seed: int, device: torch.device) -> None:
        g = torch.Generator(device=device).manual_seed(seed)
        self.dy = torch.randn(t, n, device=device, generator=g).bfloat16()
        self.x = torch.randn(t, k, device=device, generator=g).bfloat16()
        self.w0 = torch.randn(n, k, device=device, generator=g) * 0.02
        self.m0 = torch.randn(n, k, device=device, generator=g) * 1e-3
        self.v0 = torch.rand(n, k, device=device, generator=g) * 1e-4
        self.w = self.w0.clone()
        self.m = self.m0.clone()
        self.v = self.v0.clone()
        self.old = torch.empty(n, k, device=device, dtype=torch.bfloat16)
        self.sc = StepScalars.adamw(
            step=10, lr=1e-6, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01
        )
        self.flops = 2.0 * t * n * k
        self.epilogue_bytes = EPILOGUE_BYTES_PER_WEIGHT * n * k
        self._want: dict[str, list[torch.Tensor]] = {}

    def reset(self) -> None:
        self.w.copy_(self.w0)
        self.m.copy_(self.m0)
        self.v.copy_(self.v0)

    def want(self, kind: str) -> list[torch.Tensor]:
        """W, m, v after one step from (w0, m0, v0) by the fp32 reference ("ref32"), by torch
        in the kernel's precision ("lowp") or by the classic kernel's default config."""
        if kind not in self._want:
            w, m, v = self.w0.clone(), self.m0.clone(), self.v0.clone()
            if kind == "ref32":
                reference.forge_linear_step_reference(
                    self.dy, self.x, w, [m, v], Rule.ADAMW, self.sc
                )
            elif kind == "lowp":
                lowp_step_(self.dy, self.x, w, [m, v], Rule.ADAMW, self.sc)
            else:
                forge_linear_step_(
                    self.dy, self.x, w, [m, v], Rule.ADAMW, self.sc,
                    config=classic_default(), check=False,
                )  # fmt: skip
            self._want[kind] = [w, m, v]
        return self._want[kind]

    def errors(self, got: list[torch.Tensor] | None = None) -> dict[str, Any]:
        """The check of W, m, v after one step from the start (the current ones by default):
        relative errors against the reference, the rule's bounds, against the classic kernel,
        and whether all are within."""
        got = got if got is not None else [self.w, self.m, self.v]
        names = ("w", "m", "v")
        rule = step_errors(got, self.want("ref32"), self.want("lowp"))
        classic = self.want("classic")
        agree = {n: rel_err(a, b) for n, a, b in zip(names, got, classic, strict=True)}
        ok = all(e <= b for e, b in rule) and all(e <= AGREE_REL for e in agree.values())
        return {
            "rel_err": {n: e for n, (e, _) in zip(names, rule, strict=True)},
            "bound": {n: b for n, (_, b) in zip(names, rule, strict=True)},
            "vs_classic": agree,
            "correct": ok,
        }

    def negative_control(self) -> dict[str, Any]:
        """The check of a step from dy with its last token's row zeroed (the tail-tile bug),
        through the Hopper kernel's default config: it must fail."""
        dy_bad = self.dy.clone()
        dy_bad[-1] = 0
        w, m, v = self.w0.clone(), self.m0.clone(), self.v0.clone()
        hopper.forge_linear_step_hopper_(dy_bad, self.x, w, [m, v], Rule.ADAMW, self.sc)
        return self.errors([w, m, v])

    def hopper_step(self, cfg: triton.Config) -> Callable[[], None]:
        def run() -> None:
            hopper.forge_linear_step_hopper_(
                self.dy, self.x, self.w, [self.m, self.v], Rule.ADAMW, self.sc,
                w_old_out=self.old, config=cfg,
            )  # fmt: skip

        return run

    def classic_step(self, cfg: triton.Config) -> Callable[[], None]:
        def run() -> None:
            forge_linear_step_(
                self.dy, self.x, self.w, [self.m, self.v], Rule.ADAMW, self.sc,
                w_old_out=self.old, config=cfg, check=False,
            )  # fmt: skip

        return run


class Flusher:
    """Writes a buffer larger than L2 so no call finds the previous one's data there."""

    def __init__(self, device: torch.device, nbytes: int = 256 << 20) -> None:
        size = nbytes if device.type == "cuda" else 1
        self.buf = torch.empty(size, dtype=torch.int8, device=device)

    def __call__(self) -> None:
        self.buf.zero_()


def interleaved_ms(
    fns: dict[str, Callable[[], Any]], rounds: int, flush: Flusher, warmup: int = 2
) -> dict[str, float]:
    """Median CUDA-event ms of each fn, the fns taking turns in every round (clock and thermal
    drift fall on all alike), L2 flushed before each call. On the CPU (a smoke run of this
    script under the interpreter) wall-clock ms instead."""
    cuda = flush.buf.device.type == "cuda"
    times: dict[str, list[Any]] = {k: [] for k in fns}
    for r in range(warmup + rounds):
        for name, fn in fns.items():
            flush()
            if cuda:
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                span: Any = (start, end)
            else:
                t0 = time.perf_counter()
                fn()
                span = (time.perf_counter() - t0) * 1e3
            if r >= warmup:
                times[name].append(span)
    if not cuda:
        return {k: statistics.median(v) for k, v in times.items()}
    torch.cuda.synchronize()
    return {k: statistics.median(s.elapsed_time(e) for s, e in v) for k, v in times.items()}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compiled_kernels(fn: Any) -> dict[int, Any]:
    """The compiled kernels a @triton.jit function holds, by id (empty where this Triton keeps
    them elsewhere): their registers, spills and shared memory go into the sweep's rows."""
    found: dict[int, Any] = {}
    try:
        for cache in fn.device_caches.values():
            for kernel in cache[0].values():
                found[id(kernel)] = kernel
    except Exception:  # a diagnostic only
        pass
    return found


def kernel_resources(fn: Any, before: dict[int, Any]) -> dict[str, Any]:
    """Registers a thread, spilled bytes and shared memory of the kernel `fn` compiled since
    `before` was taken (None where unknown)."""
    new = [k for i, k in compiled_kernels(fn).items() if i not in before]
    if not new:
        return {}
    k = new[-1]
    shared = getattr(getattr(k, "metadata", None), "shared", None)
    return {"regs": getattr(k, "n_regs", None), "spills": getattr(k, "n_spills", None),
            "shared_bytes": shared}  # fmt: skip


def fmt_check(chk: dict[str, Any]) -> str:
    """A check's verdict on one line: each tensor's error / bound, and against classic."""
    if "rel_err" not in chk:
        return str(chk)
    parts = [f"{n} {chk['rel_err'][n]:.1e}/{chk['bound'][n]:.1e}" for n in chk["rel_err"]]
    worst = max(chk["vs_classic"].values())
    ok = "ok" if chk["correct"] else "FAIL"
    return f"{ok}: vs ref32/bound {', '.join(parts)}; vs classic {worst:.1e}"


def first_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:240]


def try_config(
    layer: Layer, name: str, step: Callable[[], None], flush: Flusher, rounds: int, jit: Any
) -> dict[str, Any]:
    """Compile, check against the reference, then time one config; errors become the row.
    `jit` is the kernel's @triton.jit function (for the compiled kernel's resources)."""
    row: dict[str, Any] = {"config": name}
    t0 = time.perf_counter()
    try:
        layer.reset()
        before = compiled_kernels(jit)
        step()  # compiles
        sync(layer.w.device)
        row["compile_s"] = round(time.perf_counter() - t0, 1)
        row.update(kernel_resources(jit, before))
        row.update(layer.errors())
        if not row["correct"]:
            row["wrong_step"] = True  # timed anyway, never picked while a correct one exists
        row["ms"] = interleaved_ms({name: step}, rounds, flush)[name]
        row["tflops"] = layer.flops / row["ms"] / 1e9
    except Exception as exc:  # a config this compiler or GPU cannot take: report, go on
        row["error"] = first_line(exc)
        row["compile_s"] = round(time.perf_counter() - t0, 1)
        sync(layer.w.device)
    return row


def cublas_fns(layer: Layer) -> dict[str, Callable[[], Any]]:
    """cuBLAS dW (bf16 out; fp32 out where supported) and the unfused step it feeds."""
    dy, x = layer.dy, layer.x
    fns: dict[str, Callable[[], Any]] = {"cublas_dw_bf16": lambda: torch.mm(dy.t(), x)}
    try:
        torch.mm(dy.t()[:8, :8].contiguous(), x[:8, :8], out_dtype=torch.float32)
        fns["cublas_dw_fp32"] = lambda: torch.mm(dy.t(), x, out_dtype=torch.float32)
    except (TypeError, RuntimeError) as exc:
        log(f"  cuBLAS fp32-out dW not timed: {first_line(exc)}")
    p = torch.nn.Parameter(layer.w0.clone())
    opt = torch.optim.AdamW([p], lr=1e-6, weight_decay=0.01, fused=True)

    def unfused() -> None:
        p.grad = torch.mm(dy.t(), x).float()
        opt.step()

    fns["unfused_cublas_fusedadamw"] = unfused
    return fns


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--width", type=int, default=4096)
    ap.add_argument("--tokens", type=int, nargs="+", default=[8192, 2048, 512])
    ap.add_argument("--rounds", type=int, default=25, help="timed rounds a measurement")
    ap.add_argument("--top", type=int, default=3, help="sweep configs re-timed at every T")
    ap.add_argument("--budget-s", type=float, default=200.0, help="stop sweeping after this")
    ap.add_argument("--out", default=None, help="JSON path (default $OUT/forge_hopper.json)")
    ap.add_argument(
        "--cpu-smoke",
        action="store_true",
        help="tiny run on the CPU interpreter (TRITON_INTERPRET=1): checks this script only",
    )
    args = ap.parse_args()
    if args.cpu_smoke:
        if not INTERPRET:
            log("--cpu-smoke needs TRITON_INTERPRET=1")
            return 2
        dev = torch.device("cpu")
        if args.width == ap.get_default("width"):  # interpreter-sized unless asked otherwise
            args.width, args.tokens, args.rounds, args.top = 64, [48, 32], 3, 1
    elif torch.cuda.is_available():
        dev = torch.device("cuda")
    else:
        log("needs a CUDA GPU (or --cpu-smoke under TRITON_INTERPRET=1)")
        return 2
    t_start = time.perf_counter()
    torch.backends.cuda.matmul.allow_tf32 = False  # the reference's fp32 dW
    cuda = dev.type == "cuda"
    env = {
        "gpu": torch.cuda.get_device_name(dev) if cuda else "cpu (interpreter)",
        "capability": ".".join(map(str, torch.cuda.get_device_capability(dev))) if cuda else "",
        "torch": torch.__version__,
        "triton": triton.__version__,
        "commit": git_commit(),
        "features": {
            "device_desc": hopper.HAS_DEVICE_DESC,
            "host_desc": hopper.HAS_HOST_DESC,
        },
    }
    log(f"env: {json.dumps(env)}")
    ceil = measure_ceilings(dev)
    log(f"ceilings: copy_ {ceil.copy_tbps:.2f} TB/s, bf16 GEMM {ceil.gemm_bf16_tflops:.0f} TFLOP/s")
    n = k = args.width
    flush = Flusher(dev)
    t_big = max(args.tokens)
    if not hopper.hopper_eligible(t_big, n, k, torch.bfloat16, dev):
        log(f"note: hopper_eligible(T={t_big}, {n}, {k}) is False here; timing it anyway")

    # -- the sweep at the largest T --------------------------------------------------------
    layer = Layer(t_big, n, k, seed=t_big, device=dev)
    control: dict[str, Any] = {}
    try:
        control = layer.negative_control()
        verdict = "rejected (good)" if not control["correct"] else "ACCEPTED: the check is blind"
        log(f"negative control (dy's last token dropped): {verdict}: {fmt_check(control)}")
    except Exception as exc:
        control = {"error": first_line(exc)}
        log(f"negative control not run: {control['error']}")
    sweep: list[dict[str, Any]] = []
    hopper_cfgs = {hopper.config_name(c): c for c in hopper.sweep_configs()}
    classic_cfgs = {classic_name(c): c for c in autotune_configs()}
    candidates = [("hopper", nm, c) for nm, c in hopper_cfgs.items()]
    candidates += [("classic", nm, c) for nm, c in classic_cfgs.items()]
    log(f"sweep at T={t_big}, {n}x{k}: {len(candidates)} configs")
    for kind, name, cfg in candidates:
        if time.perf_counter() - t_start > args.budget_s:
            sweep.append({"kernel": kind, "config": name, "error": "skipped: time budget"})
            log(f"  {kind:7s} {name:52s} skipped (time budget)")
            continue
        if kind == "hopper":
            step, jit = layer.hopper_step(cfg), hopper._forge_hopper_kernel
        else:
            step, jit = layer.classic_step(cfg), _forge_linear_step_kernel
        rounds = max(5, args.rounds // 3)
        row = {"kernel": kind, **try_config(layer, name, step, flush, rounds, jit)}
        sweep.append(row)
        if "ms" in row:
            mark = "" if row["correct"] else "  WRONG STEP"
            log(
                f"  {kind:7s} {name:52s} {row['ms']:.3f} ms {row['tflops']:6.0f} TFLOP/s{mark}"
                f"  (compile {row['compile_s']} s, {fmt_check(row)},"
                f" regs {row.get('regs')}, spills {row.get('spills')},"
                f" smem {row.get('shared_bytes')})"
            )
        else:
            log(f"  {kind:7s} {name:52s} FAILED: {row['error']}")
    unverified: set[str] = set()

    def best_of(kind: str) -> list[dict[str, Any]]:
        """The fastest configs of a kernel that passed the check, or (marked unverified) the
        fastest that ran where none passed."""
        ran = sorted((r for r in sweep if r["kernel"] == kind and "ms" in r), key=lambda r: r["ms"])
        passed = [r for r in ran if r["correct"]]
        if ran and not passed:
            unverified.add(kind)
            log(f"  no {kind} config passed the check: timing the fastest, marked unverified")
        return (passed or ran)[: args.top]

    top_h = [hopper_cfgs[r["config"]] for r in best_of("hopper")]
    top_c = [classic_cfgs[r["config"]] for r in best_of("classic")]
    del layer
    if cuda:
        torch.cuda.empty_cache()

    # -- side by side at every T -------------------------------------------------------------
    rows = []
    for t in args.tokens:
        layer = Layer(t, n, k, seed=t, device=dev)
        fns = cublas_fns(layer)
        picks: dict[str, str] = {}
        for kind, cfgs, make, namer in (
            ("hopper", top_h, layer.hopper_step, hopper.config_name),
            ("classic", top_c, layer.classic_step, classic_name),
        ):
            if not cfgs:
                continue
            try:
                for c in cfgs:
                    make(c)()  # compiled already: only the reference path's warm-up
                times = interleaved_ms(
                    {namer(c): make(c) for c in cfgs}, max(5, args.rounds // 3), flush
                )
                best = min(times, key=times.get)
                picks[kind] = best
                fns[f"{kind}_fused"] = make(next(c for c in cfgs if namer(c) == best))
            except Exception as exc:
                log(f"  T={t}: {kind} not timed: {first_line(exc)}")
        # Correctness of the picked configs at this T, from the same start as the reference.
        checks = {}
        for kind in ("hopper", "classic"):
            if f"{kind}_fused" in fns:
                layer.reset()
                fns[f"{kind}_fused"]()
                checks[kind] = layer.errors()
        try:
            ms = interleaved_ms(fns, args.rounds, flush)
        except Exception as exc:
            log(f"  T={t}: side-by-side failed: {first_line(exc)}")
            traceback.print_exc()
            continue
        cub = ms["cublas_dw_bf16"]
        row: dict[str, Any] = {
            "T": t, "N": n, "K": k, "picks": picks, "checks": checks,
            "unverified": sorted(unverified),
        }  # fmt: skip
        for name, v in ms.items():
            row[name] = {
                "ms": v,
                "tflops": layer.flops / v / 1e9,
                "frac_of_gemm_ceiling": ceil.frac_of_gemm(layer.flops, v),
                "time_vs_cublas_dw": v / cub,
                "cublas_dw_over_this": cub / v,
            }
            if name.endswith("_fused"):
                row[name]["epilogue_frac_of_copy"] = ceil.frac_of_copy(layer.epilogue_bytes, v)
        if "hopper_fused" in ms:
            verified = checks.get("hopper", {}).get("correct", False)
            row["hopper_meets_target"] = verified and cub / ms["hopper_fused"] >= TARGET_VS_CUBLAS
            if "classic_fused" in ms:
                row["hopper_speedup_vs_classic"] = ms["classic_fused"] / ms["hopper_fused"]
        rows.append(row)
        del layer, fns
        if cuda:
            torch.cuda.empty_cache()

    # -- table and JSON ----------------------------------------------------------------------
    log("")
    log(f"{'T':>5} {'method':28s} {'ms':>8} {'TFLOP/s':>8} {'x ceil':>7} {'cuBLAS/this':>11}")
    for row in rows:
        for name in (
            "cublas_dw_bf16",
            "cublas_dw_fp32",
            "unfused_cublas_fusedadamw",
            "classic_fused",
            "hopper_fused",
        ):
            if name in row:
                r = row[name]
                kind = name.removesuffix("_fused")
                mark = ""
                if kind in row["checks"] and not row["checks"][kind]["correct"]:
                    mark = "  WRONG STEP"
                elif kind in row["unverified"]:
                    mark = "  unverified"
                log(
                    f"{row['T']:>5} {name:28s} {r['ms']:8.3f} {r['tflops']:8.0f}"
                    f" {r['frac_of_gemm_ceiling']:7.2f} {r['cublas_dw_over_this']:11.2f}{mark}"
                )
        for kind, chk in row["checks"].items():
            log(f"      {kind} check at T={row['T']}: {fmt_check(chk)}")
        log(f"      picks {row['picks']}  target met: {row.get('hopper_meets_target')}")
    result = {
        "env": env,
        "ceilings": ceil.figures(""),
        "target_cublas_dw_over_fused": TARGET_VS_CUBLAS,
        "sweep_T": t_big,
        "check_rule": "rel_err(kern, ref32) <= 2*rel_err(torch_lowp, ref32) + 1e-5 for W, m, v;"
        f" rel_err(kern, classic default config) <= {AGREE_REL}",
        "negative_control": control,
        "sweep": sweep,
        "rows": rows,
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    out = args.out or os.path.join(os.environ.get("OUT", "."), "forge_hopper.json")
    with open(out, "w") as f:
        json.dump(result, f, indent=1, default=str)
    log(f"wrote {out} ({result['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
