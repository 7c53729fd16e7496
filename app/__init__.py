"""The Pith registry service: records, signed events and merged states over HTTP.

A thin layer over `pith_core`: hashing, signing, event verification and merge all live there;
this package adds storage (SQLAlchemy, Alembic), HTTP (FastAPI) and HTML pages (Jinja2).
"""
