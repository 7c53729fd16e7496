"""Claims as data: specs import no torch, the registry finds every claim package, and the one
judge turns spec + figures into checks and a verdict."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from pith_core import canonical_json
from replication.claims.judge import VERDICTS, judge, mean_and_sem
from replication.claims.registry import CLAIMS
from replication.claims.spec import CheckSpec, ClaimSpec

REPO = Path(__file__).resolve().parents[2]


def _spec(*checks: CheckSpec) -> ClaimSpec:
    return ClaimSpec(
        claim_id="toy",
        paper="Toy",
        arxiv="2601.00001",
        statement="toys are fast",
        scale="one toy",
        profiles=("smoke", "full"),
        checks=checks,
        legacy_profiles={"h100": "full"},
    )


def test_registry_lists_every_claim_package_without_torch() -> None:
    code = (
        "import sys, json\n"
        "from replication.claims.registry import CLAIMS\n"
        "print(json.dumps({k: list(v.all_profiles) for k, v in CLAIMS.items()}))\n"
        "assert 'torch' not in sys.modules and 'triton' not in sys.modules, 'torch'\n"
        "import replication.claims.base, replication.claims.judge\n"
        "assert 'nacl' not in sys.modules, 'a claim needs pynacl (absent on the GPU image)'\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    packages = {p.parent.name for p in (REPO / "replication" / "claims").glob("*/spec.py")}
    assert set(listed) == packages >= {"forge", "sage", "selftest"}
    assert listed["forge"][:2] == ["smoke", "full"] and "h100" in listed["forge"]


@pytest.mark.parametrize("claim_id", sorted(CLAIMS))
def test_every_spec_is_well_formed(claim_id: str) -> None:
    spec = CLAIMS[claim_id]
    assert spec.statement and spec.scale and spec.profiles
    for c in spec.checks:
        assert set(c.profiles or spec.profiles) <= set(spec.all_profiles)
    # a smoke run's figures missing on purpose: the judge still answers, inconclusively or not
    for profile in spec.profiles:
        result = judge(spec, profile, {})
        assert result["verdict"] in {"inconclusive", "not_replicated"}
        canonical_json(result)


def test_verdicts_are_pith_cores() -> None:
    from pith_core.events import REPLICATION_VERDICTS

    assert set(VERDICTS) == REPLICATION_VERDICTS


def test_judge_decides_by_gating_checks_and_profile() -> None:
    spec = _spec(
        CheckSpec("fast", "speedup", ">=", 1.25),
        CheckSpec("goal", "speedup", ">=", 1.5, gating=False),
        CheckSpec("mem", "mem_ratio", "<", 1.0, profiles=("full",)),
    )
    full = judge(spec, "full", {"speedup": 1.4, "mem_ratio": 0.5, "gpu": "H200"})
    assert full["verdict"] == "replicated"
    assert [c["name"] for c in full["checks"]] == ["fast", "goal", "mem"]
    assert [c["passed"] for c in full["checks"]] == [True, False, True]
    assert full["figures"] == {"speedup": "1.4", "mem_ratio": "0.5", "gpu": "H200"}
    assert full["paper"] == "arxiv:2601.00001" and full["scale"] == "one toy"
    assert judge(spec, "full", {"speedup": 1.1, "mem_ratio": 0.5})["verdict"] == "not_replicated"
    smoke = judge(spec, "smoke", {"speedup": 1.4})
    assert smoke["verdict"] == "inconclusive"  # smoke decides nothing
    assert [c["name"] for c in smoke["checks"]] == ["fast", "goal"]  # mem is full-only
    legacy = judge(spec, "h100", {"speedup": 1.4, "mem_ratio": 0.5})
    assert legacy["profile"] == "h100" and legacy["verdict"] == "replicated"
    assert (
        judge(spec, "full", {"speedup": 1.4, "mem_ratio": 0.5}, conclusive=False)["verdict"]
        == "inconclusive"
    )


def test_a_missing_figure_fails_its_check_and_leaves_no_verdict() -> None:
    spec = _spec(CheckSpec("fast", "speedup", ">=", 1.25))
    result = judge(spec, "full", {"other": 2.0})
    (check,) = result["checks"]
    assert check["measured"] == "nan" and check["passed"] is False
    # nothing was measured: a signed not_replicated would claim a result the run never had
    assert result["verdict"] == "inconclusive"
    assert "not measured: speedup" in result["notes"]


def test_a_measured_nan_still_fails_the_claim() -> None:
    spec = _spec(CheckSpec("loss", "eval_loss", "<=", 5.0))
    assert judge(spec, "full", {"eval_loss": float("nan")})["verdict"] == "not_replicated"


@pytest.mark.parametrize(
    ("mean", "std", "verdict", "decided"),
    [
        (0.000, 0.004, "replicated", True),  # 0.01 is 2.5 spreads above the mean
        (0.008, 0.004, "inconclusive", False),  # the interval straddles 0.01
        (0.012, 0.004, "inconclusive", False),
        (0.030, 0.004, "not_replicated", True),  # clearly above, whatever the seed
    ],
)
def test_a_spread_that_straddles_the_target_is_inconclusive(
    mean: float, std: float, verdict: str, decided: bool
) -> None:
    spec = _spec(CheckSpec("gap", "gap_mean", "<=", 0.01, spread="gap_sem"))
    result = judge(spec, "full", {"gap_mean": mean, "gap_sem": std})
    (check,) = result["checks"]
    assert result["verdict"] == verdict
    assert check["decided"] is decided and float(check["spread"]) == std
    assert check["passed"] is (mean <= 0.01)


def test_an_undecided_check_does_not_hide_a_decided_failure() -> None:
    spec = _spec(
        CheckSpec("gap", "gap_mean", "<=", 0.01, spread="gap_sem"),
        CheckSpec("fast", "speedup", ">=", 1.25),
    )
    figures = {"gap_mean": 0.009, "gap_sem": 0.01, "speedup": 1.0}
    assert judge(spec, "full", figures)["verdict"] == "not_replicated"


def test_specs_refuse_what_cannot_be_judged() -> None:
    with pytest.raises(ValueError, match="op"):
        CheckSpec("x", "x", "==", 1.0)
    with pytest.raises(ValueError, match="share a name"):
        _spec(CheckSpec("x", "a", ">=", 1.0), CheckSpec("x", "b", ">=", 1.0))
    with pytest.raises(ValueError, match="unknown profiles"):
        _spec(CheckSpec("x", "a", ">=", 1.0, profiles=("a100",)))
    with pytest.raises(ValueError, match="unknown profile"):
        judge(_spec(), "a100", {})
    assert math.isnan(
        float(
            judge(_spec(CheckSpec("x", "a", ">=", 1.0)), "full", {"a": "n/a"})["checks"][0][
                "measured"
            ]
        )
    )


def test_mean_and_sem_is_the_standard_error_of_the_mean() -> None:
    # by hand: mean 3, squared deviations 4+1+0+9 = 14, sample variance 14/3, sem sqrt(14/3)/2
    mean, sem = mean_and_sem([1.0, 2.0, 3.0, 6.0])
    assert mean == pytest.approx(3.0) and sem == pytest.approx(math.sqrt(14 / 3) / 2)
    # two seeds: the standard error is half their distance (the standard deviation is 1/sqrt 2)
    assert mean_and_sem([1.00, 1.04]) == pytest.approx((1.02, 0.02))
    one = mean_and_sem([0.5])
    assert one[0] == 0.5 and math.isnan(one[1])  # one seed: the spread is unknown
    with pytest.raises(ValueError):
        mean_and_sem([])


def test_an_unknown_spread_leaves_a_passing_check_undecided() -> None:
    """One seed (NaN standard error) or a spread figure never written cannot show that the
    seeds did not decide: no replicated verdict rests on it; a measured NaN still fails."""
    spec = _spec(CheckSpec("gap", "gap_mean", "<=", 0.01, spread="gap_sem"))
    for figures in ({"gap_mean": 0.0, "gap_sem": math.nan}, {"gap_mean": 0.0}):
        result = judge(spec, "full", figures)
        assert result["verdict"] == "inconclusive"
        assert result["checks"][0]["decided"] is False and result["checks"][0]["passed"] is True
    failed = judge(spec, "full", {"gap_mean": math.nan, "gap_sem": 0.001})
    assert failed["verdict"] == "not_replicated"


@pytest.mark.parametrize("claim_id", sorted(CLAIMS))
def test_every_spread_is_the_standard_error(claim_id: str) -> None:
    """One spread rule across claims: every check judged over seeds names a standard error
    (``mean_and_sem``) figure, never a standard deviation."""
    for c in CLAIMS[claim_id].checks:
        if c.spread is not None:
            assert c.spread.endswith("_sem"), f"{claim_id}/{c.name}: spread {c.spread}"
