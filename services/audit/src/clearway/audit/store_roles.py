"""The audit schema's two runtime roles (docs/design.md §8, ADR 0014).

``clearway_audit`` ingests: it may read everything and insert records (and the
kit's inbox/outbox rows), but not checkpoints, retention cuts or stored subtrees.
``clearway_audit_signer`` writes signed statements: it reads the records it signs
over and inserts checkpoints, cuts, the subtrees proofs are built from and their
outbox announcements; it cannot insert records. Run as the owner right after the
kit's ``migrate``, which grants the service role ``SELECT, INSERT`` on every table
of the schema.
"""

from __future__ import annotations

import asyncpg

from clearway.shared.db import ident, role_name, rotated_roles

#: the signer's role is ``clearway_audit_signer`` (with rotated logins: their group)
SIGNER_ROLE = "audit_signer"
SIGNED_TABLES = ("checkpoints", "retention_cuts", "subtrees")


async def configure_roles(
    conn: asyncpg.Connection, schema: str, signer_password: str | None
) -> None:
    """Create the signer role if needed and narrow both roles' rights (idempotent).

    ``signer_password=None``: the signer's logins rotate like the service's
    (docs/design.md §9): ``clearway_audit_signer`` becomes a ``NOLOGIN`` group of
    two alternating login roles, whose passwords ``db_credentials`` keeps sealed."""
    s = ident(schema)
    service, signer = ident(role_name("audit")), ident(role_name(SIGNER_ROLE))
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"migrate:{schema}")
        exists = await conn.fetchval(
            "SELECT 1 FROM pg_roles WHERE rolname = $1", role_name(SIGNER_ROLE)
        )
        if signer_password is None:
            await rotated_roles(conn, SIGNER_ROLE, exists=bool(exists))
        elif not exists:
            quoted = signer_password.replace("'", "''")
            await conn.execute(f"CREATE ROLE {signer} LOGIN PASSWORD '{quoted}'")
        tables = ", ".join(f"{s}.{ident(t)}" for t in SIGNED_TABLES)
        await conn.execute(f"REVOKE INSERT ON {tables} FROM {service}")
        await conn.execute(f"GRANT UPDATE ON {s}.verification_jobs TO {service}")
        await conn.execute(f"GRANT USAGE ON SCHEMA {s} TO {signer}")
        await conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM {signer}")
        await conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {signer}")
        # the sealed login passwords are the admin's only (as for the service role)
        await conn.execute(f"REVOKE ALL ON {s}.db_credentials FROM {signer}")
        await conn.execute(f"GRANT INSERT ON {tables}, {s}.outbox TO {signer}")
        await conn.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {s} TO {signer}")
