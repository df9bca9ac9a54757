"""Repository of the retention job: the log's monthly partitions and the cuts that
replace a dropped partition's leaves (see :mod:`clearway.audit.retention`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from clearway.shared.db import ident

_BOUND = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


@dataclass(frozen=True)
class Partition:
    name: str
    lower: datetime
    upper: datetime


async def partitions(conn: asyncpg.Connection) -> list[Partition]:
    """The partitions of ``records``, oldest range first."""
    rows = await conn.fetch(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound"
        " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'records'::regclass"
    )
    out = []
    for r in rows:
        m = _BOUND.search(r["bound"])
        if m:
            lo = await conn.fetchval("SELECT $1::text::timestamptz", m.group(1))
            hi = await conn.fetchval("SELECT $1::text::timestamptz", m.group(2))
            out.append(Partition(r["relname"], lo, hi))
    return sorted(out, key=lambda p: p.lower)


async def last_position(conn: asyncpg.Connection, part: Partition) -> int | None:
    """The highest log position stored in one partition (None when it is empty)."""
    value = await conn.fetchval(f"SELECT max(position) FROM {ident(part.name)}")
    return None if value is None else int(value)


async def recorded_since_before(conn: asyncpg.Connection, size: int, since: datetime) -> int:
    """Records before log position ``size`` recorded at or after ``since``: non-zero means
    the partition is not a prefix of the log."""
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM records WHERE position < $1 AND recorded_at >= $2", size, since
        )
    )


async def drop_partition(conn: asyncpg.Connection, part: Partition) -> None:
    await conn.execute(f"DROP TABLE {ident(part.name)}")
