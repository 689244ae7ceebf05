"""State: SQLAlchemy tables on SQLite (default, WAL) or PostgreSQL, with Alembic migrations."""
