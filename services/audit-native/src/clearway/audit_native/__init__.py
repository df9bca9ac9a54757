"""The audit log's compiled verification loop (docs/design.md §8, ADR 0041, ADR 0050).

:func:`hash_block` reads one block of binary COPY rows, reproduces every leaf hash
and folds the leaves into their RFC 9162 compact range in a single call that
releases the GIL; ``clearway.audit.blocks`` uses it and keeps the pure-Python
path, which gives the same results and names the failure when this returns None.
:func:`connect` opens a libpq :class:`Connection` whose ``copy_hash`` receives a
block's COPY with the GIL released too and checks its rows as they arrive (the same
walk, in C), so reader threads overlap with Postgres producing the stream (ADR 0050).
"""

from clearway.audit_native._copy import Connection, CopyData, PgError, connect
from clearway.audit_native._native import hash_block

#: What the compiled loop returns: the leaf hashes concatenated, the block's compact
#: range and the compact range of each inner prefix; None when the data deviates.
Checked = tuple[bytes, list[bytes], list[list[bytes]]] | None

__all__ = ["Checked", "Connection", "CopyData", "PgError", "connect", "hash_block"]
