"""Signed retention cuts: what retention removed, as a statement signed with the audit key
(docs/design.md §8; pure).

A cut says: positions ``[0, size)`` are gone; their compact range is ``frontier``;
it derives from the signed checkpoint at ``checkpoint_size`` (equal to ``size``:
the frontier's root must be that checkpoint's signed root); the partitions named
were dropped. The signed body is the origin line ``clearway.audit/retention-cut/v1``
followed by the RFC 8785 JSON of those fields, so it can never pass for a
checkpoint note (whose origin line is ``clearway.audit/v1``) and any verifier can
rebuild it byte for byte.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from clearway.audit.domain import canonical
from clearway.audit.signing import Keyring

CUT_ORIGIN = b"clearway.audit/retention-cut/v1\n"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class RetentionCut:
    size: int
    frontier: list[bytes]
    checkpoint_size: int
    checkpoint_root: bytes
    partitions: tuple[str, ...]
    operator: str
    reason: str
    cut_at: datetime
    key_id: str = ""
    signature: bytes = b""

    def body(self) -> bytes:
        """The exact bytes the signature covers."""
        millis = (self.cut_at - _EPOCH) // timedelta(milliseconds=1)
        doc = {
            "cut_size": self.size,
            "frontier": [base64.b64encode(h).decode() for h in self.frontier],
            "checkpoint": {
                "tree_size": self.checkpoint_size,
                "root_hash": base64.b64encode(self.checkpoint_root).decode(),
            },
            "partitions_dropped": list(self.partitions),
            "operator": self.operator,
            "reason": self.reason,
            "cut_at": millis,
        }
        return CUT_ORIGIN + canonical(doc)


def sign_cut(keyring: Keyring, cut: RetentionCut) -> RetentionCut:
    """``cut`` signed with the keyring's active key (time kept to the millisecond,
    which is what the body carries)."""
    at = cut.cut_at.astimezone(UTC)
    cut = replace(cut, cut_at=at.replace(microsecond=at.microsecond // 1000 * 1000))
    kid, sig = keyring.sign_note(cut.body())
    return replace(cut, key_id=kid, signature=sig)


def cut_verifies(keyring: Keyring, cut: RetentionCut) -> bool:
    """Whether the cut's signature is valid under a key of ``keyring``."""
    return bool(cut.signature) and keyring.verifies_note(cut.key_id, cut.body(), cut.signature)
