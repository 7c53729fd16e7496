"""The claims a worker can run: one package per claim (``spec.py`` torch-free, ``measure.py``
the figures, ``__main__.py`` the script with ``--profile``), discovered by ``registry``.

CLAIM_MODULES (claim id -> the module a worker runs as ``python -m <module> --profile P --out
FILE``) is derived from the registry, never kept by hand.
"""

from __future__ import annotations

from .registry import CLAIMS, claim_module

CLAIM_MODULES: dict[str, str] = {claim_id: claim_module(claim_id) for claim_id in CLAIMS}
