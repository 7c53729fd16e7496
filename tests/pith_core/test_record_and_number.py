"""Canonical records from metadata, and Pith numbers in every accepted form."""

from __future__ import annotations

import base64
import dataclasses
import hashlib

import pytest

from pith_core import (
    PithNumberError,
    RecordError,
    canon_text,
    canonical_record,
    canonical_sha256,
    parse_pith_id,
    pith_number,
    record_aliases,
    short_pith_number,
    validate_canonical_record,
)

from .conftest import SAMPLE_META


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_record_from_metadata(sample_record: dict) -> None:
    meta = sample_record["metadata"]
    assert sample_record["source"] == {"id": "2606.00001", "kind": "arxiv", "version": 1}
    assert sample_record["schema_version"] == "1.0"
    assert meta["title_canon_sha256"] == sha("a sample title about erd\\h{o}s")
    assert meta["abstract_canon_sha256"] == sha("an abstract.")
    assert meta["cross_cats_sorted"] == ["cs.AI", "stat.ML"]  # sorted, primary removed
    assert validate_canonical_record(sample_record) == sample_record


def test_tex_is_kept_and_lower_cased() -> None:
    assert canon_text("On Erd\\H{o}s  and\n$\\mathbb{R}$") == "on erd\\h{o}s and $\\mathbb{r}$"


def test_number_year_is_the_submission_year_not_the_id_year() -> None:
    meta = dataclasses.replace(
        SAMPLE_META, arxiv_id="1801.00004", submitted_at="2017-12-29T10:00:00Z"
    )
    record = canonical_record(meta)
    number = pith_number(record)
    assert number.startswith("pith:2017:")
    digest = bytes.fromhex(canonical_sha256(record))
    assert number.split(":")[2] == base64.b32encode(digest).decode()[:26]


def test_later_versions_keep_the_first_submission_time() -> None:
    v2 = canonical_record(dataclasses.replace(SAMPLE_META, version=2))
    assert v2["metadata"]["submitted_at"] == SAMPLE_META.submitted_at
    assert pith_number(v2) != pith_number(canonical_record(SAMPLE_META))  # content-addressed


def test_old_style_ids_keep_their_slash_and_empty_license() -> None:
    meta = dataclasses.replace(
        SAMPLE_META, arxiv_id="hep-ph/0403191", license="", primary_cat="hep-ph", cross_cats=()
    )
    record = canonical_record(meta)
    assert record["source"]["id"] == "hep-ph/0403191"
    assert record["metadata"]["license"] == ""
    assert ("arxiv_version", "hep-ph/0403191v1") in record_aliases(record)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("arxiv_id", "not-an-id", "arXiv identifier"),
        ("version", 0, "positive"),
        ("title", "  \n ", "title is empty"),
        ("submitted_at", "2026-06-01 12:00:00", "YYYY-MM-DDTHH:MM:SSZ"),
        ("submitted_at", "2026-02-30T12:00:00Z", "YYYY-MM-DDTHH:MM:SSZ"),
        ("primary_cat", "CS LG", "category"),
    ],
)
def test_bad_metadata_is_refused_naming_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(RecordError, match=message):
        canonical_record(dataclasses.replace(SAMPLE_META, **{field: value}))


@pytest.mark.parametrize(
    "mutation",
    [
        lambda r: r.pop("schema_version"),
        lambda r: r.update(extra=1),
        lambda r: r["metadata"].update(cross_cats_sorted=["z.Z", "a.A"]),
        lambda r: r["metadata"].update(cross_cats_sorted=["cs.LG"]),
        lambda r: r["metadata"].update(title_canon_sha256="ABC"),
        lambda r: r["source"].update(kind="doi"),
    ],
)
def test_validate_refuses_malformed_records(sample_record: dict, mutation) -> None:
    mutation(sample_record)
    with pytest.raises(RecordError):
        validate_canonical_record(sample_record)


def test_parse_every_accepted_form(sample_record: dict) -> None:
    number = pith_number(sample_record)
    suffix = number.split(":")[2]
    full = parse_pith_id(number)
    assert (full.year, full.prefix, full.is_full) == (number[5:9], suffix, True)
    assert parse_pith_id(suffix).prefix == suffix and parse_pith_id(suffix).is_complete_suffix
    assert parse_pith_id(suffix.lower()).prefix == suffix
    assert parse_pith_id(short_pith_number(number)).prefix == suffix[:8]
    assert parse_pith_id(suffix[:12]).prefix == suffix[:12]
    assert short_pith_number(number) == "pith:" + suffix[:8]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "pith:",
        "pith:ABC",
        "ABCDEFG",
        "pith:2026:" + "A" * 25,
        "pith:26:" + "A" * 26,
        "A" * 27,
        "ABCDEFG1",
    ],
)
def test_parse_refuses_what_is_not_a_number(bad: str) -> None:
    with pytest.raises(PithNumberError):
        parse_pith_id(bad)


def test_aliases(sample_record: dict) -> None:
    suffix = pith_number(sample_record).split(":")[2]
    assert dict(record_aliases(sample_record)) == {
        "arxiv": "2606.00001",
        "arxiv_version": "2606.00001v1",
        "doi": "10.48550/arxiv.2606.00001",
        "pith_short_8": suffix[:8],
        "pith_short_12": suffix[:12],
        "pith_short_16": suffix[:16],
    }
