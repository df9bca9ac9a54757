"""Endpoint secrets at rest: AES-256-GCM, the endpoint id bound as associated data.

The key comes from settings for now; the envelope under an HSM/KMS key
(docs/design.md §9) arrives with the data protection work.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the webhook secret key must be 32 bytes (AES-256)")
        self._aead = AESGCM(key)

    def seal(self, plaintext: str, endpoint_id: str) -> tuple[bytes, bytes]:
        nonce = os.urandom(12)
        return nonce, self._aead.encrypt(nonce, plaintext.encode(), endpoint_id.encode())

    def open(self, nonce: bytes, ciphertext: bytes, endpoint_id: str) -> str:
        return self._aead.decrypt(nonce, ciphertext, endpoint_id.encode()).decode()
