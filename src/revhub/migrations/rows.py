"""The loop every data migration runs: the rows of a table (those ``where`` picks), a page at
a time in key order, each rewritten where ``change`` says so. Pages keep a large table from
being read into memory at once; key order (not an offset) keeps a page from skipping rows
that the previous page's updates moved."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa

PAGE = 500
Change = Callable[[dict[str, Any]], dict[str, Any]]
"""A row's keys and columns → the columns to write (none: leave the row as it is)."""


def rewrite_rows(
    bind: sa.Connection,
    table: sa.TableClause,
    keys: tuple[str, ...],
    columns: list[str],
    change: Change,
    *,
    where: Any = None,
) -> None:
    for row in _pages(bind, table, keys, columns, where):
        written = change(row)
        if written:
            match = sa.and_(*(table.c[k] == row[k] for k in keys))
            bind.execute(sa.update(table).where(match).values(written))


def _pages(
    bind: sa.Connection,
    table: sa.TableClause,
    keys: tuple[str, ...],
    columns: list[str],
    where: Any,
) -> Iterator[dict[str, Any]]:
    order = [table.c[k] for k in keys]
    after: tuple[Any, ...] | None = None
    while True:
        query = sa.select(*order, *(table.c[c] for c in columns)).order_by(*order).limit(PAGE)
        if where is not None:
            query = query.where(where)
        if after is not None:
            query = query.where(sa.tuple_(*order) > sa.tuple_(*after))
        rows = [dict(r._mapping) for r in bind.execute(query)]
        yield from rows
        if len(rows) < PAGE:
            return
        after = tuple(rows[-1][k] for k in keys)
