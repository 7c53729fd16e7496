"""Committed evidence: signed replication records kept in the repository (each file of
`replication/results/*.json` a JSON list of signed `replication_record` events), loaded by
`pith serve` through the events service's action path, so a new registry shows them.

Every event of every file is verified before anything is stored; a file that does not verify is
refused whole. Records about papers this registry does not hold are skipped (and counted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from pith_core.canonical import parse_json
from pith_core.errors import PithError

from ..core.problems import Problem
from ..events.service import Clock, check_event, submit_action
from ..records.repository import RecordRepository
from ..registry.service import RegistryIdentity


class ResultsRefused(Exception):
    """A results file that may not be loaded: `source` and what failed."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


@dataclass
class Loaded:
    stored: int = 0
    present: int = 0
    skipped: list[str] = field(default_factory=list)  # subjects this registry does not hold


def results_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.json")) if directory.is_dir() else []


def read_results(path: Path, identity: RegistryIdentity, clock: Clock) -> list[dict[str, Any]]:
    """The verified replication records of one file, or ResultsRefused."""
    source = str(path)
    try:
        doc = parse_json(path.read_bytes())
    except (OSError, PithError) as e:
        raise ResultsRefused(source, f"not readable as JSON: {e}") from e
    if not isinstance(doc, list):
        raise ResultsRefused(source, "expected a JSON list of signed replication_record events")
    for i, event in enumerate(doc):
        try:
            check_event(event, identity, clock)
        except Problem as p:
            raise ResultsRefused(source, f"event [{i}] does not verify: {p.detail}") from p
        if event["target"] != "replication":
            raise ResultsRefused(
                source, f"event [{i}] has target {event['target']!r}, not 'replication'"
            )
    return doc


def store_results(
    session: Session, identity: RegistryIdentity, events: Sequence[dict[str, Any]]
) -> Loaded:
    """Store verified records through `submit_action` (the public action URL's path)."""
    loaded = Loaded()
    records = RecordRepository(session)
    for event in events:
        paper = records.by_number(event["subject_pith_number"])
        if paper is None:
            loaded.skipped.append(event["subject_pith_number"])
            continue
        stored, _ = submit_action(session, identity, paper, "replication_record", event)
        if stored.created:
            loaded.stored += 1
        else:
            loaded.present += 1
    return loaded
