"""Who this registry is: its Ed25519 key (created on first start, mode 0600), the keys it pins
for registry-only events, and the documents that publish them."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pith_core.events import signer_info
from pith_core.keyfile import load_or_create_key
from pith_core.keys import KeyPair, b64encode, fingerprint
from pith_core.merge import MERGE_VERSION
from pith_core.rotation import KeyWindow
from pith_core.timefmt import format_utc_second

from ..core.problems import Problem
from ..settings import Settings

SIGNER_TYPE = "pith_registry"


@dataclass(frozen=True)
class RegistryIdentity:
    key: KeyPair
    signer_id: str
    trusted_keys: tuple[bytes, ...]
    key_windows: tuple[KeyWindow, ...] = ()  # this registry's keys by log position (rotations)
    signer: dict[str, str] = field(init=False)
    pinned_keys: tuple[bytes, ...] = field(init=False)
    pinned_fingerprints: frozenset[str] = field(init=False)
    pins_sha256: str = field(init=False)
    retired_windows: dict[str, KeyWindow] = field(init=False)

    def __post_init__(self) -> None:
        retired = {fingerprint(w.public_key): w for w in self.key_windows if w.retired}
        object.__setattr__(self, "retired_windows", retired)
        info = signer_info(self.key, signer_id=self.signer_id, signer_type=SIGNER_TYPE)
        pinned = tuple(dict.fromkeys((self.key.public_key, *self.trusted_keys)))
        object.__setattr__(self, "signer", info)
        object.__setattr__(self, "pinned_keys", pinned)
        object.__setattr__(self, "pinned_fingerprints", frozenset(fingerprint(k) for k in pinned))
        pins = hashlib.sha256(b"".join(sorted(pinned))).hexdigest()
        object.__setattr__(self, "pins_sha256", pins)

    @property
    def fingerprint(self) -> str:
        return self.key.fingerprint


def load_identity(settings: Settings) -> RegistryIdentity:
    """The registry key from `settings.key_file`, created there (0600, folder 0700) if absent."""
    path = Path(settings.key_file).expanduser()
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = load_or_create_key(path, settings.key_id)
    from .rotation import windows_for  # rotation reads this module's RegistryIdentity

    return RegistryIdentity(
        key=key,
        signer_id=registry_name(settings, key),
        trusted_keys=settings.trusted_keys,
        key_windows=tuple(windows_for(settings, key)),
    )


def registry_name(settings: Settings, key: KeyPair) -> str:
    """`PITH_REGISTRY_ID`, else a name drawn from the key: the registry is its key, not the
    host and port it happens to be served on."""
    return settings.registry_id or f"pith-registry-{key.fingerprint[:16]}"


def check_admin(settings: Settings, authorization: str | None) -> None:
    """Registry acts need `Authorization: Bearer <PITH_ADMIN_TOKEN>`; off when no token is set."""
    if settings.admin_token is None or not settings.admin_token.get_secret_value():
        raise Problem(
            403,
            "admin_disabled",
            "registry acts are disabled: the operator set no PITH_ADMIN_TOKEN",
        )
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Problem(
            401,
            "admin_token_required",
            "this registry act needs Authorization: Bearer <admin token>",
            headers={"WWW-Authenticate": 'Bearer realm="pith-admin"'},
        )
    expected = settings.admin_token.get_secret_value().encode()
    if not hmac.compare_digest(token.strip().encode(), expected):
        raise Problem(403, "admin_token_invalid", "the admin token is not this registry's")


def _public_key_doc(identity: RegistryIdentity, base_url: str) -> dict[str, Any]:
    raw = identity.key.public_key
    return {
        "key_id": identity.key.key_id,
        "algorithm": "ed25519",
        "format": "raw",
        "public_key_b64": b64encode(raw),
        "public_key_hex": raw.hex(),
        "fingerprint_sha256_hex": identity.fingerprint,
        "rotates_at": None,
        "url": f"{base_url}/pith-signing-key.json",
        "notes": (
            "This registry signs canonical record SHA-256 digests (receipts) and, with the "
            "prefix 'pith-event-v1\\n', event digests. Verify a receipt with: "
            "ed25519_verify(public_key, message=canonical_sha256_bytes, "
            "signature=base64decode(signature_b64))."
        ),
    }


def signing_key_document(identity: RegistryIdentity, base_url: str) -> dict[str, Any]:
    doc = _public_key_doc(identity, base_url)
    doc["kind"] = "pith_signing_key"
    doc["signer_id"] = identity.signer_id
    doc["signer_type"] = SIGNER_TYPE
    doc["trusted_registry_keys"] = [
        {"public_key_hex": k.hex(), "fingerprint_sha256_hex": fingerprint(k)}
        for k in identity.trusted_keys
    ]
    return doc


def mirror_manifest(identity: RegistryIdentity, base_url: str) -> dict[str, Any]:
    """The public registry's manifest shape, listing this registry."""
    return {
        "manifest_type": "pith_mirror_manifest",
        "manifest_version": "1.0",
        "generated_at": format_utc_second(datetime.now(UTC)),
        "merge_version": MERGE_VERSION,
        "mirrors": [
            {
                "name": identity.signer_id,
                "mirror_type": urlsplit(base_url).scheme or "http",
                "base_url": base_url,
                "bundle_pattern": f"{base_url}/pith/{{suffix}}/bundle.json",
                "state_pattern": f"{base_url}/pith/{{suffix}}/state.json",
                "well_known_pattern": f"{base_url}/.well-known/pith/{{suffix}}/bundle.json",
                "changes_feed": f"{base_url}/api/events",
                "public_key": _public_key_doc(identity, base_url),
                "status": "primary",
            }
        ],
        "notes": (
            "Any conforming mirror may host the same Pith bundles. Current state is computed "
            "by deterministic merge, not by trusting this manifest."
        ),
    }
