"""The GPU phases of SAGE, ChunkFT and FP4 that a change to their claims touched, run alone at
the full profile's sizes in a minute instead of the claims' several: SAGE's step against the
run's copy_ ceiling, ChunkFT's one-chunk step against torch.optim.AdamW, FP4's FP8 GEMM against
the run's bf16 GEMM ceiling. Nothing is judged here: the figures print as JSON lines, for a look
before a full claim run spends its minutes.

    PYTHONPATH=. python3 bench/gpu/claim_phases.py     (on a CUDA GPU)
"""

from __future__ import annotations

import json
import time

import torch

from kernels.runtime.ceilings import measure_ceilings


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("claim_phases.py needs a CUDA GPU")
    device = torch.device("cuda")
    t0 = time.perf_counter()
    ceilings = measure_ceilings(device)
    print(json.dumps({"phase": "ceilings", **ceilings.figures()}), flush=True)

    from replication.claims.chunkft import measure as chunkft

    figures = chunkft.exactness(chunkft.PROFILE["full"], device)
    print(json.dumps({"phase": "chunkft.exactness", **figures}, default=str), flush=True)

    from replication.claims.sage import measure as sage

    for shape in sage.PROFILE_SETTINGS["full"].speed_shapes:
        res = sage.measure_kernel_speed(shape, torch.float32, device, ceilings)
        print(json.dumps({"phase": f"sage.speed {shape}", **res}, default=str), flush=True)

    from replication.claims.fp4 import measure as fp4

    res = fp4.speed_gemms(fp4.PROFILES["full"], device, ceilings)
    print(json.dumps({"phase": "fp4.speed_gemms", **res}, default=str), flush=True)
    print(json.dumps({"phase": "done", "wall_s": time.perf_counter() - t0}), flush=True)


if __name__ == "__main__":
    main()
