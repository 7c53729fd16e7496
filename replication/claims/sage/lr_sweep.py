"""A short learning-rate sweep on the GPU for the SAGE claim's quality comparison.

Each setting trains the claim's d512-l8 Llama for a few hundred steps from seed 100 (not a seed
of the claim) and reports the eval loss; settings run in order until `--budget-s` is spent. The
claim's ``Hyper`` was chosen from this sweep's output; it is kept here so the choice can be
checked. Run: ``python3 -m replication.claims.sage.lr_sweep --out sweep.json --budget-s 90``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from replication.claims.sage import measure as claim

# (optimizer, changes to the claim's Hyper)
SETTINGS: list[tuple[str, dict[str, float]]] = [
    ("sinkgd_hybrid", {"matrix_lr": 1e-4}),
    ("sage_hybrid", {"sign_lr": 1e-3}),
    ("lion_hybrid", {"sign_lr": 1e-3}),
    ("sinkgd_hybrid", {"adam_lr": 3e-4}),
    ("sage_hybrid", {"sign_lr": 1e-4}),
    ("sinkgd_hybrid", {}),
    ("sage_hybrid", {}),
    ("adamw", {"adam_lr": 3e-3}),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budget-s", type=float, default=90.0)
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    from replication.data import load_shakespeare

    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    corpus = load_shakespeare()
    prof = dataclasses.replace(
        claim.PROFILE_SETTINGS["full"],
        steps=args.steps,
        warmup_steps=args.steps // 10,
        seeds=(100,),
    )
    start = time.perf_counter()
    rows = []
    for name, changes in SETTINGS:
        if time.perf_counter() - start > args.budget_s:
            break
        hyper = dataclasses.replace(claim.HYPER, **changes)
        out = claim.train_and_eval(name, 100, prof, corpus, device, True, hyper)
        row = {"optimizer": name, **dataclasses.asdict(hyper), **out, "steps": args.steps}
        rows.append(row)
        print(json.dumps(row), flush=True)
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
