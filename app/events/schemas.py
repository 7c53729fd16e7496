"""The signed event, as documented in the OpenAPI schema (bodies are parsed by
`pith_core.canonical.parse_json` and checked by `pith_core.events.verify_event`, not by these)."""

from __future__ import annotations

from typing import Any

from pith_core.events import EVENT_FIELDS, SIGNER_FIELDS

SIGNER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": sorted(SIGNER_FIELDS),
    "properties": {
        "key_id": {"type": "string"},
        "public_key_b64": {"type": "string", "description": "raw Ed25519 key, standard base64"},
        "public_key_fingerprint": {
            "type": "string",
            "description": "hex of the first 16 bytes of SHA-256 of the raw key",
        },
        "signer_id": {"type": "string"},
        "signer_type": {"type": "string"},
    },
}
EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "A signed event (DESIGN §2): event_id = sha256:<hex SHA-256 of the canonical JSON without "
        "event_id and signature_b64>; Ed25519 signature over 'pith-event-v1\\n' + the 32 digest "
        "bytes."
    ),
    "required": sorted(EVENT_FIELDS),
    "properties": {
        "event_type": {"type": "string", "examples": ["replication_record"]},
        "subject_pith_number": {
            "type": "string",
            "examples": ["pith:2026:GWT7BTE6QQH6QFVV76TWP23RSF"],
        },
        "target": {"type": "string", "examples": ["replication"]},
        "created_at": {"type": "string", "examples": ["2026-11-23T05:00:00Z"]},
        "seq": {"type": "integer", "minimum": 1},
        "prev": {"type": ["string", "null"]},
        "signer": SIGNER_SCHEMA,
        "payload": {"type": "object"},
        "event_id": {"type": "string"},
        "signature_b64": {"type": "string"},
    },
}
EVENT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": EVENT_SCHEMA}},
    }
}
BATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"type": "array", "items": EVENT_SCHEMA},
                        {
                            "type": "object",
                            "required": ["events"],
                            "properties": {"events": {"type": "array", "items": EVENT_SCHEMA}},
                        },
                    ]
                }
            }
        },
    }
}
