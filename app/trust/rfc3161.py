"""RFC 3161 timestamp tokens: the one kind of anchor this registry verifies itself.

A token is a CMS SignedData (RFC 5652) whose content is a TSTInfo. It anchors a record when its
message imprint is the record's canonical hash (SHA-256 of the canonical record: a TSA is asked
with `openssl ts -query -digest <canonical_sha256> -sha256`), its signed attributes carry the
digest of that TSTInfo, and their signature verifies under the certificate of a time-stamping
authority this registry is configured to trust (pinned: no chain building, no network). Parsing
is asn1crypto's, signatures are `cryptography`'s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from asn1crypto import cms, tsp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

_HASHES = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
_CRYPTO_HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}
MAX_TOKEN_BYTES = 48 * 1024


class TokenRefused(ValueError):
    """The token does not prove what it is offered for (the message says which check failed)."""


@dataclass(frozen=True)
class Authority:
    """A pinned time-stamping authority: its certificate and a short name for pages."""

    certificate: x509.Certificate
    name: str

    @classmethod
    def from_pem(cls, pem: bytes) -> Authority:
        cert = x509.load_pem_x509_certificate(pem)
        names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        name = str(names[0].value) if names else cert.subject.rfc4514_string()
        return cls(cert, name)

    @classmethod
    def from_file(cls, path: Path) -> Authority:
        return cls.from_pem(path.read_bytes())


@dataclass(frozen=True)
class Anchored:
    """What a verified token proves: `digest` existed at `at`, said by `authority`."""

    at: datetime
    authority: str


def _signer_matches(sid: cms.SignerIdentifier, cert: x509.Certificate) -> bool:
    if sid.name == "issuer_and_serial_number":
        issuer = sid.chosen["issuer"].dump()
        serial = sid.chosen["serial_number"].native
        return bool(serial == cert.serial_number and issuer == cert.issuer.public_bytes())
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return False
    return bool(sid.chosen.native == ski)


def _verify_signature(
    cert: x509.Certificate, algorithm: str, digest_name: str, signature: bytes, data: bytes
) -> None:
    key = cert.public_key()
    chosen = _CRYPTO_HASHES[digest_name]()
    if isinstance(key, ed25519.Ed25519PublicKey):
        key.verify(signature, data)
    elif isinstance(key, rsa.RSAPublicKey):
        if algorithm == "rsassa_pss":
            pss = padding.PSS(mgf=padding.MGF1(chosen), salt_length=padding.PSS.AUTO)
            key.verify(signature, data, pss, chosen)
        else:
            key.verify(signature, data, padding.PKCS1v15(), chosen)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, data, ec.ECDSA(chosen))
    else:
        raise TokenRefused(f"unsupported TSA key type {type(key).__name__}")


def verify_token(token: bytes, canonical_sha256: str, authorities: Sequence[Authority]) -> Anchored:
    """What `token` proves about the record whose canonical hash is `canonical_sha256`; raises
    TokenRefused naming the first check that fails."""
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenRefused("token is larger than any time-stamp token")
    try:
        info = cms.ContentInfo.load(token, strict=True)
        if info["content_type"].native != "signed_data":
            raise TokenRefused("not a CMS SignedData")
        signed = info["content"]
        encap = signed["encap_content_info"]
        if encap["content_type"].native != "tst_info":
            raise TokenRefused("the signed content is not a TSTInfo")
        tst_der = encap["content"].contents
        tst = tsp.TSTInfo.load(tst_der, strict=True)
        imprint = tst["message_imprint"]
        imprint_alg = imprint["hash_algorithm"]["algorithm"].native
        hashed = imprint["hashed_message"].native
        gen_time = tst["gen_time"].native
        signer_infos = list(signed["signer_infos"])
    except TokenRefused:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as e:
        raise TokenRefused(f"not a DER time-stamp token: {e}") from None
    if imprint_alg != "sha256" or hashed != bytes.fromhex(canonical_sha256):
        raise TokenRefused("the token's message imprint is not this record's canonical hash")
    if len(signer_infos) != 1:
        raise TokenRefused("a time-stamp token has exactly one signer")
    (si,) = signer_infos
    digest_name = si["digest_algorithm"]["algorithm"].native
    if digest_name not in _HASHES:
        raise TokenRefused(f"unsupported digest algorithm {digest_name}")
    attrs = si["signed_attrs"]
    if not attrs:
        raise TokenRefused("the token has no signed attributes")
    by_type = {a["type"].native: a["values"] for a in attrs}
    if by_type.get("content_type") is None or by_type["content_type"][0].native != "tst_info":
        raise TokenRefused("the signed content-type attribute is not TSTInfo")
    digests = by_type.get("message_digest")
    if digests is None or digests[0].native != _HASHES[digest_name](tst_der).digest():
        raise TokenRefused("the signed message digest is not the TSTInfo's")
    signed_bytes = bytearray(attrs.dump())
    signed_bytes[0] = 0x31  # signed over as a SET OF, not as the [0] IMPLICIT field
    algorithm = si["signature_algorithm"]["algorithm"].native
    signature = si["signature"].native
    for authority in authorities:
        if not _signer_matches(si["sid"], authority.certificate):
            continue
        cert = authority.certificate
        if not cert.not_valid_before_utc <= gen_time <= cert.not_valid_after_utc:
            raise TokenRefused("the token's time is outside its authority's certificate")
        try:
            _verify_signature(cert, algorithm, digest_name, signature, bytes(signed_bytes))
        except InvalidSignature:
            raise TokenRefused("the token's signature does not verify") from None
        return Anchored(gen_time, authority.name)
    raise TokenRefused("the token was not signed by a configured time-stamping authority")
