"""The entry of every claim package: ``python -m replication.claims.<id> --profile P [--out F]``.

It measures (the package's ``measure.measure(profile)``, figures only), judges (the one judge,
against the package's ``SPEC``) and prints the payload-ready result. A watching worker follows
the ``::phase::`` lines on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from kernels.runtime.device import use_interpreter_without_gpu

from .judge import judge
from .spec import ClaimSpec


def phase(name: str) -> None:
    """Tell a watching worker which phase the claim is in (one line on stderr)."""
    print(f"::phase:: {name}", file=sys.stderr, flush=True)


def run_claim(spec: ClaimSpec, profile: str) -> dict[str, Any]:
    """Measure `spec`'s claim at `profile` in this process and judge it."""
    current = spec.canonical_profile(profile)  # refuses an unknown profile before any work
    use_interpreter_without_gpu()  # before the measure module imports triton
    module = importlib.import_module(f"{__package__}.{spec.claim_id}.measure")
    figures = module.measure(current)
    notes = ""
    if current not in spec.conclusive:
        notes = f"{current} profile: toy sizes, CPU timings; the verdict is not a measurement."
    return judge(spec, profile, figures, notes=notes)


def main(spec: ClaimSpec, argv: list[str] | None = None) -> None:
    """The script entry of a claim: `--profile P [--out FILE]`, prints the result JSON."""
    ap = argparse.ArgumentParser(prog=f"python -m replication.claims.{spec.claim_id}")
    ap.add_argument("--profile", choices=spec.all_profiles, default=spec.profiles[0])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    result = run_claim(spec, args.profile)
    text = json.dumps(result, indent=2, sort_keys=True)
    if args.out and os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 writes
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
