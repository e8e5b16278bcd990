"""Migrations are numbered without gaps up to the schema version each store announces: an
upgrade runs every number above a database's version, so a missing file would be a change
silently never applied to it."""

from importlib import resources

from pyngest.server.store.postgres import migrate
from pyngest.server.store.sqlite import connection


def _numbers(package: str) -> list[int]:
    folder = resources.files(package).joinpath("migrations")
    return sorted(int(p.name[:3]) for p in folder.iterdir() if p.name.endswith(".sql"))


def test_postgres_migrations_run_from_1_to_the_schema_version_without_gaps() -> None:
    assert _numbers("pyngest.server.store.postgres") == list(range(1, migrate.SCHEMA_VERSION + 1))


def test_sqlite_migrations_run_from_2_to_the_schema_version_without_gaps() -> None:
    # version 1 is schema.sql itself
    assert _numbers("pyngest.server.store.sqlite") == list(range(2, connection.SCHEMA_VERSION + 1))
