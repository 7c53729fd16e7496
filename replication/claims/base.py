"""What every claim returns: figures as decimal strings, checks against targets, and a verdict.

A claim turns a paper's headline into something measurable. Its result is a plain dict that
becomes the payload of a signed ``replication_record`` event, so every number in it is a decimal
string (signed objects refuse floats: they do not canonicalize the same way across languages).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VERDICTS = ("replicated", "not_replicated", "inconclusive", "error")
RESULT_VERSION = "pith-claim-result-v1"


def dec(x: float | int, digits: int = 6) -> str:
    """A float as a decimal string with `digits` significant figures (no exponent for humans)."""
    if isinstance(x, bool):
        raise TypeError("dec() takes a number, not a bool")
    if isinstance(x, int):
        return str(x)
    if math.isnan(x) or math.isinf(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if x == 0:
        return "0"
    s = f"{x:.{digits}g}"
    if "e" in s:
        s = f"{x:.{max(digits - 1 - math.floor(math.log10(abs(x))), 0)}f}"
        if "." in s:
            s = s.rstrip("0").rstrip(".")
    return s


@dataclass(frozen=True)
class Check:
    """One measurable condition of a claim: `measured` compared with `target` by `op`."""

    name: str
    measured: float
    op: str  # one of "<=", ">=", "<", ">"
    target: float
    gating: bool = True  # a non-gating check is reported but does not decide the verdict

    @property
    def passed(self) -> bool:
        if math.isnan(self.measured):
            return False
        return {
            "<=": self.measured <= self.target,
            ">=": self.measured >= self.target,
            "<": self.measured < self.target,
            ">": self.measured > self.target,
        }[self.op]

    def as_payload(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "measured": dec(self.measured),
            "op": self.op,
            "target": dec(self.target),
            "passed": self.passed,
            "gating": self.gating,
        }


def verdict_of(checks: list[Check], *, conclusive: bool = True) -> str:
    """replicated when every gating check passes; inconclusive when the run could not decide."""
    if not conclusive:
        return "inconclusive"
    gating = [c for c in checks if c.gating]
    if not gating:
        return "inconclusive"
    return "replicated" if all(c.passed for c in gating) else "not_replicated"


def claim_result(
    *,
    claim_id: str,
    paper: str,
    profile: str,
    statement: str,
    checks: list[Check],
    figures: Mapping[str, float | int | str],
    conclusive: bool = True,
    notes: str = "",
) -> dict[str, Any]:
    """The payload-ready dict every claim returns (numbers as decimal strings)."""
    return {
        "result_version": RESULT_VERSION,
        "claim_id": claim_id,
        "paper": paper,
        "profile": profile,
        "statement": statement,
        "verdict": verdict_of(checks, conclusive=conclusive),
        "checks": [c.as_payload() for c in checks],
        "figures": {k: (v if isinstance(v, str) else dec(v)) for k, v in figures.items()},
        "notes": notes,
    }


def phase(name: str) -> None:
    """Tell a watching worker which phase the claim is in (one line on stderr)."""
    print(f"::phase:: {name}", file=sys.stderr, flush=True)


def main_for(run: Callable[[str], dict[str, Any]], profiles: tuple[str, ...]) -> None:
    """The script entry of a claim: `--profile P [--out FILE]`, prints the result JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", choices=profiles, default=profiles[0])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    result = run(args.profile)
    text = json.dumps(result, indent=2, sort_keys=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
