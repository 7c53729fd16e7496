"""A test time-stamping authority: real keys, a real certificate, real RFC 3161 tokens (CMS
SignedData over a TSTInfo), built with asn1crypto and signed with `cryptography`."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from app.trust.rfc3161 import Authority


class TestTSA:
    __test__ = False

    def __init__(self, kind: str = "rsa", name: str = "Test TSA") -> None:
        if kind == "rsa":
            self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            self.key = ed25519.Ed25519PrivateKey.generate()
        self.kind = kind
        subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=365 * 30))
            .not_valid_after(now + timedelta(days=365))
            .add_extension(
                x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.TIME_STAMPING]), critical=True
            )
        )
        self.cert = builder.sign(self.key, None if kind == "ed25519" else hashes.SHA256())

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def authority(self) -> Authority:
        return Authority.from_pem(self.pem)

    def token(self, canonical_sha256: str, at: datetime | None = None) -> bytes:
        """A DER TimeStampToken whose imprint is `canonical_sha256` (SHA-256)."""
        at = (at or datetime.now(UTC)).replace(microsecond=0)
        tst = tsp.TSTInfo(
            {
                "version": "v1",
                "policy": "1.3.6.1.4.1.99999.1",
                "message_imprint": {
                    "hash_algorithm": {"algorithm": "sha256"},
                    "hashed_message": bytes.fromhex(canonical_sha256),
                },
                "serial_number": x509.random_serial_number(),
                "gen_time": at,
                "nonce": 1,
            }
        )
        tst_der = tst.dump()
        signed_attrs = cms.CMSAttributes(
            [
                cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
                cms.CMSAttribute(
                    {"type": "message_digest", "values": [hashlib.sha256(tst_der).digest()]}
                ),
            ]
        )
        to_sign = signed_attrs.dump()  # a SET OF: what the signature covers
        if self.kind == "ed25519":
            signature = self.key.sign(to_sign)
            sig_alg = "ed25519"
        else:
            signature = self.key.sign(to_sign, padding.PKCS1v15(), hashes.SHA256())
            sig_alg = "sha256_rsa"
        cert = asn1_x509.Certificate.load(self.cert.public_bytes(serialization.Encoding.DER))
        signer = cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier(
                    {
                        "issuer_and_serial_number": {
                            "issuer": cert.issuer,
                            "serial_number": cert.serial_number,
                        }
                    }
                ),
                "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                "signed_attrs": signed_attrs,
                "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": sig_alg}),
                "signature": signature,
            }
        )
        signed = cms.SignedData(
            {
                "version": "v3",
                "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
                "encap_content_info": {
                    "content_type": "tst_info",
                    "content": core.ParsableOctetString(tst_der),
                },
                "certificates": [cert],
                "signer_infos": [signer],
            }
        )
        return cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump()
