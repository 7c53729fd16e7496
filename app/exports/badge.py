"""A record's badge: a flat SVG (the look shields.io made common) saying what was verified.

It is built from the record document's `verification_status` (the trust policy's verdicts, the
same words the page shows), so a badge never claims more than the record does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

GREEN, BLUE, ORANGE, RED, GREY = "#2e7d32", "#2c5fb8", "#b26a00", "#c62828", "#555"
REPLICATION_WORDS = {
    "replicated": "replicated",
    "not_replicated": "not replicated",
    "mixed": "replications disagree",
    "inconclusive": "replication inconclusive",
    "self_reported_only": "self-reported replication",
}


@dataclass(frozen=True)
class Badge:
    label: str
    message: str
    color: str

    @property
    def title(self) -> str:
        return f"{self.label}: {self.message}"


def badge_for(doc: dict[str, Any]) -> Badge:
    """What a record's badge says: the verified facts in order, coloured by the strongest news
    (a failed receipt or an equivocation is red, a replication that failed orange)."""
    status = doc["verification_status"]
    label = doc["short_pith_number"]
    if not status.get("pith_receipt"):
        return Badge(label, "receipt not verified", RED)
    if status.get("equivocations"):
        return Badge(label, f"{status['equivocations']} equivocation(s)", RED)
    facts = ["signed"]
    if status.get("externally_anchored"):
        facts.append("anchored")
    if status.get("storage_verified"):
        facts.append("stored")
    if status.get("author_attested"):
        facts.append("author attested")
    replication = status.get("replication_status")
    if replication is None:  # a record document from before the trust policy: counts only
        replication = "self_reported_only" if status.get("replication_records") else "none"
    if replication in REPLICATION_WORDS:
        facts.append(REPLICATION_WORDS[replication])
    color = BLUE
    if replication == "replicated":
        color = GREEN
    elif replication in ("not_replicated", "mixed"):
        color = ORANGE
    return Badge(label, " · ".join(facts), color)


def _width(text: str) -> int:
    """Approximate width in px of `text` in 11px Verdana/DejaVu Sans (no font metrics here)."""
    narrow = set("iIl.,:;|!' ·()")
    wide = set("mwMW@")
    return round(sum(3.5 if c in narrow else 10 if c in wide else 7 for c in text)) + 10


def render_svg(badge: Badge) -> bytes:
    left, right = _width(badge.label), _width(badge.message)
    total = left + right
    label, message, title = escape(badge.label), escape(badge.message), escape(badge.title)
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" \
aria-label="{title}">
<title>{title}</title>
<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/>\
<stop offset="1" stop-opacity=".1"/></linearGradient>
<clipPath id="r"><rect width="{total}" height="20" rx="3" fill="#fff"/></clipPath>
<g clip-path="url(#r)">
<rect width="{left}" height="20" fill="{GREY}"/>
<rect x="{left}" width="{right}" height="20" fill="{badge.color}"/>
<rect width="{total}" height="20" fill="url(#s)"/>
</g>
<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">
<text x="{left / 2:.1f}" y="14">{label}</text>
<text x="{left + right / 2:.1f}" y="14">{message}</text>
</g>
</svg>
""".encode()
