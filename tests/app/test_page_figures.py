"""The replication table's key figures: every gating check is shown, then reported ones."""

from __future__ import annotations

import json
from pathlib import Path

from app.pages.service import _key_figures

RESULTS = Path(__file__).resolve().parents[2] / "replication" / "results"


def test_every_gating_check_of_the_committed_forge_record_is_shown() -> None:
    record = json.loads((RESULTS / "forge.json").read_text())[0]
    checks = record["payload"]["checks"]
    gating = [c["name"] for c in checks if c["gating"]]
    assert len(gating) > 6  # more than the table's default: the rule below is exercised
    shown, more = _key_figures(record["payload"])
    assert [f["name"] for f in shown] == gating
    assert more == len(checks) - len(gating)


def test_reported_checks_fill_up_to_the_limit() -> None:
    checks = [
        {
            "name": f"c{i}",
            "measured": "1",
            "op": ">=",
            "target": "0",
            "passed": True,
            "gating": i < 2,
        }
        for i in range(9)
    ]
    shown, more = _key_figures({"checks": list(reversed(checks))})
    assert [f["name"] for f in shown][:2] == ["c1", "c0"]
    assert len(shown) == 6 and more == 3
    assert all(f["passed"] is True for f in shown)
