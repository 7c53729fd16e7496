"""The Pith protocol: canonical JSON, records, Pith numbers, receipts, signed events and merge.

Pure functions over plain data (PyNaCl for Ed25519; orjson, when installed, only to write canonical
JSON faster, byte for byte the standard library's); no web, no database, no torch. The one module
that touches files is `keyfile`.
"""

from .bundle import build_bundle
from .canonical import canonical_json, canonical_sha256, check_canonical, parse_json
from .errors import (
    CanonicalError,
    EventError,
    PithError,
    PithNumberError,
    RecordError,
    SignatureError,
)
from .events import (
    EVENT_TYPES,
    REGISTRY_ONLY_TARGETS,
    build_event,
    sign_event,
    signer_info,
    verify_event,
)
from .keys import (
    PUBLIC_REGISTRY_KEY_HEX,
    PUBLIC_REGISTRY_KEY_ID,
    KeyPair,
    fingerprint,
    generate_signing_key,
    public_key_from_hex,
)
from .merge import merge, state_sha256
from .number import parse_pith_id, pith_number, record_aliases, short_pith_number
from .receipt import sign_receipt, verify_receipt
from .record import PaperMetadata, canon_text, canonical_record, validate_canonical_record

__all__ = [
    "EVENT_TYPES",
    "PUBLIC_REGISTRY_KEY_HEX",
    "PUBLIC_REGISTRY_KEY_ID",
    "REGISTRY_ONLY_TARGETS",
    "CanonicalError",
    "EventError",
    "KeyPair",
    "PaperMetadata",
    "PithError",
    "PithNumberError",
    "RecordError",
    "SignatureError",
    "build_bundle",
    "build_event",
    "canon_text",
    "canonical_json",
    "canonical_record",
    "canonical_sha256",
    "check_canonical",
    "fingerprint",
    "generate_signing_key",
    "merge",
    "parse_json",
    "parse_pith_id",
    "pith_number",
    "public_key_from_hex",
    "record_aliases",
    "short_pith_number",
    "sign_event",
    "sign_receipt",
    "signer_info",
    "state_sha256",
    "validate_canonical_record",
    "verify_event",
    "verify_receipt",
]
