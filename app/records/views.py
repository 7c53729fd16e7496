"""Read models of a record, as `build(session) -> (body, media type)` for `AppContext.serve`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from pith_core.number import short_pith_number

from ..core.context import AppContext
from ..core.jsonbody import dumps
from ..events.repository import EventRepository
from ..events.state import state_for_read
from ..storage.models import Record
from ..trust.policy import policy_for
from ..trust.service import verification
from .repository import RecordRepository
from .service import links, record_document, resolve

JSON = "application/json"
Build = Callable[[Session], tuple[bytes, str]]


def record_doc(ctx: AppContext, session: Session, record: Record) -> dict[str, Any]:
    state = state_for_read(ctx.db, session, ctx.identity, record.pith_number)
    updated = EventRepository(session).last_received(record.pith_number)
    trust = verification(
        session, policy_for(ctx.settings, ctx.identity), record.canonical_sha256, state
    )
    return record_document(
        record,
        state,
        base_url=ctx.base_url,
        identity=ctx.identity,
        updated_at=updated,
        trust=trust,
    )


def record_json(ctx: AppContext, pith_id: str, media_type: str = JSON) -> Build:
    def build(session: Session) -> tuple[bytes, str]:
        return dumps(record_doc(ctx, session, resolve(session, pith_id))), media_type

    return build


def record_list(ctx: AppContext, limit: int, offset: int) -> Build:
    def build(session: Session) -> tuple[bytes, str]:
        repo = RecordRepository(session)
        items = []
        for r in repo.page(limit, offset):
            paper = json.loads(r.paper)
            items.append(
                {
                    "pith_number": r.pith_number,
                    "short_pith_number": short_pith_number(r.pith_number),
                    "title": paper.get("title", ""),
                    "source": {
                        "kind": r.source_kind,
                        "id": r.source_id,
                        "version": r.source_version,
                    },
                    "canonical_sha256": r.canonical_sha256,
                    "links": links(ctx.base_url, r),
                }
            )
        return dumps(
            {"total": repo.count(), "limit": limit, "offset": offset, "records": items}
        ), JSON

    return build
