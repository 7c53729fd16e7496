"""Request bodies of the record routes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from pith_core.record import PaperMetadata


class RegisterPaper(BaseModel):
    """An arXiv paper (one version) to register; its record is built from these fields."""

    model_config = ConfigDict(extra="forbid", str_max_length=100_000)

    arxiv_id: str = Field(examples=["2606.22932"], max_length=64)
    version: int = Field(ge=1, le=1000, examples=[1])
    title: str = Field(min_length=1)
    abstract: str = Field(min_length=1)
    authors: list[str] = Field(default_factory=list, max_length=5000)
    license: str = Field(default="", max_length=500)
    primary_cat: str = Field(examples=["cs.LG"], max_length=64)
    cross_cats: list[str] = Field(default_factory=list, max_length=100)
    submitted_at: str = Field(
        description="the FIRST version's submission time, UTC, YYYY-MM-DDTHH:MM:SSZ",
        examples=["2026-06-22T07:08:31Z"],
    )
    headline: str = Field(default="", max_length=2000)

    def metadata(self) -> PaperMetadata:
        return PaperMetadata(
            arxiv_id=self.arxiv_id,
            version=self.version,
            title=self.title,
            abstract=self.abstract,
            submitted_at=self.submitted_at,
            primary_cat=self.primary_cat,
            cross_cats=tuple(self.cross_cats),
            license=self.license,
            authors=tuple(self.authors),
        )


class ImportRequest(BaseModel):
    """Documents published by another registry, verified under `trusted_key`."""

    model_config = ConfigDict(extra="forbid")

    documents: list[str] = Field(
        min_length=1,
        max_length=100,
        description="each a record document, a merged state (JSON text), or a record page as text",
    )
    trusted_key: str | None = Field(
        default=None, description="raw Ed25519 key in hex (default: the public registry's)"
    )
