"""PostgreSQL keeps an index plan for the event-id look-ups on a young database (no ANALYZE
yet): connections run with `plan_cache_mode = force_custom_plan`, so a prepared statement never
falls back to the sequential-scan generic plan it would choose while the table looked empty."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import text

from app.storage.engine import Database

from .helpers import import_seeds


def test_event_id_lookups_use_the_index_on_a_fresh_database(
    backend: str, fresh_databases: Any, identity: Any
) -> None:
    if backend != "postgresql":
        pytest.skip("a PostgreSQL planner test (the identity fixture runs once a backend)")
    db = Database(fresh_databases.new("postgresql"))
    try:
        import_seeds(db, identity)
        with db.write() as session:
            assert session.execute(text("SHOW plan_cache_mode")).scalar() == "force_custom_plan"
            rows = session.execute(text("SELECT body FROM events")).scalars().all()
            template = json.loads(rows[0])
            ids = [f"sha256:{i:064x}" for i in range(1, 400)]
            literal = "'{" + ",".join(ids) + "}'"  # hex ids: safe inline
            # planned while the table is young (a dozen rows), as a worker's first batches are
            session.execute(
                text(
                    "PREPARE ids_lookup(varchar[]) AS "
                    "SELECT event_id FROM events WHERE event_id = ANY($1)"
                )
            )
            for _ in range(8):  # past PostgreSQL's switch to a generic plan
                session.execute(text(f"EXECUTE ids_lookup({literal})")).all()
            # then the table grows well past what that plan assumed
            session.execute(
                text(
                    "INSERT INTO events (event_id, subject, signer_fingerprint, seq, prev, target,"
                    " event_type, created_at, received_at, body) SELECT 'sha256:' ||"
                    " lpad(to_hex(g), 64, '0'), :subject, :fp, g + 100, NULL, 'graph', 'x',"
                    " '2026-01-01T00:00:00Z', now(), repeat('x', 600)"
                    " FROM generate_series(1, 20000) g"
                ),
                {
                    "subject": template["subject_pith_number"],
                    "fp": template["signer"]["public_key_fingerprint"],
                },
            )
            assert len(session.execute(text(f"EXECUTE ids_lookup({literal})")).all()) == 399
            plan = session.execute(
                text(f"EXPLAIN (FORMAT JSON) EXECUTE ids_lookup({literal})")
            ).scalar()
            session.rollback()
        assert "Index" in json.dumps(plan) and "Seq Scan" not in json.dumps(plan)
    finally:
        db.dispose()


pytestmark = pytest.mark.filterwarnings("ignore")
