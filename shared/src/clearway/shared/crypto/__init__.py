"""Keys and envelope encryption of data at rest (docs/design.md §9)."""

from clearway.shared.crypto.envelope import (
    BatchPolicy,
    Context,
    DekCache,
    Envelope,
    RecordUnreadable,
)
from clearway.shared.crypto.keys import KeyProvider, KeyUnavailable, KeyVersionUnknown

__all__ = [
    "BatchPolicy",
    "Context",
    "DekCache",
    "Envelope",
    "KeyProvider",
    "KeyUnavailable",
    "KeyVersionUnknown",
    "RecordUnreadable",
]
