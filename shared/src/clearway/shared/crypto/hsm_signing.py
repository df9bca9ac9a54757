"""PKCS#11 signing-key provider: private keys generated and used inside an HSM
(docs/design.md §9).

Each version is a key pair on the token labelled ``clearway-sig/<name>`` with the
version as its ``CKA_ID`` (as the KEKs of :mod:`.hsm`). The private key is created
by ``C_GenerateKeyPair`` with ``CKA_SENSITIVE=true``, ``CKA_EXTRACTABLE=false``,
``CKA_TOKEN=true`` (PKCS#11 v2.40 §4.9): it signs inside the token and can never
be read out. The public key is a token object too, and stays when a version is
retired: only the private key is destroyed.

The algorithm is Ed25519 (``CKM_EC_EDWARDS_KEY_PAIR_GEN`` + ``CKM_EDDSA``, PKCS#11
v3.0 §2.3.14, which SoftHSM2 2.6 implements) where the token offers both
mechanisms, else ECDSA P-256 (``CKM_EC_KEY_PAIR_GEN`` + ``CKM_ECDSA`` over a
SHA-256 digest computed here: tokens such as SoftHSM2 lack ``CKM_ECDSA_SHA256``).
Each version keeps the algorithm it was made with (its ``CKA_KEY_TYPE``).
"""

from __future__ import annotations

import hashlib
from typing import Any

from asn1crypto.core import OctetString
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from clearway.shared.crypto.hsm import call_token, version_id
from clearway.shared.crypto.keys import KeyUnavailable, KeyVersionUnknown
from clearway.shared.crypto.signing import Algorithm, PublicKey, SigningProvider

__all__ = ["PRIVATE_TEMPLATE", "PUBLIC_TEMPLATE", "HsmSigningProvider"]

#: Attributes of every private signing key: a token object that only signs, never
#: readable, never wrapped out.
PRIVATE_TEMPLATE: dict[Any, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.SIGN: True,
    Attribute.DECRYPT: False,
    Attribute.UNWRAP: False,
    Attribute.DERIVE: False,
    Attribute.MODIFIABLE: False,
}
#: The public half: a token object kept after the private key is destroyed.
PUBLIC_TEMPLATE: dict[Any, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: False,
    Attribute.VERIFY: True,
    Attribute.ENCRYPT: False,
    Attribute.WRAP: False,
    Attribute.DERIVE: False,
    Attribute.MODIFIABLE: False,
}

#: curve (named by OID or name), key type and key-pair mechanism of each algorithm
_PAIRS: dict[Algorithm, tuple[str, KeyType, Mechanism]] = {
    "Ed25519": ("1.3.101.112", KeyType.EC_EDWARDS, Mechanism.EC_EDWARDS_KEY_PAIR_GEN),  # RFC 8410
    "ES256": ("secp256r1", KeyType.EC, Mechanism.EC_KEY_PAIR_GEN),
}


class HsmSigningProvider(SigningProvider):
    """Signing key pairs of purpose ``name`` on the token ``token_label``.

    ``algorithm`` forces one (``ES256`` for a JWS issuer that wants it); by default
    the token's best: Ed25519 when supported, else ES256.
    """

    kind = "hsm"

    def __init__(
        self,
        name: str,
        *,
        module: str,
        token_label: str,
        pin: str,
        algorithm: Algorithm | None = None,
    ) -> None:
        super().__init__(name)
        self.module, self.token_label = module, token_label
        self._pin = pin
        self._algorithm = algorithm
        self._private: dict[int, Any] = {}

    @property
    def label(self) -> str:
        return f"clearway-sig/{self.name}"

    def _call(self, fn: Any) -> Any:
        try:
            return call_token(self.module, self.token_label, self._pin, fn)
        except KeyUnavailable:
            # the session was dropped: its object handles are stale (as in .hsm)
            self._private = {}
            raise

    def _find(self, session: Any, cls: ObjectClass, version: int | None = None) -> dict[int, Any]:
        query = {Attribute.CLASS: cls, Attribute.LABEL: self.label}
        if version is not None:
            query[Attribute.ID] = version_id(version)
        return {int.from_bytes(o[Attribute.ID], "big"): o for o in session.get_objects(query)}

    def algorithm(self) -> Algorithm:
        """The algorithm new versions get (the forced one, or the token's best)."""
        if self._algorithm is None:

            def probe(session: Any) -> Algorithm:
                offered = session.token.slot.get_mechanisms()
                eddsa = {Mechanism.EC_EDWARDS_KEY_PAIR_GEN, Mechanism.EDDSA} <= offered
                return "Ed25519" if eddsa else "ES256"

            self._algorithm = self._call(probe)
        assert self._algorithm is not None
        return self._algorithm

    def versions(self) -> list[int]:
        def scan(session: Any) -> list[int]:
            self._private = self._find(session, ObjectClass.PRIVATE_KEY)
            return sorted(self._private)

        return list(self._call(scan))

    def private_object(self, version: int) -> Any:
        """The token object of a private key (for attribute checks; its value is unreadable)."""
        key = self._private.get(version)
        if key is None:
            self.versions()
            key = self._private.get(version)
        if key is None:
            raise KeyVersionUnknown(self.name, version)
        return key

    def public_keys(self) -> dict[int, PublicKey]:
        def read(session: Any) -> dict[int, PublicKey]:
            return {v: _public(o) for v, o in self._find(session, ObjectClass.PUBLIC_KEY).items()}

        return dict(self._call(read))

    def sign(self, version: int, data: bytes) -> bytes:
        def sign(_: Any) -> bytes:
            key = self.private_object(version)
            if key.key_type == KeyType.EC_EDWARDS:
                return bytes(key.sign(data, mechanism=Mechanism.EDDSA))
            return bytes(key.sign(hashlib.sha256(data).digest(), mechanism=Mechanism.ECDSA))

        return bytes(self._call(sign))

    def create_version(self) -> int:
        alg = self.algorithm()

        def generate(session: Any) -> int:
            made = set(self._find(session, ObjectClass.PUBLIC_KEY)) | set(
                self._find(session, ObjectClass.PRIVATE_KEY)
            )
            version = max(made, default=0) + 1  # never reuse a number, even destroyed
            curve, kind, mech = _PAIRS[alg]
            params = session.create_domain_parameters(
                kind, {Attribute.EC_PARAMS: encode_named_curve_parameters(curve)}, local=True
            )
            _, private = params.generate_keypair(
                mechanism=mech,
                store=True,
                label=self.label,
                id=version_id(version),
                public_template=PUBLIC_TEMPLATE,
                private_template=PRIVATE_TEMPLATE,
            )
            self._private[version] = private
            return version

        return int(self._call(generate))

    def destroy_version(self, version: int) -> None:
        def destroy(session: Any) -> None:
            for key in self._find(session, ObjectClass.PRIVATE_KEY, version).values():
                key.destroy()
            self._private.pop(version, None)

        self._call(destroy)

    def close(self) -> None:
        self._private = {}  # the token's session is shared by the process (see .hsm)


def _public(obj: Any) -> PublicKey:
    """The public key of a token object: ``CKA_EC_POINT`` is a DER OCTET STRING
    holding the raw Ed25519 key or the uncompressed P-256 point (PKCS#11 v3.0 §2.3.3)."""
    point = bytes(OctetString.load(bytes(obj[Attribute.EC_POINT])).native)
    return PublicKey("Ed25519" if obj.key_type == KeyType.EC_EDWARDS else "ES256", point)
