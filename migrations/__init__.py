"""Alembic migrations of the service's schema (the only way it changes)."""
