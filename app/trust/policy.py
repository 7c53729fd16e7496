"""The trust policy: which signed statements are evidence, decided per entry of a state.

A valid signature proves who said something, not that it is true. Every valid statement is
listed; only these move a record's verification status:
- a `timestamp_anchor` whose RFC 3161 token, from a configured time-stamping authority
  (`PITH_TRUST_TSA_CERTIFICATES`), has the record's canonical hash as its imprint; and this
  registry's own log once witnessed: the record's `record` event is a leaf of a checkpoint a
  quorum of the configured witnesses cosigned (`PITH_LOG_WITNESSES`, `PITH_LOG_WITNESS_QUORUM`);
- a `storage_attestation` signed by a configured storage attester
  (`PITH_TRUST_STORAGE_ATTESTER_KEYS`);
- an `author_attestation` is weak unless a pinned registry key signed it with
  `strength: strong` (the registry bound the claim to the author);
- a `replication_record` counts when it came in through the job API (`app/replication`) as the
  record of a registered worker's job; any other is listed as self-reported.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pith_core.keys import fingerprint
from pith_core.rotation import KeyWindow

from ..log.service import LogSigner, outside_key_windows, witnessed_inclusion
from ..registry.service import RegistryIdentity
from ..settings import Settings
from .rfc3161 import Anchored, Authority, TokenRefused, verify_token

MEMO_ENTRIES = 65_536  # anchor checks kept per policy (least recently used dropped first)
POLICIES_KEPT = 16  # policies of distinct settings kept per process


@dataclass(frozen=True)
class AnchorCheck:
    verified: bool
    how: str  # what was verified, or why not, in words for pages


@dataclass(frozen=True)
class TrustPolicy:
    authorities: tuple[Authority, ...]
    storage_attesters: frozenset[str]  # key fingerprints
    registry_fingerprints: frozenset[str]
    predate_margin_seconds: int
    log: LogSigner | None = field(default=None, compare=False)  # with a witness quorum only
    retired: Mapping[str, KeyWindow] = field(default_factory=dict, compare=False)
    memo_entries: int = field(default=MEMO_ENTRIES, compare=False)
    _memo: OrderedDict[tuple[str, str], AnchorCheck] = field(
        default_factory=OrderedDict, compare=False, repr=False
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, identity: RegistryIdentity) -> TrustPolicy:
        return cls(
            authorities=tuple(Authority.from_file(p) for p in settings.trust_tsa_certificates),
            storage_attesters=frozenset(
                fingerprint(bytes.fromhex(k.strip())) for k in settings.trust_storage_attester_keys
            ),
            registry_fingerprints=identity.pinned_fingerprints,
            predate_margin_seconds=settings.trust_predate_margin_seconds,
            log=LogSigner.of(settings, identity) if settings.log_witness_quorum > 0 else None,
            retired=identity.retired_windows,
        )

    def describe(self) -> dict[str, Any]:
        """The policy as pages and record documents state it."""
        return {
            "timestamp_anchor": "counts with an RFC 3161 token over the record's canonical hash "
            "from a configured time-stamping authority",
            "time_stamping_authorities": [a.name for a in self.authorities],
            "witnessed_log": "the record counts as anchored once its record event is in a log "
            "checkpoint cosigned by a quorum of this registry's configured witnesses",
            "log_witness_quorum": self.log.quorum if self.log is not None else 0,
            "storage_attestation": "counts when signed by a configured storage attester",
            "storage_attesters": sorted(self.storage_attesters),
            "author_attestation": "strong only when a pinned registry key signed it",
            "replication_record": "counts when it is the record of a registered worker's job; "
            "otherwise listed as self-reported",
            "predate_margin_seconds": self.predate_margin_seconds,
        }

    def anchor(self, entry: Mapping[str, Any], canonical_sha256: str) -> AnchorCheck:
        """Whether a timestamp_anchor entry proves the record existed (memoised by event id in
        a least-recently-used set of `memo_entries`: a token is verified once while in use)."""
        key = (entry["event_id"], canonical_sha256)
        with self._lock:
            hit = self._memo.get(key)
            if hit is not None:
                self._memo.move_to_end(key)
                return hit
        result = self._check_anchor(entry["payload"], canonical_sha256)
        with self._lock:
            self._memo[key] = result
            while len(self._memo) > self.memo_entries:
                self._memo.popitem(last=False)
        return result

    def _check_anchor(self, payload: Mapping[str, Any], canonical_sha256: str) -> AnchorCheck:
        if payload.get("method") != "rfc3161":
            return AnchorCheck(False, f"method {str(payload.get('method'))[:40]!r} not verified")
        if not self.authorities:
            return AnchorCheck(False, "no time-stamping authority is configured")
        token_b64 = payload.get("token_b64")
        if not isinstance(token_b64, str):
            return AnchorCheck(False, "no token")
        try:
            token = base64.b64decode(token_b64, validate=True)
        except (binascii.Error, ValueError):
            return AnchorCheck(False, "token is not base64")
        try:
            anchored: Anchored = verify_token(token, canonical_sha256, self.authorities)
        except TokenRefused as e:
            return AnchorCheck(False, str(e))
        at = anchored.at.strftime("%Y-%m-%dT%H:%M:%SZ")
        return AnchorCheck(True, f"RFC 3161 token of {anchored.authority}, {at}")

    def witnessed_log(self, session: Any, subject: str) -> dict[str, Any] | None:
        """The witnessed-log evidence of `subject`'s record (app.log), None without it."""
        if self.log is None:
            return None
        return witnessed_inclusion(session, self.log, subject, self.registry_fingerprints)

    def stored(self, entry: Mapping[str, Any]) -> bool:
        return entry["signer"]["public_key_fingerprint"] in self.storage_attesters

    def outside_windows(self, session: Any, subject: str) -> set[str]:
        """Events of retired registry keys logged outside their windows (app.log)."""
        return outside_key_windows(session, subject, self.retired)

    def strong_author(self, entry: Mapping[str, Any]) -> bool:
        signed_by_registry = entry["signer"]["public_key_fingerprint"] in self.registry_fingerprints
        return signed_by_registry and entry["payload"].get("strength") == "strong"


_POLICIES: OrderedDict[str, TrustPolicy] = OrderedDict()
_POLICIES_LOCK = threading.Lock()


def policy_for(settings: Settings, identity: RegistryIdentity) -> TrustPolicy:
    """The policy of these settings, built once per process (certificates read once); the
    `POLICIES_KEPT` most recently used are kept."""
    key = hashlib.sha256(
        repr(
            (
                [str(p) for p in settings.trust_tsa_certificates],
                settings.trust_storage_attester_keys,
                settings.trust_predate_margin_seconds,
                identity.pins_sha256,
                settings.log_witnesses,
                settings.log_witness_quorum,
                settings.tlog_origin,
            )
        ).encode()
    ).hexdigest()
    with _POLICIES_LOCK:
        policy = _POLICIES.get(key)
        if policy is None:
            policy = _POLICIES[key] = TrustPolicy.from_settings(settings, identity)
            while len(_POLICIES) > POLICIES_KEPT:
                _POLICIES.popitem(last=False)
        _POLICIES.move_to_end(key)
        return policy
