"""The Jinja environment of the HTML pages (one, shared by the page routes and error pages)."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html", "svg", "xml"]),
    auto_reload=False,
)
