"""Replication charts from signed figures: which charts a record's figures make, their points,
and SVG that needs no script."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from app.pages.charts import collect, record_charts, replication_charts

FIGURES = {
    "speedup_vs_fused_T512": "1.41",
    "speedup_vs_fused_T2048": "1.08",
    "speedup_vs_fused_T8192": "NaN",  # not a finite number: left out
    "speedup_vs_hook_T512": "2.0",
    "mem_fp32_T512_forge_MiB": "72",
    "mem_fp32_T512_fused_MiB": "320",
    "state_bytes_sage_hybrid": str(3 * 2**20),
    "state_bytes_sage_over_sinkgd_hybrid": "0.5",  # a ratio, not a size
    "quality_adamw_mean_eval_loss": "5.04",
    "quality_sage_hybrid_seed0_eval_loss": "5.49",
    "notes": "free text",
    "speedup_vs_fused_T9": ["not", "a", "number"],
}


def test_charts_found_by_figure_names() -> None:
    charts = {c.title.split(" (")[0]: c for c in collect(FIGURES)}
    assert set(charts) == {
        "Speedup by size",
        "Memory side by side",
        "Optimizer state side by side",
        "Eval loss by arm",
    }
    assert charts["Speedup by size"].values == {
        "T512": {"vs fused": 1.41, "vs hook": 2.0},
        "T2048": {"vs fused": 1.08},
    }
    assert charts["Memory side by side"].values == {"fp32 T512": {"forge": 72.0, "fused": 320.0}}
    assert charts["Optimizer state side by side"].values == {
        "optimizer state": {"sage hybrid": 3.0}
    }
    assert charts["Eval loss by arm"].values == {
        "adamw": {"mean": 5.04},
        "sage hybrid": {"seed 0": 5.49},
    }


def test_svg_is_static_and_names_its_series() -> None:
    entry = {"event_id": "sha256:" + "ab" * 32, "payload": {"figures": FIGURES}}
    charts = record_charts(entry)
    assert len(charts) == 4
    for chart in charts:
        svg = chart["svg"]
        root = ET.fromstring(svg)
        assert root.tag.endswith("svg")
        assert "<script" not in svg and "http://kozea" not in svg.lower()
    assert "vs hook" in charts[0]["svg"] and "T2048" in charts[0]["svg"]
    assert record_charts(entry)[0]["svg"] == charts[0]["svg"]  # stable: same page, same ETag


def test_groups_newest_first_newest_of_a_claim_open() -> None:
    def entry(n: int, claim: str) -> dict[str, object]:
        return {
            "event_id": f"sha256:{n:064x}",
            "created_at": f"2026-11-2{n}T00:00:00Z",
            "payload": {"claim_id": claim, "verdict": "replicated", "figures": FIGURES},
        }

    groups = replication_charts([entry(1, "forge"), entry(2, "forge"), entry(3, "sage")])
    assert [(g["claim"], g["open"]) for g in groups] == [
        ("sage", True),
        ("forge", True),
        ("forge", False),
    ]
    assert replication_charts([{"event_id": "x", "payload": {"verdict": "error"}}]) == []


def test_an_eval_loss_curve_is_a_line_per_arm_over_steps() -> None:
    figures = {
        f"quality_{arm}_seed0_eval_loss_step{step}": str(base - step / 1000)
        for arm, base in (("bf16", 5.0), ("fp4_full", 5.2))
        for step in (0, 100, 200, 300)
    }
    figures["quality_bf16_mean_eval_loss_step300"] = "4.69"
    (curve,) = collect(figures)
    assert curve.title.startswith("Eval loss curve by arm")
    assert curve.values["300"] == {"bf16 (seed 0)": 4.7, "fp4 full (seed 0)": 4.9, "bf16": 4.69}
    assert set(curve.values) == {"0", "100", "200", "300"}
    (chart,) = record_charts({"event_id": "sha256:" + "cd" * 32, "payload": {"figures": figures}})
    root = ET.fromstring(chart["svg"])
    lines = [e for e in root.iter() if e.tag.endswith("path") and "line" in e.get("class", "")]
    assert len(lines) >= 2  # one polyline per arm with two or more points
    assert "fp4 full (seed 0)" in chart["svg"] and ">step<" in chart["svg"]


def test_a_long_curve_is_drawn_through_evenly_spaced_steps_ends_kept() -> None:
    figures = {f"quality_sage_mean_eval_loss_step{s}": str(6 - s / 10_000) for s in range(500)}
    (curve,) = collect(figures)
    assert len(curve.values) == 500
    svg = record_charts({"event_id": "e", "payload": {"figures": figures}})[0]["svg"]
    dots = [e for e in ET.fromstring(svg).iter() if e.tag.endswith("circle")]
    assert 2 <= len(dots) <= 48
    assert ">0<" in svg and ">499<" in svg  # first and last step labelled
