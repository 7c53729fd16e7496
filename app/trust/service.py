"""A record's verification status under the trust policy: one function pages, badges, charts
and the record document call (`verification`), so they all say the same thing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from .policy import TrustPolicy
from .repository import TrustRepository

MAX_LISTED = 20
REPLICATION_STATUSES = (
    "replicated",  # records from jobs, all of their verdicts `replicated`
    "not_replicated",  # records from jobs, none `replicated`, some `not_replicated`
    "mixed",  # records from jobs disagree (some replicated, some not)
    "inconclusive",  # records from jobs, only `inconclusive` / `error`
    "self_reported_only",  # records listed, none from a registered worker's job
    "none",
)


def replication_status(job_verdicts: Counter[str], listed: int) -> str:
    if sum(job_verdicts.values()) == 0:
        return "self_reported_only" if listed else "none"
    yes, no = job_verdicts["replicated"], job_verdicts["not_replicated"]
    if yes and no:
        return "mixed"
    if yes:
        return "replicated"
    return "not_replicated" if no else "inconclusive"


def verification(
    session: Session,
    policy: TrustPolicy,
    canonical_sha256: str,
    state: Mapping[str, Any],
) -> dict[str, Any]:
    """What the record's events prove under `policy`, and how: anchors, storage, authorship,
    replication. Counts of everything listed stand beside counts of what is evidence."""
    current = state["current"]
    anchors = current["timestamp_anchors"]
    verified_anchors = []
    for entry in anchors:
        check = policy.anchor(entry, canonical_sha256)
        if check.verified:
            verified_anchors.append(
                {
                    "event_id": entry["event_id"],
                    "created_at": entry["created_at"],
                    "method": "rfc3161",
                    "label": "RFC 3161",
                    "how": check.how,
                }
            )
    witnessed = policy.witnessed_log(session, state["pith_number"])
    if witnessed is not None:
        verified_anchors.append(witnessed)
    storage = current["storage_attestations"]
    stored = [e for e in storage if policy.stored(e)]
    authors = current["author_attestations"]
    # a retired registry key's word counts only inside its window (judged by log position)
    outside = policy.outside_windows(session, state["pith_number"])
    strong = sum(1 for e in authors if policy.strong_author(e) and e["event_id"] not in outside)
    replications = current["replication_records"]
    listed = {e["event_id"] for e in replications}
    from_jobs = TrustRepository(session).job_records(state["pith_number"]) & listed
    job_verdicts: Counter[str] = Counter(
        str(e["payload"].get("verdict")) for e in replications if e["event_id"] in from_jobs
    )
    self_verdicts: Counter[str] = Counter(
        str(e["payload"].get("verdict")) for e in replications if e["event_id"] not in from_jobs
    )
    return {
        "externally_anchored": bool(verified_anchors),
        "storage_verified": bool(stored),
        "author_attested": strong > 0,
        "weak_author_claims": len(authors) - strong,
        "strong_author_claims": strong,
        "replication_status": replication_status(job_verdicts, len(replications)),
        "anchors": {
            "listed": len(anchors),
            "verified": len(verified_anchors),
            "verified_by": verified_anchors[:MAX_LISTED],
            # with the evidence only: documents of registries without witnesses keep their shape
            **({"witnessed_log": witnessed} if witnessed is not None else {}),
        },
        "storage": {
            "listed": len(storage),
            "verified": len(stored),
            "attested_by": sorted({e["signer"]["public_key_fingerprint"] for e in stored})[
                :MAX_LISTED
            ],
        },
        "replications": {
            "listed": len(replications),
            "from_jobs": sum(job_verdicts.values()),
            "self_reported": sum(self_verdicts.values()),
            "job_verdicts": dict(sorted(job_verdicts.items())),
            "self_reported_verdicts": dict(sorted(self_verdicts.items())),
            "job_record_ids": sorted(from_jobs)[:MAX_LISTED],
        },
        **(
            {
                "outside_key_window": {
                    "event_ids": sorted(outside)[:MAX_LISTED],
                    "count": len(outside),
                    "why": "signed by a retired registry key at a log position outside its "
                    "window: not the registry's word",
                }
            }
            if outside
            else {}
        ),
        "from_job_ids": from_jobs,  # every one (a set: for pages, not for documents)
        "policy": policy.describe(),
    }
