"""The service's fixtures (databases on SQLite and PostgreSQL, in-process clients), for the
replication job tests: see tests/app/conftest.py."""

from tests.app.conftest import (  # noqa: F401
    backend,
    client,
    connection,
    database,
    db_url,
    engine,
    fresh_databases,
    identity,
    key_file,
    seeded,
    settings,
)
