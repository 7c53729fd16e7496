"""The claim result shape: decimal strings, checks and the verdict rule (the one judge)."""

from __future__ import annotations

import math

import pytest

from pith_core import canonical_json
from replication.claims.judge import Check, dec, judge, verdict_of
from replication.claims.spec import CheckSpec, ClaimSpec


@pytest.mark.parametrize(
    ("x", "text"),
    [
        (2.5, "2.5"),
        (1.5e-7, "0.00000015"),
        (0.000123, "0.000123"),
        (1 / 3, "0.333333"),
        (123456789.0, "123456789"),
        (7, "7"),
        (0.0, "0"),
        (-0.25, "-0.25"),
    ],
)
def test_dec_writes_plain_decimals(x: float, text: str) -> None:
    assert dec(x) == text
    assert math.isclose(float(dec(x)), x, rel_tol=1e-5)


def test_dec_refuses_bools() -> None:
    with pytest.raises(TypeError):
        dec(True)


def test_checks_and_verdict() -> None:
    ok = Check("speedup", 1.4, ">=", 1.25)
    bad = Check("memory_ratio", 0.6, "<=", 0.5)
    info = Check("reported", 0.1, ">=", 1.0, gating=False)
    assert ok.passed and not bad.passed and not info.passed
    assert verdict_of([ok, info]) == "replicated"
    assert verdict_of([ok, bad]) == "not_replicated"
    assert verdict_of([info]) == "inconclusive"
    assert verdict_of([ok], conclusive=False) == "inconclusive"
    assert not Check("nan", float("nan"), "<=", 1.0).passed


def test_result_is_signable() -> None:
    spec = ClaimSpec(
        claim_id="x",
        paper="X",
        arxiv="1",
        statement="s",
        scale="toy",
        profiles=("smoke",),
        checks=(CheckSpec("a", "ms", ">=", 0.0625),),
        conclusive=("smoke",),
    )
    result = judge(spec, "smoke", {"ms": 0.125, "n": 3, "gpu": "none"})
    canonical_json(result)  # no floats anywhere: the worker can sign it as a payload
    assert result["figures"] == {"ms": "0.125", "n": "3", "gpu": "none"}
    assert result["verdict"] == "replicated"
    assert result["paper"] == "arxiv:1"
