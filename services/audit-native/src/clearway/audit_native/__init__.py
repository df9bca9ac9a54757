"""The audit log's compiled verification loop (docs/design.md §8, ADR 0041, ADR 0050).

:func:`hash_block` reads one block of binary COPY rows, reproduces every leaf hash
and folds the leaves into their RFC 9162 compact range in a single call that
releases the GIL; ``clearway.audit.blocks`` uses it and keeps the pure-Python
path, which gives the same results and names the failure when this returns None.
:func:`connect` opens a libpq :class:`Connection` whose ``copy_out`` receives a
block's COPY with the GIL released too, so threads read and hash blocks in parallel.
"""

from clearway.audit_native._copy import Connection, CopyData, PgError, connect
from clearway.audit_native._native import hash_block

__all__ = ["Connection", "CopyData", "PgError", "connect", "hash_block"]
