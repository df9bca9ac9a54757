"""SQL of KEK rotation and re-wrap (docs/design.md §9): versions, cursors, sealed columns.

Sealed columns are named by the service (:class:`~.rotation.SealedColumn`), never
by a request, and quoted as identifiers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from clearway.shared.db import ident


async def lock_kek(conn: asyncpg.Connection, kek: str) -> None:
    """One rotation or retirement of ``kek`` at a time (transaction-scoped advisory lock)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('kek:' || $1))", kek)


async def record_version(conn: asyncpg.Connection, kek: str, version: int) -> None:
    await conn.execute(
        "INSERT INTO kek_versions (kek, version) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        kek,
        version,
    )


async def newest_version_at(conn: asyncpg.Connection, kek: str) -> datetime | None:
    value: datetime | None = await conn.fetchval(
        "SELECT max(created_at) FROM kek_versions WHERE kek = $1 AND destroyed_at IS NULL", kek
    )
    return value


async def versions(conn: asyncpg.Connection, kek: str) -> list[Any]:
    """Every recorded version of ``kek``: ``version``, ``created_at``, ``destroyed_at``."""
    return list(
        await conn.fetch(
            "SELECT version, created_at, destroyed_at FROM kek_versions WHERE kek = $1"
            " ORDER BY version",
            kek,
        )
    )


async def mark_destroyed(conn: asyncpg.Connection, kek: str, versions: Sequence[int]) -> None:
    await conn.execute(
        "UPDATE kek_versions SET destroyed_at = now() WHERE kek = $1 AND version = ANY($2)",
        kek,
        list(versions),
    )


async def id_type(conn: asyncpg.Connection, table: str, id_column: str) -> str:
    """The SQL type of a sealed table's id column (the cursor is kept as text)."""
    value: str | None = await conn.fetchval(
        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
        " WHERE a.attrelid = to_regclass($1) AND a.attname = $2",
        table,
        id_column,
    )
    if value is None:
        raise LookupError(f"no column {table}.{id_column}")
    return value


async def cursor(conn: asyncpg.Connection, table: str, column: str) -> Any:
    return await conn.fetchrow(
        "SELECT target, last_id, rewrapped, done_at FROM kek_rewrap_cursors"
        " WHERE table_name = $1 AND column_name = $2",
        table,
        column,
    )


async def save_cursor(
    conn: asyncpg.Connection,
    table: str,
    column: str,
    target: int,
    last_id: str | None,
    rewrapped: int,
    done: bool,
) -> None:
    await conn.execute(
        "INSERT INTO kek_rewrap_cursors"
        " (table_name, column_name, target, last_id, rewrapped, done_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, CASE WHEN $6 THEN now() END, now())"
        " ON CONFLICT (table_name, column_name) DO UPDATE SET target = $3, last_id = $4,"
        " rewrapped = $5, done_at = CASE WHEN $6 THEN now() END, updated_at = now()",
        table,
        column,
        target,
        last_id,
        rewrapped,
        done,
    )


async def sealed_batch(
    conn: asyncpg.Connection,
    table: str,
    column: str,
    id_column: str,
    kind: str,
    after: str | None,
    limit: int,
) -> list[Any]:
    """``(id as text, sealed)`` rows after the cursor, in id order."""
    t, c, i = ident(table), ident(column), ident(id_column)
    return list(
        await conn.fetch(
            f"SELECT {i}::text AS id, {c} AS sealed FROM {t}"
            f" WHERE {c} IS NOT NULL AND ($1::text IS NULL OR {i} > CAST($1 AS {kind}))"
            f" ORDER BY {t}.{i} LIMIT $2",  # the column, not the text alias
            after,
            limit,
        )
    )


async def replace_sealed(
    conn: asyncpg.Connection,
    table: str,
    column: str,
    id_column: str,
    kind: str,
    rows: Sequence[tuple[str, bytes, bytes]],
) -> int:
    """Swap each ``(id, old, new)`` blob unless the row changed meanwhile (compare-and-set)."""
    if not rows:
        return 0
    t, c, i = ident(table), ident(column), ident(id_column)
    ids, old, new = (list(x) for x in zip(*rows, strict=True))
    status: str = await conn.execute(
        f"UPDATE {t} SET {c} = v.new"
        " FROM unnest($1::text[], $2::bytea[], $3::bytea[]) AS v(id, old, new)"
        f" WHERE {t}.{i} = CAST(v.id AS {kind}) AND {t}.{c} = v.old",
        ids,
        old,
        new,
    )
    return int(status.split()[-1])


async def count_below(
    conn: asyncpg.Connection, table: str, column: str, kek: str, version: int
) -> int:
    """Sealed values of ``table.column`` whose data key is wrapped under a version below
    ``version`` (the header's version field sits after ``CWE\\x01``, the name length and
    the name: see :mod:`.envelope`)."""
    t, c = ident(table), ident(column)
    offset = 6 + len(kek.encode())  # 1-based substring position of the u32 version
    value: int = await conn.fetchval(
        f"SELECT count(*) FROM {t} WHERE {c} IS NOT NULL"
        f" AND ('x' || encode(substring({c} from {offset} for 4), 'hex'))::bit(32)::int < $1",
        version,
    )
    return value
