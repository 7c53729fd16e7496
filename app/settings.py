"""Every knob of the service, in one pydantic-settings class read from `PITH_*` variables."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pith_core.keys import PUBLIC_REGISTRY_KEY_HEX, public_key_from_hex

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Safe defaults: a local SQLite file, loopback only, admin acts off until a token is set."""

    model_config = SettingsConfigDict(env_prefix="PITH_", extra="ignore", frozen=True)

    database_url: str = "sqlite:///./pith.db"
    key_file: Path = Path(".pith/registry-key.json")
    key_id: str = "pith-local-v1"
    registry_id: str = Field(
        default="",
        max_length=200,
        description="this registry's name, the signer_id of its events (default: "
        "pith-registry-<first 16 hex of its key's fingerprint>; never its host or port, so the "
        "same key signs the same events wherever it is served)",
    )
    admin_token: SecretStr | None = None
    public_url: str = Field(default="", description="base URL in links (default http://host:port)")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    access_log: bool = True

    trusted_registry_keys: list[str] = Field(
        default=[PUBLIC_REGISTRY_KEY_HEX],
        description="raw Ed25519 keys (hex) of other registries pinned for record/graph/alias",
    )
    seeds_dir: Path = REPO_ROOT / "seeds"
    import_seeds_when_empty: bool = True
    results_dir: Path = Field(
        default=REPO_ROOT / "replication" / "results",
        description="signed replication records (JSON lists of events) loaded by `pith serve`",
    )
    lease_ttl_seconds: int = Field(
        default=120, ge=1, le=86_400, description="a job's lease lasts this long unless renewed"
    )

    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    rate_limit_writes_per_minute: int = Field(default=120, ge=0, description="0: no limit")
    rate_limit_reads_per_minute: int = Field(default=6000, ge=0, description="0: no limit")
    trust_forwarded_for: bool = False
    forwarded_hops: int = Field(
        default=1,
        ge=1,
        le=16,
        description="proxies of ours in front (each appends one X-Forwarded-For hop): the "
        "client is the hop this many from the right",
    )
    body_timeout_seconds: float = Field(
        default=30.0, gt=0, description="a request body must arrive within this long (else 408)"
    )
    max_batch_events: int = Field(default=500, ge=1)
    max_clock_skew_seconds: int = Field(default=300, ge=0)
    read_cache_seconds: float = Field(
        default=1.0,
        ge=0,
        description="how long a worker serves cached pages before checking the event log again",
    )
    gc_freeze_at_startup: bool = Field(
        default=True,
        description="move what a worker holds once started (modules, routes, schemas) out of "
        "the garbage collector's reach: full collections then scan only what requests made "
        "(they cost ingest a tenth of its CPU)",
    )
    cached_reads_before_routing: bool = Field(
        default=True,
        description="answer cached GETs in a middleware before FastAPI's routing (else in routes)",
    )

    # Trust policy (issue 14, README "Trust policy"): which evidence moves a verification status.
    trust_tsa_certificates: list[Path] = Field(
        default=[],
        description="PEM certificates of the RFC 3161 time-stamping authorities whose tokens "
        "anchor a record (a timestamp_anchor counts only with a token one of them signed)",
    )
    trust_storage_attester_keys: list[str] = Field(
        default=[],
        description="raw Ed25519 keys (hex) whose storage_attestation events count as storage",
    )
    read_cache_max_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=0,
        description="the read cache of each worker holds at most this many bytes (LRU)",
    )
    max_listing_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=64 * 1024,
        description="a page of the changes feed or of a record's events stops at this size; "
        "its `next` cursor goes on",
    )
    trust_predate_margin_seconds: int = Field(
        default=86_400,
        ge=0,
        description="an event may be dated at most this long before its paper's submission",
    )

    # Transparency log (issue 15, README "The transparency log").
    log_origin: str = Field(
        default="",
        description="the log's origin line and checkpoint key name (default: public URL's "
        "host and path, without the scheme, + /log)",
    )
    log_witnesses: list[str] = Field(
        default=[],
        description="C2SP verifier keys (name+hash+base64, type 0x04) of the witnesses whose "
        "cosignatures this registry accepts",
    )
    key_rotations: list[Path] = Field(
        default=[],
        description="files of signed key rotation statements (`pith key rotate`), oldest first: "
        "the keys they retire stay pinned for what they signed, and /pith-signing-key.json "
        "lists every key with its validity window",
    )
    log_witness_urls: dict[str, str] = Field(
        default={},
        description="witness name → its C2SP tlog-witness submission prefix: when the tree "
        "grows, the registry POSTs add-checkpoint there and keeps the cosignature",
    )
    log_witness_push_seconds: float = Field(
        default=2.0, gt=0, description="how often each worker checks for a checkpoint to push"
    )
    log_witness_quorum: int = Field(
        default=0,
        ge=0,
        description="cosignatures a checkpoint needs before /log/checkpoint publishes it "
        "(0: publish every checkpoint as soon as it is signed)",
    )

    @field_validator("database_url")
    @classmethod
    def _url_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("PITH_DATABASE_URL is empty")
        return v.strip()

    @field_validator("trusted_registry_keys")
    @classmethod
    def _keys_are_hex(cls, v: list[str]) -> list[str]:
        for key in v:
            public_key_from_hex(key)
        return v

    @field_validator("trust_storage_attester_keys")
    @classmethod
    def _attester_keys_are_hex(cls, v: list[str]) -> list[str]:
        for key in v:
            public_key_from_hex(key)
        return v

    @field_validator("log_witnesses")
    @classmethod
    def _witnesses_are_vkeys(cls, v: list[str]) -> list[str]:
        from pith_core.note import SIG_COSIGNATURE_V1, Verifier

        for vkey in v:
            if Verifier.parse(vkey).sig_type != SIG_COSIGNATURE_V1:
                raise ValueError(
                    f"PITH_LOG_WITNESSES: {vkey.split('+', 1)[0]!r} is not a witness key: a "
                    "witness cosigns with a cosignature/v1 key (type 0x04), not a note key (0x01)"
                )
        return v

    @cached_property
    def base_url(self) -> str:
        """The URL this registry is reached at, without a trailing slash."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @cached_property
    def trusted_keys(self) -> tuple[bytes, ...]:
        retired = tuple(bytes.fromhex(s["old_public_key_hex"]) for s in self.rotation_statements)
        return tuple(public_key_from_hex(k) for k in self.trusted_registry_keys) + retired

    @cached_property
    def rotation_statements(self) -> list[dict[str, Any]]:
        """The statements of `key_rotations`, each verified (signed by the key it retires)."""
        from pith_core.rotation import verify_rotation

        out: list[dict[str, Any]] = []
        for path in self.key_rotations:
            doc = json.loads(Path(path).read_text())
            out.extend(verify_rotation(s) for s in (doc if isinstance(doc, list) else [doc]))
        return out

    @cached_property
    def tlog_origin(self) -> str:
        if self.log_origin:
            return self.log_origin
        parts = urlsplit(self.base_url)
        return f"{parts.netloc}{parts.path.rstrip('/')}/log"
