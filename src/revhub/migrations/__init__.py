"""Alembic migrations for every domain, and the schema checks the entry points run.

The scripts live in ``versions/`` (named ``YYYY_MM_DD_HHMM_<slug>``); ``all_metadata()`` imports
every domain's models so that ``alembic check`` compares the whole schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, create_engine, make_url
from sqlalchemy.pool import NullPool

HERE = Path(__file__).parent


def all_metadata() -> MetaData:
    """The metadata with every domain's tables registered on it."""
    from revhub.attribution import models as _attribution  # noqa: F401
    from revhub.contacts import models as _contacts  # noqa: F401
    from revhub.core import idempotency as _idempotency  # noqa: F401
    from revhub.core import leases as _leases  # noqa: F401
    from revhub.core import reference as _reference  # noqa: F401
    from revhub.core.audit import models as _audit  # noqa: F401
    from revhub.core.auth import models as _auth  # noqa: F401
    from revhub.core.db import Base
    from revhub.core.events import models as _events  # noqa: F401
    from revhub.core.jobs import models as _jobs  # noqa: F401
    from revhub.core.webhooks import models as _webhooks  # noqa: F401
    from revhub.crm import models as _crm  # noqa: F401
    from revhub.sales import models as _sales  # noqa: F401

    return Base.metadata


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def schema_status(conn: Connection) -> SchemaStatus:
    script = ScriptDirectory.from_config(alembic_config(""))
    current = MigrationContext.configure(conn).get_current_revision()
    head = script.get_current_head()
    assert head is not None
    return SchemaStatus(current=current, head=head)


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema to ``revision``; on SQLite, then empty the write-ahead log into the
    database file. A migration that rewrites data (``20261207unquoted`` removes quoted names)
    would otherwise leave the pages as they were readable in the ``-wal`` file until the next
    full checkpoint. (A reader still open makes the checkpoint stop short; it is not waited
    for.)"""
    command.upgrade(alembic_config(url), revision)
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": 0})
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            engine.dispose()
