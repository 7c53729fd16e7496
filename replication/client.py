"""The worker's HTTP client for the registry's job API; every request signed with the worker key.

    POST /api/jobs/lease              {"claims": [...]}   -> 200 {"job": Job, "lease": Lease} | 204
    POST /api/jobs/{job_id}/heartbeat {"lease_id": ...}   -> 200 {"lease": Lease}
    POST /api/jobs/{job_id}/release   {"lease_id": ...}   -> 200 {"job": Job}
    POST /api/jobs/{job_id}/record    <signed replication_record event> -> 201 {"event_id", "job"}

Requests carry the headers of `pith_core.request_auth` (key fingerprint, timestamp, nonce,
signature over method, path, body hash): the worker holds no shared secret.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

import httpx

from pith_core.keys import KeyPair
from pith_core.request_auth import sign_request


class JobAPIError(RuntimeError):
    """The registry refused a request; `status` and the problem document say why."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        super().__init__(f"{status}: {problem.get('detail') or problem.get('title') or problem}")


class JobClient:
    def __init__(self, server: str, key: KeyPair, *, timeout: float = 30.0) -> None:
        self.key = key
        self.http = httpx.Client(base_url=server.rstrip("/"), timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        raw = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        headers = sign_request(
            self.key, "POST", path, raw, now=datetime.now(UTC), nonce=secrets.token_urlsafe(24)
        )
        headers["content-type"] = "application/json"
        response = self.http.post(path, content=raw, headers=headers)
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"detail": response.text[:500]}
            raise JobAPIError(response.status_code, problem)
        return response

    def lease(self, claims: list[str], gpus: int | None = None) -> dict[str, Any] | None:
        """The next queued job for one of `claims` (needing at most `gpus` GPUs, when given),
        leased to this worker; None when none is."""
        body: dict[str, Any] = {"claims": claims}
        if gpus is not None:
            body["gpus"] = gpus
        response = self._post("/api/jobs/lease", body)
        return None if response.status_code == 204 else response.json()

    def heartbeat(self, job_id: str, lease_id: str) -> dict[str, Any]:
        return self._post(f"/api/jobs/{job_id}/heartbeat", {"lease_id": lease_id}).json()

    def release(self, job_id: str, lease_id: str) -> dict[str, Any]:
        return self._post(f"/api/jobs/{job_id}/release", {"lease_id": lease_id}).json()

    def submit_record(self, job_id: str, event: dict[str, Any]) -> dict[str, Any]:
        return self._post(f"/api/jobs/{job_id}/record", event).json()
