"""Alembic revisions of the store schema, applied in order by ``migrations.upgrade``."""
