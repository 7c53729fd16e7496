"""Pith numbers: `pith:<YYYY>:<S>`, S the first 26 base32 characters of the record's digest.

YYYY is the year of `submitted_at` (the first version's), not of the arXiv id. Short forms and the
aliases a registry publishes for a record are derived here too.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

from .canonical import canonical_sha256
from .errors import PithNumberError

SUFFIX_LEN = 26
SHORT_LEN = 8
_B32 = "A-Z2-7"
_FULL = re.compile(rf"pith:(\d{{4}}):([{_B32}]{{{SUFFIX_LEN}}})")
_SHORT = re.compile(rf"(?:pith:)?([{_B32}]{{{SHORT_LEN},{SUFFIX_LEN}}})")


def suffix_of_digest(digest_hex: str) -> str:
    """The 26-character suffix: RFC 4648 base32 (upper case, unpadded) of the 32 digest bytes."""
    raw = bytes.fromhex(digest_hex)
    if len(raw) != 32:
        raise PithNumberError("a Pith number is derived from a 32-byte SHA-256 digest")
    return base64.b32encode(raw).decode("ascii")[:SUFFIX_LEN]


def pith_number_of(canonical_sha256_hex: str, submitted_at: str) -> str:
    return f"pith:{submitted_at[:4]}:{suffix_of_digest(canonical_sha256_hex)}"


def pith_number(record: dict[str, Any]) -> str:
    """The Pith number of a canonical record."""
    return pith_number_of(canonical_sha256(record), record["metadata"]["submitted_at"])


def short_pith_number(number: str) -> str:
    """`pith:<first 8 of S>`."""
    return f"pith:{parse_full(number).prefix[:SHORT_LEN]}"


@dataclass(frozen=True)
class PithId:
    """A parsed reference to a record: a full number, or a suffix prefix (8–26 characters)."""

    year: str | None
    prefix: str  # the whole suffix when `year` is set or len(prefix) == 26

    @property
    def is_full(self) -> bool:
        return self.year is not None

    @property
    def is_complete_suffix(self) -> bool:
        return len(self.prefix) == SUFFIX_LEN


def parse_full(number: str) -> PithId:
    """Parse `pith:YYYY:S` strictly."""
    m = _FULL.fullmatch(number) if isinstance(number, str) else None
    if not m:
        raise PithNumberError(f"{number!r} is not a Pith number of the form pith:YYYY:<26 base32>")
    return PithId(year=m.group(1), prefix=m.group(2))


def parse_pith_id(text: str) -> PithId:
    """Any accepted form: `pith:YYYY:S`, `S` (26), `pith:<prefix>` or `<prefix>` (8–26 chars).

    Lower case is accepted and upper-cased (base32 is case-insensitive for people typing it).
    """
    if not isinstance(text, str):
        raise PithNumberError("a Pith number is a string")
    t = text.strip()
    t = "pith:" + t[5:].upper() if t.lower().startswith("pith:") else t.upper()
    m = _FULL.fullmatch(t)
    if m:
        return PithId(year=m.group(1), prefix=m.group(2))
    m = _SHORT.fullmatch(t)
    if m:
        return PithId(year=None, prefix=m.group(1))
    raise PithNumberError(
        f"{text!r} is not a Pith number: expected pith:YYYY:<26 base32 characters>, "
        "the 26-character suffix, or a prefix of at least 8 of its characters"
    )


def is_pith_number(value: object) -> bool:
    return isinstance(value, str) and _FULL.fullmatch(value) is not None


def record_aliases(record: dict[str, Any]) -> list[tuple[str, str]]:
    """The aliases a registry publishes for a record, as (kind, value), sorted by kind."""
    source = record["source"]
    suffix = parse_full(pith_number(record)).prefix
    arxiv_id = source["id"]
    aliases = [
        ("arxiv", arxiv_id),
        ("arxiv_version", f"{arxiv_id}v{source['version']}"),
        ("doi", f"10.48550/arxiv.{arxiv_id}"),
        ("pith_short_12", suffix[:12]),
        ("pith_short_16", suffix[:16]),
        ("pith_short_8", suffix[:8]),
    ]
    return sorted(aliases)
