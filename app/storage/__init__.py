"""Storage: the SQLAlchemy models, the engine (SQLite or PostgreSQL), units of work, migrations."""

from .engine import Database, normalize_url
from .migrate import upgrade_database

__all__ = ["Database", "normalize_url", "upgrade_database"]
