"""A claim about the worker itself, for end-to-end tests: it runs in a second and needs no GPU.

It measures something real and checkable (SHA-256 throughput of this machine against a floor) so
the record it produces is an honest measurement; `--profile crash` exits with an error and
`--profile hang` never returns, to exercise the worker's error and time-limit paths.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from typing import Any

from replication.claims.base import Check, claim_result, main_for, phase

CLAIM_ID = "selftest"
PAPER = "worker-selftest"
PROFILES = ("smoke", "crash", "hang")


def run(profile: str) -> dict[str, Any]:
    phase("hashing")
    if profile == "crash":
        print("selftest: crashing on purpose", file=sys.stderr)
        raise SystemExit(3)
    if profile == "hang":
        while True:
            time.sleep(1)
    data = os.urandom(1 << 20)
    t0 = time.perf_counter()
    rounds = 64
    for _ in range(rounds):
        hashlib.sha256(data).digest()
    mb_per_s = rounds / (time.perf_counter() - t0)
    phase("done")
    return claim_result(
        claim_id=CLAIM_ID,
        paper=PAPER,
        profile=profile,
        statement="this machine hashes at least 50 MB/s with SHA-256",
        checks=[Check("sha256_mb_per_s", mb_per_s, ">=", 50.0)],
        figures={"sha256_mb_per_s": mb_per_s, "rounds": rounds},
    )


if __name__ == "__main__":
    main_for(run, PROFILES)
