"""The JSON documents of workers, jobs and leases (the contract of `replication/client.py`)."""

from __future__ import annotations

from typing import Any

from ..core.timeutil import iso
from .models import Job, Worker
from .service import Lease


def worker_document(worker: Worker) -> dict[str, Any]:
    return {
        "worker_id": worker.worker_id,
        "public_key_hex": worker.public_key_hex,
        "fingerprint": worker.fingerprint,
        "created_at": iso(worker.created_at),
    }


def job_document(job: Job, base_url: str) -> dict[str, Any]:
    suffix = job.pith_number.rsplit(":", 1)[1]
    return {
        "job_id": job.job_id,
        "pith_number": job.pith_number,
        "claim_id": job.claim_id,
        "profile": job.profile,
        "gpus": job.gpus,
        "state": job.state,
        "attempts": job.attempts,
        "leased_by": job.leased_by,
        "lease_expires_at": iso(job.lease_expires_at) if job.lease_expires_at else None,
        "record_event_id": job.record_event_id,
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "links": {
            "self": f"{base_url}/api/jobs/{job.job_id}",
            "record": f"{base_url}/pith/{suffix}",
            "state_json": f"{base_url}/pith/{suffix}/state.json",
        },
    }


def lease_document(lease: Lease) -> dict[str, Any]:
    return {"lease_id": lease.lease_id, "expires_at": iso(lease.expires_at), "ttl_s": lease.ttl_s}
