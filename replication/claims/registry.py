"""Every claim's spec, discovered from the packages under ``replication/claims/``: a package
with a ``spec.py`` defining ``SPEC`` is a claim. No hand-kept list, no parsing of source; the
spec modules import no torch, so the service can read them.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from .spec import ClaimSpec

PACKAGE = __name__.rsplit(".", 1)[0]  # replication.claims


def discover() -> dict[str, ClaimSpec]:
    """claim id -> spec, for every claim package (sorted by id)."""
    found: dict[str, ClaimSpec] = {}
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if not info.ispkg or not (Path(__file__).parent / info.name / "spec.py").exists():
            continue  # a helper package, or a claim still being written
        module = importlib.import_module(f"{PACKAGE}.{info.name}.spec")
        spec = getattr(module, "SPEC", None)
        if not isinstance(spec, ClaimSpec):
            raise TypeError(f"{module.__name__} defines no SPEC = ClaimSpec(...)")
        if spec.claim_id != info.name:
            raise ValueError(f"{module.__name__}: claim id {spec.claim_id!r} is not {info.name!r}")
        found[spec.claim_id] = spec
    return dict(sorted(found.items()))


CLAIMS: dict[str, ClaimSpec] = discover()


def claim_module(claim_id: str) -> str:
    """The module a worker runs as ``python -m <module> --profile P --out FILE``."""
    if claim_id not in CLAIMS:
        raise KeyError(claim_id)
    return f"{PACKAGE}.{claim_id}"
