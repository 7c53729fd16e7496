"""The one place verdicts are decided: a claim's spec and its measured figures in, the signed
payload out (``pith-claim-result-v1``: figures and checks as decimal strings, a verdict from
pith_core's vocabulary).

A claim's ``measure(profile)`` returns figures only; it never builds a check or a verdict.

One rule for spreads, in every claim: a check judged on a mean over seeds carries that mean's
standard error (``mean_and_sem``: sample standard deviation / sqrt(n)) as its spread, and is
undecided (the verdict ``inconclusive``) while ``mean ± standard error`` contains the target.
The standard error, not the standard deviation: the statements are about the mean, and the
question is whether the seeds drawn could have put *the mean* on the other side of the target;
the standard deviation asks whether one seed could land there (no statement here is about one
run), and it does not shrink with more seeds, so no number of seeds could decide a close claim.
With fewer than two seeds the standard error is unknown (NaN) and the check stays undecided.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .spec import ClaimSpec

RESULT_VERSION = "pith-claim-result-v1"
# pith_core.events.REPLICATION_VERDICTS, spelled out: a claim runs where pith_core's signing
# dependencies may be absent (the GPU image); a test holds the two equal
VERDICTS = ("replicated", "not_replicated", "inconclusive", "error")

Figure = float | int | str


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


def mean_and_sem(values: Sequence[float]) -> tuple[float, float]:
    """The mean of per-seed values and its standard error (sample standard deviation over
    sqrt(n)): the figure and the spread of every check judged over seeds (see the module's
    docstring for why the standard error). The error is NaN for fewer than two values."""
    if not values:
        raise ValueError("mean_and_sem needs at least one value")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, statistics.stdev(values) / math.sqrt(len(values))


@dataclass(frozen=True)
class Check:
    """One condition judged: `measured` compared with `target` by `op`.

    With a `spread` (the standard error of a mean over seeds, ``mean_and_sem``) a check whose
    target lies within ``measured ± spread`` is undecided: the seeds drawn, not the method, would
    decide it. A NaN spread (one seed, or its figure never written) leaves it undecided too; a
    NaN measurement is decided, and fails.
    """

    name: str
    measured: float
    op: str  # one of "<=", ">=", "<", ">"
    target: float
    gating: bool = True  # a non-gating check is reported but does not decide the verdict
    spread: float | None = None

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

    @property
    def decided(self) -> bool:
        if self.spread is None or math.isnan(self.measured):
            return True
        if math.isnan(self.spread):
            return False
        return abs(self.measured - self.target) >= self.spread

    def as_payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "measured": dec(self.measured),
            "op": self.op,
            "target": dec(self.target),
            "passed": self.passed,
            "gating": self.gating,
        }
        if self.spread is not None:
            out["spread"] = dec(self.spread)
            out["decided"] = self.decided
        return out


def verdict_of(checks: Iterable[Check], *, conclusive: bool = True) -> str:
    """replicated when every gating check passes; not_replicated when a decided gating check
    fails; inconclusive when the run could not decide (a smoke run, no gating check, or a
    gating check whose standard error straddles its target, or is unknown, while the others
    pass)."""
    if not conclusive:
        return "inconclusive"
    gating = [c for c in checks if c.gating]
    if not gating:
        return "inconclusive"
    if any(c.decided and not c.passed for c in gating):
        return "not_replicated"
    if not all(c.decided for c in gating):
        return "inconclusive"
    return "replicated"


def _number(figures: Mapping[str, Figure], name: str | None) -> float:
    """A figure as a float; NaN when it is missing or not a number (the check then fails)."""
    if name is None or name not in figures:
        return math.nan
    value = figures[name]
    if isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def checks_of(spec: ClaimSpec, profile: str, figures: Mapping[str, Figure]) -> list[Check]:
    """The spec's checks for `profile`, measured from `figures`."""
    return [
        Check(
            c.name,
            _number(figures, c.figure),
            c.op,
            c.target,
            gating=c.gating,
            spread=None if c.spread is None else _number(figures, c.spread),
        )
        for c in spec.checks_for(profile)
    ]


def judge(
    spec: ClaimSpec,
    profile: str,
    figures: Mapping[str, Figure],
    *,
    conclusive: bool = True,
    notes: str = "",
) -> dict[str, Any]:
    """The payload-ready result of one run: `figures` judged by `spec`'s checks for `profile`.

    A profile outside ``spec.conclusive`` (smoke) is always inconclusive; `conclusive=False`
    makes any run so (a measurement that could not be made as specified). `notes` is appended
    to the spec's notes (what this run did differently, e.g. smoke sizes).
    """
    current = spec.canonical_profile(profile)
    checks = checks_of(spec, profile, figures)
    # a gating check whose figure was never written measured nothing: no verdict rests on it
    missing = sorted(
        c.figure for c in spec.checks_for(profile) if c.gating and c.figure not in figures
    )
    if missing:
        notes = " ".join(s for s in (f"not measured: {', '.join(missing)}.", notes) if s)
    decides = conclusive and current in spec.conclusive and not missing
    return {
        "result_version": RESULT_VERSION,
        "claim_id": spec.claim_id,
        "paper": spec.paper_ref,
        "profile": profile,
        "statement": spec.statement,
        "scale": spec.scale,
        "verdict": verdict_of(checks, conclusive=decides),
        "checks": [c.as_payload() for c in checks],
        "figures": {k: (v if isinstance(v, str) else dec(v)) for k, v in figures.items()},
        "notes": " ".join(s for s in (notes, spec.notes) if s),
    }
