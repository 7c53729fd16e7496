"""Request bodies of the replication routes, and the signed-request headers the worker sends.

Worker requests are read as raw bytes (their signature covers the body's hash) and validated
against these models after the signature checks out."""

from __future__ import annotations

from typing import Any

from nacl.bindings import crypto_core_ed25519_is_valid_point
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pith_core.request_auth import HEADER_KEY, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP

from ..events.schemas import EVENT_SCHEMA

# Printable ASCII without spaces: a name a column, a log line and a URL all hold as it is.
NAME_PATTERN = r"^[!-~]{1,200}$"
TOKEN_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


class RegisterWorker(BaseModel):
    """A GPU worker and its Ed25519 public key (raw 32 bytes in hex)."""

    model_config = ConfigDict(extra="forbid")

    worker_id: str = Field(pattern=NAME_PATTERN, examples=["gpu-worker-h100-1"])
    public_key_hex: str = Field(
        pattern=r"^[0-9a-fA-F]{64}$",
        examples=["b2d552b68890857171a78b36a5dccf368a953413288c353f7c9d9d6f94b709b3"],
    )

    @field_validator("public_key_hex")
    @classmethod
    def _a_real_key(cls, v: str) -> str:
        """No degenerate key (all zero, small order, off the prime-order group): such a key
        proves nothing, some signatures verify under it for any message."""
        if len(v) == 64 and not crypto_core_ed25519_is_valid_point(bytes.fromhex(v)):
            raise ValueError("not a usable Ed25519 public key (a degenerate or invalid point)")
        return v


class CreateJob(BaseModel):
    """A claim to run on a paper: any name of the record (Pith number, prefix, arXiv id)."""

    model_config = ConfigDict(extra="forbid")

    pith: str = Field(min_length=1, max_length=200, examples=["pith:2026:GWT7BTE6"])
    claim_id: str = Field(pattern=TOKEN_PATTERN, examples=["forge"])
    profile: str = Field(pattern=TOKEN_PATTERN, examples=["full"])


class LeaseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    claims: list[str] = Field(
        min_length=1, max_length=100, description="claim ids this worker runs", examples=[["forge"]]
    )
    gpus: int = Field(
        default=1,
        ge=0,
        le=4096,
        description="GPUs this worker has: a job whose profile needs more is not leased to it",
    )


class LeaseRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lease_id: str = Field(pattern=TOKEN_PATTERN)


def _headers() -> list[dict[str, Any]]:
    described = {
        HEADER_KEY: "hex fingerprint of the worker's registered key",
        HEADER_TIMESTAMP: "UTC time the request was signed, YYYY-MM-DDTHH:MM:SSZ",
        HEADER_NONCE: "16-64 characters of [A-Za-z0-9_-], never used twice",
        HEADER_SIGNATURE: "Ed25519 signature (base64) over 'pith-request-v1\\n' + the SHA-256 of "
        "the canonical JSON of {method, path, body_sha256, timestamp, nonce}",
    }
    return [
        {
            "name": name,
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": text,
        }
        for name, text in described.items()
    ]


def signed_request(body_schema: dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra` of a worker route: the signature headers and the JSON body it takes."""
    return {
        "parameters": _headers(),
        "requestBody": {"required": True, "content": {"application/json": {"schema": body_schema}}},
    }


LEASE_BODY = signed_request(LeaseRequest.model_json_schema())
LEASE_REF_BODY = signed_request(LeaseRef.model_json_schema())
RECORD_BODY = signed_request(EVENT_SCHEMA)
