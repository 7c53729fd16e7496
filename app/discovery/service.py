"""The Atom feed (feedgen), the sitemap and robots.txt, built from the log and the records."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from feedgen.feed import FeedGenerator
from sqlalchemy.orm import Session

from ..core.timeutil import as_utc
from ..storage.models import Event, Record
from .repository import DiscoveryRepository

FEED_ENTRIES = 50
SITEMAP_LIMIT = 50_000  # the sitemap protocol's limit per file
WHAT = {
    "record": "registered",
    "graph": "graph snapshot",
    "alias": "alias",
    "author_attestation": "author attestation",
    "timestamp_anchor": "timestamp anchor",
    "storage_attestation": "storage attestation",
    "citation_signature": "signed citation",
    "replication": "replication record",
    "correction": "correction",
    "mirror_hint": "mirror hint",
}


def _entry_title(event: Event, paper: dict[str, object]) -> str:
    title = str(paper.get("title", "")) or event.subject
    what = WHAT.get(event.target, event.target)
    if event.target == "replication":
        payload = json.loads(event.body).get("payload", {})
        claim, verdict = payload.get("claim_id"), payload.get("verdict")
        if isinstance(claim, str) and isinstance(verdict, str):
            what = f"replication of {claim[:60]}: {verdict[:40].replace('_', ' ')}"
    return f"{what} · {title}"


def atom_feed(base_url: str, session: Session, subject: Record | None = None) -> bytes:
    """New records and events, newest first; one entry per signed event."""
    rows = DiscoveryRepository(session).latest_events(
        FEED_ENTRIES, subject.pith_number if subject else None
    )
    fg = FeedGenerator()
    if subject is None:
        self_url = f"{base_url}/feed.atom"
        fg.title("Pith registry: new records and events")
        fg.link(href=f"{base_url}/", rel="alternate")
    else:
        self_url = f"{base_url}/pith/{subject.suffix}/feed.atom"
        fg.title(f"Pith {subject.pith_number}: signed events")
        fg.link(href=f"{base_url}/pith/{subject.suffix}", rel="alternate")
    fg.id(self_url)
    fg.link(href=self_url, rel="self")
    fg.author({"name": "Pith registry", "uri": base_url + "/"})
    fg.subtitle("Every signed event this registry accepted, newest first.")
    fg.updated(as_utc(rows[0][0].received_at) if rows else datetime(1970, 1, 1, tzinfo=UTC))
    for event, record in reversed(rows):  # feedgen lists the last added first
        paper = json.loads(record.paper)
        page = f"{base_url}/pith/{record.suffix}"
        entry = fg.add_entry()
        entry.id(f"{base_url}/api/pith-number/{record.suffix}/events.json#{event.event_id}")
        entry.title(_entry_title(event, paper))
        entry.link(href=page, rel="alternate")
        entry.updated(as_utc(event.received_at))
        entry.published(as_utc(event.received_at))
        entry.category(term=event.target)
        signer = json.loads(event.body).get("signer", {})
        entry.summary(
            f"{event.event_type} signed by {signer.get('signer_id', '?')} "
            f"({event.signer_fingerprint}) at {event.created_at}; event {event.event_id}; "
            f"log index {event.log_index}."
        )
    return bytes(fg.atom_str(pretty=True))


def sitemap(base_url: str, session: Session) -> bytes:
    """The index and every record page, with when each last changed."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">',
        f"<url><loc>{escape(base_url)}/</loc><changefreq>hourly</changefreq></url>",
    ]
    for record, at in DiscoveryRepository(session).last_changed(SITEMAP_LIMIT):
        changed = as_utc(at or record.created_at).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(
            f"<url><loc>{escape(base_url)}/pith/{record.suffix}</loc>"
            f"<lastmod>{changed}</lastmod></url>"
        )
    lines.append("</urlset>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def robots(base_url: str) -> bytes:
    """Crawl the pages and records; leave the worker and admin API alone."""
    return (
        "User-agent: *\n"
        "Allow: /\n"
        "Disallow: /api/jobs\n"
        "Disallow: /api/workers\n"
        "Disallow: /api/import\n"
        f"Sitemap: {base_url}/sitemap.xml\n"
    ).encode()
