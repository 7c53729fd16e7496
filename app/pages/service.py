"""What the HTML pages show, built from the record document and the merged state."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from pith_core.keys import fingerprint

from ..core.context import AppContext
from ..events.repository import EventRepository
from ..events.state import state_for_read
from ..records.repository import RecordRepository
from ..records.service import record_document, resolve
from ..trust.policy import policy_for
from ..trust.service import verification

RECIPE_PYTHON = (
    "import sys,json,hashlib; b=json.dumps(json.loads(sys.stdin.read()), sort_keys=True, "
    "separators=(',',':'), ensure_ascii=False).encode(); print(hashlib.sha256(b).hexdigest())"
)
CHECKLIST = [
    ("timestamp_anchors", "timestamp_anchor", "Timestamp anchor (e.g. OpenTimestamps / Bitcoin)"),
    ("storage_attestations", "storage_attestation", "Storage attestation (e.g. Internet Archive)"),
    ("author_attestations", "author_attestation", "Author attestation"),
    ("citation_signatures", "citation_signature", "Signed citations"),
    ("replication_records", "replication_record", "Replication records"),
]


def recipe(base_url: str, suffix: str, digest: str) -> str:
    """The `curl | jq | python3` lines that recompute a record's canonical hash."""
    return (
        f"curl -sH 'Accept: application/ld+json' {base_url}/pith/{suffix} \\\n"
        f"  | jq -c '.canonical_record' \\\n"
        f'  | python3 -c "{RECIPE_PYTHON}"\n'
        f"# expect: {digest}"
    )


def verify_command(ctx: AppContext, suffix: str, receipt: dict[str, Any]) -> str | None:
    """`pith verify` of the record under the key its receipt names (when this registry pins it)."""
    for key in ctx.identity.pinned_keys:
        if fingerprint(key) == receipt.get("public_key_fingerprint"):
            return f"curl -s {ctx.base_url}/pith/{suffix}.json | pith verify --key {key.hex()} -"
    return None


def bundle_verify_keys(ctx: AppContext, receipt: dict[str, Any]) -> list[bytes]:
    """The keys a bundle verifies under: this registry's, which signed its events, and the key
    the receipt names when that is another pinned registry's (an imported record keeps its
    receipt)."""
    keys = [ctx.identity.key.public_key]
    for key in ctx.identity.pinned_keys:
        if fingerprint(key) == receipt.get("public_key_fingerprint") and key not in keys:
            keys.append(key)
    return keys


def bundle_verify_command(base_url: str, suffix: str, keys: list[bytes]) -> str:
    """`pith verify` of the whole bundle, offline but for the fetch: every signed event
    (replication records included) checked, the merged state recomputed, the receipt checked.
    Given the bundle's URL, `pith verify` follows `next` through every page (one page alone
    holds only its events, so its state could not be checked); `curl … | pith verify -` does
    the same for a bundle small enough to be one page."""
    flags = " ".join(f"--key {key.hex()}" for key in keys)
    return f"pith verify {flags} {base_url}/pith/{suffix}/bundle.json"


def _text(value: Any, limit: int = 80) -> str:
    """A value of a signed payload as page text (payloads are anyone's JSON: bounded)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _key_figures(
    payload: dict[str, Any], limit: int = 6, max_gating: int = 12
) -> tuple[list[dict[str, Any]], int]:
    """The checks a claim was judged by (every gating one, up to `max_gating`, then reported ones
    up to `limit` in all: measured against target), else its first figures; and how many more."""
    checks = [c for c in payload.get("checks") or [] if isinstance(c, dict) and c.get("name")]
    if checks:
        checks.sort(key=lambda c: c.get("gating") is not True)
        gating = sum(1 for c in checks if c.get("gating") is True)
        limit = max(limit, min(gating, max_gating))
        shown = [
            {
                "name": _text(c["name"]),
                "value": f"{_text(c.get('measured', '?'))} {_text(c.get('op', ''))} "
                f"{_text(c.get('target', '?'))}",
                "passed": c.get("passed") if isinstance(c.get("passed"), bool) else None,
            }
            for c in checks[:limit]
        ]
        return shown, len(checks) - len(shown)
    figures = payload.get("figures")
    if not isinstance(figures, dict):
        return [], 0
    items = list(figures.items())
    shown = [{"name": _text(k), "value": _text(v), "passed": None} for k, v in items[:limit]]
    return shown, len(items) - len(shown)


def replication_rows(
    entries: list[dict[str, Any]], from_jobs: set[str] | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """One table row per replication record of the state (the latest `limit`): claim, verdict,
    key figures, GPU, worker, date, and whether it is a registered worker's job record or
    self-reported."""
    rows = []
    for entry in entries[-limit:]:
        payload = entry["payload"]
        env = payload.get("environment") if isinstance(payload.get("environment"), dict) else {}
        gpu = _text(env.get("gpu_name", "")) or "not stated"
        count = env.get("gpu_count")
        if gpu == "none":
            gpu = "no GPU (CPU)"
        elif isinstance(count, str) and count.isdigit() and int(count) > 1:
            gpu = f"{count} × {gpu}"
        figures, more = _key_figures(payload)
        rows.append(
            {
                "claim": _text(payload.get("claim_id", "")),
                "profile": _text(payload.get("profile", "")),
                "verdict": _text(payload.get("verdict", "")),
                "error": _text(payload["error"], 200) if payload.get("error") else "",
                "figures": figures,
                "more_figures": more,
                "gpu": gpu,
                "software": ", ".join(
                    f"{k} {_text(env[k], 40)}" for k in ("torch", "triton", "cuda") if k in env
                ),
                "worker": entry["signer"]["signer_id"],
                "fingerprint": entry["signer"]["public_key_fingerprint"],
                "created_at": entry["created_at"],
                "event_id": entry["event_id"],
                "from_job": entry["event_id"] in (from_jobs or set()),
            }
        )
    return rows


def scholarly_article(doc: dict[str, Any]) -> dict[str, Any]:
    """schema.org ScholarlyArticle JSON-LD for the page's head."""
    paper = doc["paper"]
    source = doc["source"]
    authors = [a.strip() for a in paper.get("authors_text", "").split(",") if a.strip()]
    article: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "ScholarlyArticle",
        "name": paper.get("title", ""),
        "headline": paper.get("title", ""),
        "author": [{"@type": "Person", "name": a} for a in authors],
        "datePublished": paper.get("submitted_at", ""),
        "url": doc["links"]["html"],
        "sameAs": f"https://arxiv.org/abs/{source['id']}v{source['version']}",
        "identifier": [
            {"@type": "PropertyValue", "propertyID": "pith", "value": doc["pith_number"]},
            {
                "@type": "PropertyValue",
                "propertyID": "doi",
                "value": f"10.48550/arxiv.{source['id']}",
            },
            {"@type": "PropertyValue", "propertyID": "arxiv", "value": source["id"]},
            {"@type": "PropertyValue", "propertyID": "sha256", "value": doc["canonical_sha256"]},
        ],
        "about": [paper.get("primary_cat", ""), *paper.get("cross_cats", [])],
    }
    if paper.get("license"):
        article["license"] = paper["license"]
    if paper.get("abstract_excerpt"):
        article["abstract"] = paper["abstract_excerpt"]
    return article


def record_page_context(ctx: AppContext, session: Session, pith_id: str) -> dict[str, Any]:
    record = resolve(session, pith_id)
    state = state_for_read(ctx.db, session, ctx.identity, record.pith_number)
    updated = EventRepository(session).last_received(record.pith_number)
    trust = verification(
        session, policy_for(ctx.settings, ctx.identity), record.canonical_sha256, state
    )
    doc = record_document(
        record,
        state,
        base_url=ctx.base_url,
        identity=ctx.identity,
        updated_at=updated,
        trust=trust,
    )
    current = state["current"]
    actions = doc["agent_actions"]["actions"]
    urls = {v.rsplit("/", 1)[1]: v for v in actions.values()}
    applied = {eid for eid in state["applied_event_ids"]}
    by_id: dict[str, dict[str, Any]] = {}
    if current["record_created"]:
        by_id[current["record_created"]["event_id"]] = current["record_created"]
    for name in ("graph_snapshots", *[c[0] for c in CHECKLIST], "corrections", "mirror_hints"):
        for entry in current[name]:
            by_id[entry["event_id"]] = entry
    events = [by_id[eid] for eid in state["applied_event_ids"] if eid in by_id and eid in applied]
    verify_keys = bundle_verify_keys(ctx, doc["receipt"])
    return {
        "base_url": ctx.base_url,
        "fingerprint": ctx.identity.fingerprint,
        "doc": doc,
        "paper": doc["paper"],
        "status": doc["verification_status"],
        "state": state,
        "receipt": doc["receipt"],
        "suffix": record.suffix,
        "claims": doc["paper_claims"],
        "replications": replication_rows(current["replication_records"], trust["from_job_ids"]),
        "trust": trust,
        "bundle_verify_command": bundle_verify_command(ctx.base_url, record.suffix, verify_keys),
        "bundle_verify_two_keys": len(verify_keys) > 1,
        "events": events,
        "checklist": [
            {"label": label, "count": len(current[name]), "url": urls[action]}
            for name, action, label in CHECKLIST
        ],
        "recipe": recipe(ctx.base_url, record.suffix, record.canonical_sha256),
        "verify_command": verify_command(ctx, record.suffix, doc["receipt"]),
        "canonical_pretty": json.dumps(
            doc["canonical_record"], indent=2, sort_keys=True, ensure_ascii=False
        ),
        "jsonld": scholarly_article(doc),
    }


def index_context(ctx: AppContext, session: Session, limit: int = 200) -> dict[str, Any]:
    repo = RecordRepository(session)
    records = []
    for r in repo.page(limit):
        records.append(
            {
                "suffix": r.suffix,
                "short": f"pith:{r.suffix[:8]}",
                "title": json.loads(r.paper).get("title", ""),
                "source_id": r.source_id,
                "source_version": r.source_version,
            }
        )
    return {
        "base_url": ctx.base_url,
        "fingerprint": ctx.identity.fingerprint,
        "records": records,
        "total": repo.count(),
    }
