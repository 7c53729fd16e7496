"""The JSON Schema of the record document (`/pith/{id}.json`, the public registry's shape), which
each record names in `schema_url`: served here, so the URL a record names resolves."""

from __future__ import annotations

from typing import Any

RECORD_SCHEMA_PATH = "/schemas/pith-number/v1.json"
UTC_SECOND = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"
_HEX64 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_SECTION = {
    "type": "object",
    "required": ["snapshot_sha256"],
    "properties": {
        "snapshot_sha256": {
            **_HEX64,
            "description": 'SHA-256 of the canonical JSON of {"payload": <the section\'s items>}',
        }
    },
}


def record_schema(base_url: str) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{base_url}{RECORD_SCHEMA_PATH}",
        "title": "Pith number record",
        "description": "A paper's content-addressed record: the canonical record (whose canonical "
        "JSON's SHA-256 is canonical_sha256 and names the Pith number), the registry's Ed25519 "
        "receipt over that digest, the paper's details, the graph snapshot and the verification "
        "status computed from the signed events.",
        "type": "object",
        "required": [
            "record_type",
            "schema_url",
            "pith_number",
            "short_pith_number",
            "schema_version",
            "canonical_sha256",
            "source",
            "canonical_record",
            "receipt",
        ],
        "properties": {
            "record_type": {"const": "pith_number_record"},
            "schema_url": {"type": "string", "format": "uri"},
            "pith_number": {"type": "string", "pattern": "^pith:[0-9]{4}:[A-Z2-7]{26}$"},
            "short_pith_number": {"type": "string", "pattern": "^pith:[A-Z2-7]{8}$"},
            "schema_version": {"const": "1.0"},
            "canonical_sha256": _HEX64,
            "source": {
                "type": "object",
                "required": ["kind", "id", "version"],
                "properties": {
                    "kind": {"const": "arxiv"},
                    "id": {"type": "string"},
                    "version": {"type": "integer", "minimum": 1},
                },
            },
            "canonical_record": {
                "type": "object",
                "required": ["metadata", "schema_version", "source"],
                "additionalProperties": False,
                "properties": {
                    "schema_version": {"const": "1.0"},
                    "source": {"type": "object"},
                    "metadata": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": [
                            "abstract_canon_sha256",
                            "cross_cats_sorted",
                            "license",
                            "primary_cat",
                            "submitted_at",
                            "title_canon_sha256",
                        ],
                        "properties": {
                            "abstract_canon_sha256": _HEX64,
                            "title_canon_sha256": _HEX64,
                            "cross_cats_sorted": {"type": "array", "items": {"type": "string"}},
                            "license": {"type": "string"},
                            "primary_cat": {"type": "string"},
                            "submitted_at": {
                                "type": "string",
                                "pattern": UTC_SECOND,
                            },
                        },
                    },
                },
            },
            "receipt": {
                "type": "object",
                "required": [
                    "kind",
                    "algorithm",
                    "key_id",
                    "signed_message",
                    "signature_b64",
                    "public_key_fingerprint",
                    "canonical_sha256",
                ],
                "properties": {
                    "kind": {"const": "pith_receipt"},
                    "algorithm": {"const": "ed25519"},
                    "signed_message": {"const": "canonical_sha256_bytes"},
                    "public_key_fingerprint": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                    "canonical_sha256": _HEX64,
                },
            },
            "paper": {"type": "object"},
            "verification_status": {"type": "object"},
            "graph_snapshot": {
                "type": ["object", "null"],
                "properties": {
                    name: _SECTION
                    for name in (
                        "claims",
                        "references",
                        "author_claims",
                        "formal_canon",
                        "integrity",
                    )
                },
            },
            "aliases": {"type": "array"},
            "links": {"type": "object"},
        },
    }
