"""Hash 64 MiB with SHA-256 and time it; or crash, or hang, as the profile asks."""

from __future__ import annotations

import hashlib
import os
import sys
import time

from replication.claims.base import phase


def measure(profile: str) -> dict[str, float | int | str]:
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
    figures: dict[str, float | int | str] = {"sha256_mb_per_s": mb_per_s, "rounds": rounds}
    if profile == "two_gpus":  # launched by torchrun: the world it ran in
        figures["world_size"] = int(os.environ.get("WORLD_SIZE", "1"))
    return figures
