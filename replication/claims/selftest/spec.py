"""The selftest claim: SHA-256 throughput of the worker's machine against a floor.

An honest measurement that runs in a second; `crash` exits with an error and `hang` never
returns, to exercise the worker's error and time-limit paths; `two_gpus` runs under torchrun
across two GPUs (two processes) and reports the world it ran in.
"""

from __future__ import annotations

from replication.claims.spec import CheckSpec, ClaimSpec

SPEC = ClaimSpec(
    claim_id="selftest",
    paper="worker-selftest",
    arxiv="",
    statement="this machine hashes at least 50 MB/s with SHA-256",
    scale="64 rounds of SHA-256 over 1 MiB",
    profiles=("smoke", "crash", "hang", "two_gpus"),
    checks=(CheckSpec("sha256_mb_per_s", "sha256_mb_per_s", ">=", 50.0),),
    conclusive=("smoke",),
    gpus={"two_gpus": 2},  # the worker's torchrun path: two processes, one a GPU
)
