"""`PithClient`: the registry's public API over httpx, typed, with polite retries.

Only reads and the public action URLs: registry acts (admin) and the worker job API are not
here. Verification is offline (`pith_core.verify`): the client fetches a bundle and checks it
under keys the caller trusts, never trusting the server's own word.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from pith_core.keys import PUBLIC_REGISTRY_KEY_HEX, public_key_from_hex
from pith_core.verify import verify_document

RETRY_STATUSES = frozenset({429, 503})
# target of a signed event -> the action URL that takes it
ACTIONS = {
    "timestamp_anchor": "timestamp_anchor",
    "storage_attestation": "storage_attestation",
    "author_attestation": "author_attestation",
    "citation_signature": "citation_signature",
    "replication": "replication_record",
}


class PithAPIError(RuntimeError):
    """The registry refused a request: `status` and its problem document say why."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.code = str(problem.get("type", "")).removeprefix("urn:pith:problem:")
        super().__init__(f"{status} {problem.get('title', '')}: {problem.get('detail', problem)}")


@dataclass(frozen=True)
class Resolved:
    pith_number: str
    short_pith_number: str
    canonical_sha256: str
    html: str
    json: str


@dataclass(frozen=True)
class SearchPage:
    query: str
    total: int
    page: int
    pages: int
    results: list[dict[str, Any]]
    next: str | None


@dataclass(frozen=True)
class SubmitResult:
    created: bool  # False: the registry already had this event
    pith_number: str
    event_id: str
    log_index: int
    body: dict[str, Any]


@dataclass(frozen=True)
class VerifyReport:
    kind: str
    ok: bool
    checks: list[tuple[str, bool, str]]  # (name, passed, detail)

    @property
    def failed(self) -> list[tuple[str, bool, str]]:
        return [c for c in self.checks if not c[1]]


@dataclass(frozen=True)
class FeedItem:
    log_index: int
    event: dict[str, Any]


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds: delay-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # '²' is a digit to str.isdigit, not to float()
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _suffix(pith_id: str) -> str:
    """The path segment of a record name (a full number's suffix; anything else as given)."""
    text = pith_id.strip()
    if text.startswith("pith:") and text.count(":") == 2:
        text = text.rsplit(":", 1)[1]
    return quote(text, safe="")  # never a path of its own: "../log/…" stays one segment


class PithClient:
    """One registry. `max_retries` retries of a 429/503 (or a dropped connection on a read),
    each after the server's `Retry-After` (capped at `max_wait_s`) or a short backoff."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        max_retries: int = 5,
        max_wait_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        user_agent: str = "pith-client/1",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.max_wait_s = max_wait_s
        self._sleep = sleep
        self.http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"user-agent": user_agent, "accept": "application/json", **(headers or {})},
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # -- transport -----------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError:
                if method != "GET" or attempt >= self.max_retries:
                    raise
                self._sleep(min(self.max_wait_s, 0.5 * 2**attempt))
                attempt += 1
                continue
            if response.status_code in RETRY_STATUSES and attempt < self.max_retries:
                wait = retry_after_seconds(response.headers.get("retry-after"))
                self._sleep(min(self.max_wait_s, 0.5 * 2**attempt if wait is None else wait))
                attempt += 1
                continue
            if response.status_code >= 400:
                try:
                    problem = response.json()
                except ValueError:
                    problem = {"detail": response.text[:500]}
                if not isinstance(problem, dict):
                    problem = {"detail": str(problem)[:500]}
                raise PithAPIError(response.status_code, problem)
            return response

    def _get_json(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self._request("GET", path, params=clean).json()

    # -- reads ---------------------------------------------------------------------------

    def get(self, pith_id: str) -> dict[str, Any]:
        """The record document (`/pith/{id}.json`) by any of its names."""
        return dict(self._get_json(f"/pith/{_suffix(pith_id)}.json"))

    def state(self, pith_id: str) -> dict[str, Any]:
        return dict(self._get_json(f"/pith/{_suffix(pith_id)}/state.json"))

    def bundle(self, pith_id: str, *, log_size: int | None = None) -> dict[str, Any]:
        """The whole bundle (at tree size `log_size`, or now): a record with more events than
        one page holds is fetched page by page (the cursor pins the first page's tree size)
        and put back together, events sorted by id and every page's proofs kept."""
        path = f"/pith/{_suffix(pith_id)}/bundle.json"
        doc = dict(self._get_json(path, log_size=log_size))
        cursor = doc.pop("next", None)
        doc.pop("events_total", None)
        while cursor:
            page = self._get_json(path, after=cursor)
            doc["events"].extend(page["events"])
            doc["log"]["entries"].update(page["log"]["entries"])
            cursor = page.get("next")
        doc["events"].sort(key=lambda e: str(e.get("event_id")))
        return doc

    def resolve(
        self, *, arxiv: str | None = None, doi: str | None = None, pith: str | None = None
    ) -> Resolved:
        """An alias (exactly one) to its record's number."""
        given = {k: v for k, v in (("arxiv", arxiv), ("doi", doi), ("pith", pith)) if v}
        if len(given) != 1:
            raise ValueError("give exactly one of arxiv, doi or pith")
        doc = self._get_json("/api/pith-number/resolve", json="true", **given)
        return Resolved(
            pith_number=doc["pith_number"],
            short_pith_number=doc["short_pith_number"],
            canonical_sha256=doc["canonical_sha256"],
            html=doc["html"],
            json=doc["json"],
        )

    def search(self, query: str = "", *, page: int = 1, per_page: int = 20) -> SearchPage:
        doc = self._get_json("/api/search", q=query, page=page, per_page=per_page)
        return SearchPage(
            query=doc["query"],
            total=doc["total"],
            page=doc["page"],
            pages=doc["pages"],
            results=list(doc["results"]),
            next=doc.get("next"),
        )

    def signing_key(self) -> bytes:
        """This registry's raw Ed25519 public key, as it publishes it (trust it knowingly)."""
        return public_key_from_hex(self._get_json("/pith-signing-key.json")["public_key_hex"])

    # -- verification (offline) -----------------------------------------------------------

    def verify(
        self,
        pith_id: str,
        keys: Sequence[bytes] | None = None,
        *,
        trust_server_key: bool = False,
    ) -> VerifyReport:
        """Fetch the bundle and check it offline: hash, number, receipt under one of `keys`,
        every signed event, the merged state. Default keys: the public registry's only; the key
        this registry publishes counts only when asked (`trust_server_key`), since a hostile
        registry would publish the key of its own forgeries."""
        trusted = list(keys) if keys else [public_key_from_hex(PUBLIC_REGISTRY_KEY_HEX)]
        if trust_server_key:
            trusted.append(self.signing_key())
        kind, checks = verify_document(self.bundle(pith_id), trusted)
        rows = [(c.name, c.passed, c.detail) for c in checks]
        return VerifyReport(kind=kind, ok=all(passed for _, passed, _ in rows), checks=rows)

    # -- writes ---------------------------------------------------------------------------

    def submit(self, event: dict[str, Any]) -> SubmitResult:
        """Post one signed event to its subject's action URL (201 new, 200 already there)."""
        target = event.get("target")
        if target not in ACTIONS:
            raise ValueError(f"no public action takes target {target!r}; see {sorted(ACTIONS)}")
        path = f"/pith/{_suffix(str(event['subject_pith_number']))}/action/{ACTIONS[target]}"
        response = self._request("POST", path, json=event)
        body = response.json()
        return SubmitResult(
            created=response.status_code == 201,
            pith_number=body["pith_number"],
            event_id=body["event_id"],
            log_index=int(body["log_index"]),
            body=body,
        )

    # -- the changes feed -------------------------------------------------------------------

    def follow(
        self,
        after: int | str = 0,
        *,
        limit: int = 100,
        poll_s: float = 5.0,
        stop_when_idle: bool = False,
    ) -> Iterator[FeedItem]:
        """Every event after `after` (a log index or a `next` cursor) in log order, then new
        ones as they come (polling every `poll_s`), or stop once caught up."""
        cursor = str(after)
        while True:
            page = self._get_json("/api/events", after=cursor, limit=limit)
            for item in page["events"]:
                yield FeedItem(log_index=int(item["log_index"]), event=item["event"])
            cursor = str(page["next"])
            # a page ends at `limit` events or at the server's byte bound: more is waiting
            # while the last event served is below the log's head
            if page["events"] and int(page["events"][-1]["log_index"]) < int(page["head"]):
                continue
            if stop_when_idle:
                return
            self._sleep(poll_s)
