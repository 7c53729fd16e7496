"""Charts of a replication record's key figures, rendered as SVG on the server with pygal (no
JavaScript): speedup by size, memory side by side, eval loss by arm and, where a record signed
one, the eval loss curve of each arm.

A curve is signed as flat figures like the rest (a replication payload's figures are decimal
strings under names): `quality_<arm>_<mean|seedN>_eval_loss_step<S>`, one per evaluated step.

Figures are whatever a worker signed (decimal strings under free names), so charts are found by
the names' patterns (FORGE's and SAGE's claims name them so; a new claim that follows them gets
charts too); a figure that is not a finite number is left out, never guessed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pygal
from pygal.style import Style

MAX_SERIES = 8
SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>|<script\b[^>]*/>", re.DOTALL)
MAX_POINTS = 16
MAX_CURVE_POINTS = 48  # a longer curve is drawn through evenly spaced steps, ends kept
STYLE = Style(
    background="transparent",
    plot_background="#fbfbfc",
    foreground="#1d1f23",
    foreground_strong="#1d1f23",
    foreground_subtle="#626873",
    font_family="system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', sans-serif",
    colors=("#2c5fb8", "#c46a12", "#1e7a46", "#8a3ab9", "#b8322c", "#4a8fa8", "#7a7a7a", "#9c8a1e"),
    title_font_size=15,
    label_font_size=12,
    major_label_font_size=12,
    legend_font_size=12,
    value_font_size=11,
)


@dataclass
class Series:
    """Points of one chart: x label -> series name -> value."""

    title: str
    y_title: str
    kind: str  # "bar" | "line"
    values: dict[str, dict[str, float]] = field(default_factory=dict)

    def put(self, x: str, series: str, value: float) -> None:
        self.values.setdefault(x, {})[series] = value


def _number(value: Any) -> float | None:
    if not isinstance(value, str | int):
        return None
    try:
        x = float(value)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def _size_key(label: str) -> tuple[float, str]:
    """Sizes sort by their number (T512 < T2048; 4096x4096 by element count)."""
    dims = [int(d) for d in re.findall(r"\d+", label)]
    return (float(math.prod(dims)) if dims else math.inf, label)


def _words(name: str) -> str:
    return name.replace("_", " ")


# (chart id, pattern, how a match adds a point); first chart of an id decides its titles.
Rule = tuple[str, re.Pattern[str], Callable[[re.Match[str], float, dict[str, Series]], None]]


def _speedup(m: re.Match[str], v: float, charts: dict[str, Series]) -> None:
    chart = charts.setdefault(
        "speedup", Series("Speedup by size (× over the baseline, higher is better)", "×", "line")
    )
    chart.put(m["size"], f"vs {_words(m['baseline'])}", v)


def _speed_ratio(m: re.Match[str], v: float, charts: dict[str, Series]) -> None:
    chart = charts.setdefault(
        "speedup", Series("Speedup by size (× over the baseline, higher is better)", "×", "line")
    )
    chart.put(m["size"], f"vs {_words(m['baseline'])} ({m['dtype']})", v)


def _memory(m: re.Match[str], v: float, charts: dict[str, Series]) -> None:
    chart = charts.setdefault(
        "memory", Series("Memory side by side (MiB, lower is better)", "MiB", "bar")
    )
    chart.put(f"{_words(m['variant'])} {m['size']}", _words(m["arm"]), v)


def _state_bytes(m: re.Match[str], v: float, charts: dict[str, Series]) -> None:
    chart = charts.setdefault(
        "state", Series("Optimizer state side by side (MiB, lower is better)", "MiB", "bar")
    )
    chart.put("optimizer state", _words(m["arm"]), v / 2**20)


def _eval_loss(m: re.Match[str], v: float, charts: dict[str, Series]) -> None:
    chart = charts.setdefault(
        "loss", Series("Eval loss by arm (nats, lower is better)", "eval loss", "bar")
    )
    run = "mean" if m["run"] == "mean" else f"seed {m['run'].removeprefix('seed')}"
    chart.put(_words(m["arm"]), run, v)


def _loss_curve(m: re.Match[str], v: float, charts: dict[str, Series]) -> None:
    chart = charts.setdefault(
        "curve",
        Series("Eval loss curve by arm (nats by step, lower is better)", "eval loss", "curve"),
    )
    run = "" if m["run"] == "mean" else f" (seed {m['run'].removeprefix('seed')})"
    chart.put(m["step"], f"{_words(m['arm'])}{run}", v)


RULES: tuple[Rule, ...] = (
    ("speedup", re.compile(r"speedup_vs_(?P<baseline>[a-z]+)_(?P<size>T\d+)"), _speedup),
    (
        "speedup",
        re.compile(
            r"speed_(?P<size>\d+x\d+)_(?P<dtype>[a-z0-9]+)_(?P<baseline>[a-z_]+?)_ms_over_[a-z]+_ms"
        ),
        _speed_ratio,
    ),
    (
        "memory",
        re.compile(r"mem_(?P<variant>[a-z0-9_]+)_(?P<size>T\d+)_(?P<arm>[a-z0-9]+)_MiB"),
        _memory,
    ),
    ("state", re.compile(r"state_bytes_(?P<arm>(?!.*_over_)[a-z0-9_]+)"), _state_bytes),
    (
        "loss",
        re.compile(r"quality_(?P<arm>[a-z0-9_]+?)_(?P<run>mean|seed\d+)_eval_loss"),
        _eval_loss,
    ),
    (
        "curve",
        re.compile(
            r"quality_(?P<arm>[a-z0-9_]+?)_(?P<run>mean|seed\d+)_eval_loss_step(?P<step>\d+)"
        ),
        _loss_curve,
    ),
)


def collect(figures: Mapping[str, Any]) -> list[Series]:
    """The charts a record's figures support, in the order of RULES."""
    charts: dict[str, Series] = {}
    for name, raw in figures.items():
        value = _number(raw)
        if value is None or not isinstance(name, str):
            continue
        for _id, pattern, add in RULES:
            m = pattern.fullmatch(name)
            if m:
                add(m, value, charts)
                break
    order = [rule[0] for rule in RULES]
    found = sorted(charts.items(), key=lambda kv: order.index(kv[0]))
    return [c for _, c in found if len(c.values) >= 1]


def _evenly(xs: list[str], most: int) -> list[str]:
    """At most `most` of `xs`, evenly spaced, the first and the last kept."""
    if len(xs) <= most:
        return xs
    picks = sorted({round(i * (len(xs) - 1) / (most - 1)) for i in range(most)})
    return [xs[i] for i in picks]


def render(chart: Series, chart_id: str) -> str:
    """One chart as an inline <svg> (no script, no external resource)."""
    curve = chart.kind == "curve"
    ordered = sorted(chart.values, key=_size_key)
    xs = _evenly(ordered, MAX_CURVE_POINTS) if curve else ordered[:MAX_POINTS]
    names: list[str] = []
    for x in xs:
        for name in chart.values[x]:
            if name not in names:
                names.append(name)
    names = names[:MAX_SERIES]
    cls = pygal.Line if chart.kind in ("line", "curve") and len(xs) > 1 else pygal.Bar
    graph = cls(
        style=STYLE,
        js=[],
        disable_xml_declaration=True,
        width=720,
        height=320,
        explicit_size=False,
        title=chart.title,
        y_title=chart.y_title,
        legend_at_bottom=True,
        legend_at_bottom_columns=min(4, max(1, len(names))),
        print_values=chart.kind == "bar",
        value_formatter=lambda v: f"{v:.3g}",
        show_y_guides=True,
        dots_size=2 if curve else 4,
        x_title="step" if curve else None,
        x_labels_major_count=8 if curve else None,
        show_minor_x_labels=not curve,
        stroke_style={"width": 2.5},
        truncate_label=-1,
        include_x_axis=chart.kind == "bar",
    )
    graph.uuid = chart_id  # stable ids: the same record renders the same page
    graph.x_labels = xs
    for name in names:
        graph.add(name, [chart.values[x].get(name) for x in xs])
    svg = str(graph.render())
    # pygal leaves an inline script holding its config for its optional tooltips: not needed
    return SCRIPT.sub("", svg)


def record_charts(entry: Mapping[str, Any]) -> list[dict[str, str]]:
    """[{title, svg}] for one replication record of the state."""
    payload = entry.get("payload")
    figures = payload.get("figures") if isinstance(payload, Mapping) else None
    if not isinstance(figures, Mapping):
        return []
    stem = re.sub(r"[^0-9a-f]", "", str(entry.get("event_id", "")))[:16] or "record"
    return [
        {"title": chart.title, "svg": render(chart, f"{stem}-{i}")}
        for i, chart in enumerate(collect(figures))
    ]


def replication_charts(entries: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Chart groups for the page, newest record first; the newest of each claim opens."""
    groups = []
    seen: set[str] = set()
    for entry in reversed(entries):
        charts = record_charts(entry)
        if not charts:
            continue
        payload = entry["payload"]
        claim = str(payload.get("claim_id", ""))[:80]
        groups.append(
            {
                "claim": claim,
                "profile": str(payload.get("profile", ""))[:80],
                "verdict": str(payload.get("verdict", ""))[:40],
                "created_at": entry.get("created_at", ""),
                "event_id": entry.get("event_id", ""),
                "open": claim not in seen,
                "charts": charts,
            }
        )
        seen.add(claim)
    return groups
