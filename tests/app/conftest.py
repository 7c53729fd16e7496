"""Fixtures of the service's tests, on SQLite and on PostgreSQL.

`db_url` is a fresh database per test session and backend, its schema built by the Alembic
migrations (never `create_all`). In-process API tests run inside a transaction rolled back at
their end: the app's units of work become SAVEPOINTs of the test's connection.

PostgreSQL comes from PITH_TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/test):
unset, its tests skip; set but unreachable, they skip, unless PITH_REQUIRE_POSTGRES=1 (CI), when
they fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url

from app.main import create_app
from app.registry.service import load_identity
from app.settings import Settings
from app.storage.engine import Database, make_engine, normalize_url
from app.storage.migrate import upgrade_database

from .helpers import ADMIN_TOKEN, BASE_URL, SEEDS_DIR

POSTGRES_ENV = "PITH_TEST_POSTGRES_URL"
REQUIRE_ENV = "PITH_REQUIRE_POSTGRES"


def _postgres_admin_url() -> str:
    url = os.environ.get(POSTGRES_ENV, "").strip()
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set: PostgreSQL tests skipped")
    url = normalize_url(url)
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 5})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as e:
        message = f"PostgreSQL at {POSTGRES_ENV} is unreachable: {e}"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(message + f" ({REQUIRE_ENV}=1)", pytrace=False)
        pytest.skip(message)
    return url


class FreshDatabases:
    """Creates fresh databases (a SQLite file, or a PostgreSQL database) and drops them."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.created_pg: list[tuple[str, str]] = []

    def new(self, backend: str, migrate: bool = True) -> str:
        name = f"pith_test_{secrets.token_hex(6)}"
        if backend == "sqlite":
            url = f"sqlite:///{self.tmp / (name + '.db')}"
        else:
            admin = _postgres_admin_url()
            engine = create_engine(admin, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            engine.dispose()
            url = make_url(admin).set(database=name).render_as_string(hide_password=False)
            self.created_pg.append((admin, name))
        if migrate:
            upgrade_database(url)
        return url

    def drop_all(self) -> None:
        for admin, name in self.created_pg:
            engine = create_engine(admin, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            engine.dispose()


@pytest.fixture(scope="session")
def fresh_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FreshDatabases]:
    dbs = FreshDatabases(tmp_path_factory.mktemp("databases"))
    yield dbs
    dbs.drop_all()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def db_url(backend: str, fresh_databases: FreshDatabases) -> str:
    """A database migrated to head for this session and backend."""
    return fresh_databases.new(backend)


@pytest.fixture(scope="session")
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture()
def connection(engine: Engine) -> Iterator[Connection]:
    """A connection whose transaction every unit of work of the test joins, rolled back after."""
    conn = engine.connect()
    outer = conn.begin()
    yield conn
    outer.rollback()
    conn.close()


@pytest.fixture(scope="session")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys") / "registry-key.json"


@pytest.fixture()
def settings(db_url: str, key_file: Path) -> Settings:
    return Settings(
        database_url=db_url,
        key_file=key_file,
        admin_token=ADMIN_TOKEN,
        public_url=BASE_URL,
        rate_limit_reads_per_minute=0,
        rate_limit_writes_per_minute=0,
        seeds_dir=SEEDS_DIR,
    )


@pytest.fixture()
def database(connection: Connection) -> Database:
    return Database.bound_to(connection)


@pytest.fixture()
def identity(settings: Settings):  # type: ignore[no-untyped-def]
    return load_identity(settings)


def make_client(settings: Settings, database: Database) -> TestClient:
    return TestClient(create_app(settings, database=database), base_url=BASE_URL)


@pytest.fixture()
def client(settings: Settings, database: Database) -> Iterator[TestClient]:
    with make_client(settings, database) as c:
        yield c


@pytest.fixture()
def seeded(client: TestClient, database: Database, settings: Settings, identity) -> TestClient:  # type: ignore[no-untyped-def]
    """`client` over a database holding the five seeds, imported as `pith import` does."""
    from .helpers import import_seeds

    import_seeds(database, identity)
    return client
