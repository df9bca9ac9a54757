"""Blocks of the audit log read as binary COPY through libpq, off the event loop
(docs/design.md §8, ADR 0050).

A verification run's reader threads each hold one :class:`clearway.audit_native.Connection`
(libpq) and receive a block with the GIL released, inside the run's exported
snapshot. The connection parameters are those of the service's DSN (the ingest
role's rotated login, TLS settings included), mapped keyword by keyword
(:func:`libpq_params`): no conninfo string with the password is ever built, and
neither the DSN nor the password appears in an error.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import parse_qsl, unquote, urlsplit

from clearway.audit.store import SNAPSHOT_ID
from clearway.audit_native import Checked, Connection, CopyData, connect

#: The most bytes one block's COPY may send (the data is hostile input: a bound on
#: what it can make a reader allocate); a block of 32,768 records is ~20 MB.
COPY_LIMIT = 1 << 30
#: Query parameters of a DSN that libpq and asyncpg read alike (TLS, timeouts).
PASSED_THROUGH = frozenset(
    {
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslcrl",
        "sslpassword",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "connect_timeout",
        "target_session_attrs",
        "passfile",
        "application_name",
        "host",
        "port",
        "user",
        "password",
        "dbname",
    }
)
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]*$")


def libpq_params(dsn: str, schema: str) -> dict[str, str]:
    """libpq connection keywords for a ``postgresql://`` DSN, on ``schema``'s search path.

    Hosts and ports may be lists (``h1:5432,h2:5433``), as both libraries accept.
    A query parameter libpq would not read the same way is refused by name (the
    value, which may be a secret, is never repeated)."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError("the database DSN must be a postgresql:// URL")
    if not _SCHEMA.match(schema):
        raise ValueError("not a schema name")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    params: dict[str, str] = {}
    if userinfo:
        user, colon, password = userinfo.partition(":")
        if user:
            params["user"] = unquote(user)
        if colon:
            params["password"] = unquote(password)
    hosts, ports = [], []
    for item in filter(None, hostlist.split(",")):
        if item.startswith("["):  # [IPv6]:port
            host, _, rest = item[1:].partition("]")
            port = rest.removeprefix(":")
        else:
            host, _, port = item.partition(":")
        hosts.append(unquote(host))
        ports.append(port)
    if hosts:
        params["host"] = ",".join(hosts)
    if any(ports):
        params["port"] = ",".join(ports)
    if parts.path.strip("/"):
        params["dbname"] = unquote(parts.path.lstrip("/"))
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in PASSED_THROUGH:
            raise ValueError(f"database DSN parameter {key!r} is not supported by the COPY reader")
        params[key] = value
    params["options"] = f"-c search_path={schema}"
    params.setdefault("application_name", "clearway-audit-verification")
    return params


def open_reader(dsn: str, schema: str) -> Connection:
    """A libpq connection as the DSN's login (``PgError`` when it cannot connect)."""
    return connect(libpq_params(dsn, schema))


def copy_block(
    conn: Connection, snapshot: str | None, start: int, stop: int, sizes: Sequence[int] = ()
) -> tuple[CopyData | None, Checked]:
    """What the compiled loop finds checking the binary COPY of ``(position, leaf_hash,
    content)`` of ``[start, stop)`` as it arrives (``sizes``: the inner prefixes, sorted,
    no repeats; see :func:`clearway.audit_native.hash_block`), in a read-only
    repeatable-read transaction that imports ``snapshot``; and, only when it finds a
    deviation, the block's bytes read again in that transaction, for the pure-Python
    path to name it. Blocks the calling thread (not the GIL): call it from a reader
    thread."""
    if snapshot is not None and not SNAPSHOT_ID.match(snapshot):
        raise ValueError("not a snapshot id")
    first, last = int(start), int(stop)  # integers only reach the SQL text
    sql = (
        "COPY (SELECT position, leaf_hash, content FROM records"
        f" WHERE position >= {first} AND position < {last}) TO STDOUT (FORMAT binary)"
    )
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        if snapshot is not None:
            conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        checked = conn.copy_hash(sql, COPY_LIMIT, first, last, sizes)
        data = conn.copy_out(sql, COPY_LIMIT) if checked is None else None
    except BaseException:
        if conn.ok:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return data, checked
