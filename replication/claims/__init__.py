"""The claims a worker can run: one module per paper, each a script with `--profile`.

A claim module exposes CLAIM_ID, PAPER (arXiv id), PROFILES and `run(profile) -> dict`; see base.
"""

from __future__ import annotations

# claim id -> module; the worker runs `python -m <module> --profile P --out FILE` in a child process
CLAIM_MODULES: dict[str, str] = {
    "forge": "replication.claims.forge",
    "sage": "replication.claims.sage",
    "selftest": "replication.claims.selftest",
}
