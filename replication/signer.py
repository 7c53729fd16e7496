"""Signing replication records: the worker's key, its per-subject seq/prev chain, and the payload.

The chain state lives in a local JSON file beside the key. A record is written there as pending
(with its seq consumed) before it is submitted, so a crash between signing and submitting resends
the same signed event instead of signing a second one with the same seq: a worker never
equivocates by accident.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pith_core import build_event, sign_event, signer_info
from pith_core.keys import KeyPair
from pith_core.timefmt import format_utc_second
from replication.runner import RunOutcome

SIGNER_TYPE = "gpu_worker"


class ChainState:
    """`{"subjects": {pith: {"seq", "prev"}}, "pending": [event, …]}`, written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"subjects": {}, "pending": []}
        if path.exists():
            self.data = json.loads(path.read_text())

    def next_link(self, subject: str) -> tuple[int, str | None]:
        link = self.data["subjects"].get(subject, {"seq": 0, "prev": None})
        return link["seq"] + 1, link["prev"]

    def record_signed(self, event: dict[str, Any]) -> None:
        self.data["subjects"][event["subject_pith_number"]] = {
            "seq": event["seq"],
            "prev": event["event_id"],
        }
        self.data["pending"].append(event)
        self.save()

    def record_submitted(self, event_id: str) -> None:
        self.data["pending"] = [e for e in self.data["pending"] if e["event_id"] != event_id]
        self.save()

    @property
    def pending(self) -> list[dict[str, Any]]:
        return list(self.data["pending"])

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".chain-")
        with os.fdopen(fd, "w") as f:
            json.dump(self.data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def record_payload(
    outcome: RunOutcome, *, job_id: str, environment: dict[str, str]
) -> dict[str, Any]:
    """The replication_record payload: the claim's result (or an error), environment, log digest.

    A failure's `error` is the outcome's `public_error` (a fixed phrase, the exit status, the
    exception's class name): the claim's own words and log stay with the worker's operator."""
    base = {
        "job_id": job_id,
        "claim_id": outcome.claim_id,
        "profile": outcome.profile,
        "environment": environment,
        "log_sha256": outcome.log_sha256,
        "duration_s": f"{outcome.duration_s:.1f}",
    }
    if outcome.error is None and outcome.result is not None:
        result = dict(outcome.result)
        result.pop("claim_id", None)
        result.pop("profile", None)
        return {**result, **base}
    return {**base, "verdict": "error", "error": outcome.public_error}


def sign_record(
    key: KeyPair,
    chain: ChainState,
    *,
    subject: str,
    payload: dict[str, Any],
    worker_id: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Sign the next replication_record of this worker about `subject` and note it as pending."""
    seq, prev = chain.next_link(subject)
    event = sign_event(
        build_event(
            target="replication",
            subject=subject,
            created_at=format_utc_second(now or datetime.now(UTC)),
            seq=seq,
            prev=prev,
            signer=signer_info(key, signer_id=worker_id, signer_type=SIGNER_TYPE),
            payload=payload,
        ),
        key,
    )
    chain.record_signed(event)
    return event
