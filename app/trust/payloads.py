"""Per-target payload schemas: what a signed statement must say to be taken at all.

A valid signature proves who said something; these schemas refuse statements that say nothing
(`{}`) or say it in a shape no reader can use. They do not decide what is true: that is the trust
policy's (`app.trust.policy`). Extra fields are allowed (a statement may carry more than the
registry reads), so the schemas constrain only the fields the registry and its pages read.
Registry-only targets (record, graph, alias) are checked by `pith_core` itself.

Each schema is published as JSON Schema under `/schemas/<target>.json`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pith_core.events import REPLICATION_VERDICTS

Text = Annotated[str, Field(min_length=1, max_length=2000)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="64 lower-case hex")]
UtcSecond = Annotated[
    str, Field(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$", examples=["2026-11-23T05:00:00Z"])
]
_LINK_SCHEMES = ("http://", "https://")
_STORAGE_SCHEMES = (*_LINK_SCHEMES, "ipfs://", "ar://", "s3://")


def _uri(value: str, schemes: tuple[str, ...]) -> str:
    if not value.lower().startswith(schemes) or re.search(r"[\x00-\x20\x7f]", value):
        raise ValueError(f"must be a URI starting with one of {', '.join(schemes)}")
    return value


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)


class TimestampAnchor(_Payload):
    """A claim that the record's canonical hash existed at a time. Only `method: rfc3161` with a
    token from a configured time-stamping authority moves the record's anchored status."""

    method: Literal["rfc3161", "opentimestamps", "log_checkpoint", "other"]
    canonical_sha256: Sha256Hex = Field(description="the record's canonical hash, as anchored")
    token_b64: str | None = Field(
        default=None,
        max_length=65_536,
        description="rfc3161: the DER TimeStampToken (CMS SignedData), standard base64",
    )
    proof: dict[str, Any] | None = None
    anchored_at: UtcSecond | None = None


class StorageAttestation(_Payload):
    """A claim that a copy of the paper is stored at `uri`; counts only from configured
    storage attesters' keys."""

    uri: str = Field(min_length=1, max_length=2000, examples=["https://web.archive.org/..."])
    sha256: Sha256Hex | None = Field(default=None, description="hash of the stored bytes")
    stored_at: UtcSecond | None = None

    @field_validator("uri")
    @classmethod
    def _storage_uri(cls, v: str) -> str:
        return _uri(v, _STORAGE_SCHEMES)


class AuthorAttestation(_Payload):
    """A claim of authorship; weak unless a pinned registry bound it to the author."""

    author: Name
    strength: Literal["weak", "strong"] = "weak"
    orcid: Annotated[str, Field(pattern=r"^\d{4}-\d{4}-\d{4}-\d{3}[\dX]$")] | None = None
    statement: Text | None = None


class CitationSignature(_Payload):
    """A signed statement that a work (`citing`: a Pith number, DOI, arXiv id or URL) cites
    this record."""

    citing: Name
    context: Text | None = None


class ReplicationCheck(_Payload):
    name: Name
    measured: str = Field(max_length=200)
    op: str = Field(max_length=16)
    target: str = Field(max_length=200)
    passed: bool
    gating: bool = False


class ReplicationRecord(_Payload):
    """A replication's outcome. Listed whoever signs it; counted as evidence only when it came
    from a registered worker's job."""

    claim_id: Name
    verdict: Literal["replicated", "not_replicated", "inconclusive", "error"]
    checks: list[ReplicationCheck] | None = Field(default=None, max_length=500)
    figures: dict[str, str] | None = None
    environment: dict[str, str | int | bool | None] | None = None
    error: str | None = Field(default=None, max_length=20_000)


class Correction(_Payload):
    detail: Text


class MirrorHint(_Payload):
    url: str = Field(min_length=1, max_length=2000)

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        return _uri(v, _LINK_SCHEMES)


PAYLOAD_MODELS: dict[str, type[_Payload]] = {
    "timestamp_anchor": TimestampAnchor,
    "storage_attestation": StorageAttestation,
    "author_attestation": AuthorAttestation,
    "citation_signature": CitationSignature,
    "replication": ReplicationRecord,
    "correction": Correction,
    "mirror_hint": MirrorHint,
}
assert set(ReplicationRecord.model_fields["verdict"].annotation.__args__) == REPLICATION_VERDICTS  # type: ignore[union-attr]


class PayloadRefused(ValueError):
    """A payload outside its target's schema: `field` is where (`payload.checks.0.name`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check_payload(target: str, payload: dict[str, Any]) -> None:
    """Raise PayloadRefused when `payload` is not what `target`'s schema asks for."""
    model = PAYLOAD_MODELS.get(target)
    if model is None:
        return
    try:
        model.model_validate(payload)
    except ValidationError as e:
        first = e.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in ("payload", *first.get("loc", ())))
        raise PayloadRefused(where, str(first.get("msg", "invalid"))) from None


def json_schemas(base_url: str) -> dict[str, dict[str, Any]]:
    """target -> its payload's JSON Schema (draft 2020-12), with an `$id` on this registry."""
    out = {}
    for target, model in PAYLOAD_MODELS.items():
        schema = model.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"{base_url}/schemas/{target}.json"
        out[target] = schema
    return out
