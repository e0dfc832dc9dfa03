"""Persistence: SQLAlchemy models, engines and sessions, migrations, demo data."""
