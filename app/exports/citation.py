"""A record as a citation: BibTeX (what LaTeX users paste) and CSL-JSON (what Zotero, pandoc and
citeproc read), both naming the arXiv source, its DOI and the Pith number."""

from __future__ import annotations

import json
import re
from typing import Any

BIBTEX_SPECIAL = re.compile(r"(?<!\\)([&%#])")


def authors_of(paper: dict[str, Any]) -> list[str]:
    """The author names of `authors_text` ("A, B, and C" or "A, B and C")."""
    text = str(paper.get("authors_text", ""))
    names = []
    for part in re.split(r",\s*|\s+and\s+", text):
        name = part.strip().removeprefix("and ").strip()
        if name:
            names.append(name)
    return names


def _split_name(name: str) -> dict[str, str]:
    parts = name.split()
    if len(parts) == 1:
        return {"literal": name}
    return {"family": parts[-1], "given": " ".join(parts[:-1])}


def _bibtex_value(text: str) -> str:
    """A field value in braces: TeX stays TeX; bare &, %, # are escaped; unbalanced braces
    (which would end the field early) are dropped."""
    text = BIBTEX_SPECIAL.sub(r"\\\1", " ".join(text.split()))
    depth = 0
    for c in text:
        depth += {"{": 1, "}": -1}.get(c, 0)
        if depth < 0:
            break
    if depth != 0:
        text = text.replace("{", "").replace("}", "")
    return text


def bibtex(doc: dict[str, Any]) -> str:
    paper, source = doc["paper"], doc["source"]
    year, month = paper.get("submitted_at", "")[:4], paper.get("submitted_at", "")[5:7]
    key = "pith" + doc["pith_number"].rsplit(":", 1)[1][:8]
    fields = [
        ("title", "{" + _bibtex_value(str(paper.get("title", ""))) + "}"),
        ("author", " and ".join(_bibtex_value(a) for a in authors_of(paper))),
        ("year", year),
        ("month", month.lstrip("0")),
        ("eprint", source["id"]),
        ("archivePrefix", "arXiv"),
        ("primaryClass", str(paper.get("primary_cat", ""))),
        ("doi", f"10.48550/arXiv.{source['id']}"),
        ("url", doc["links"]["html"]),
        ("note", f"Pith number {doc['pith_number']}, canonical SHA-256 {doc['canonical_sha256']}"),
    ]
    body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields if value)
    return f"@misc{{{key},\n{body}\n}}\n"


def csl_json(doc: dict[str, Any]) -> list[dict[str, Any]]:
    paper, source = doc["paper"], doc["source"]
    submitted = str(paper.get("submitted_at", ""))
    date_parts = [int(p) for p in (submitted[:4], submitted[5:7], submitted[8:10]) if p.isdigit()]
    item: dict[str, Any] = {
        "id": doc["pith_number"],
        "type": "article",
        "title": paper.get("title", ""),
        "author": [_split_name(a) for a in authors_of(paper)],
        "issued": {"date-parts": [date_parts]} if date_parts else {},
        "publisher": "arXiv",
        "number": f"arXiv:{source['id']}",
        "version": str(source["version"]),
        "DOI": f"10.48550/arXiv.{source['id']}",
        "URL": doc["links"]["html"],
        "note": f"Pith number {doc['pith_number']}",
    }
    if paper.get("abstract_excerpt"):
        item["abstract"] = paper["abstract_excerpt"]
    if paper.get("license"):
        item["license"] = paper["license"]
    return [item]


def csl_json_bytes(doc: dict[str, Any]) -> bytes:
    return json.dumps(csl_json(doc), ensure_ascii=False, indent=2).encode("utf-8")
