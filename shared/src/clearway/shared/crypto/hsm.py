"""PKCS#11 key provider: KEKs generated and used inside an HSM (docs/design.md §9).

Each KEK version is an AES-256 secret-key object on the token, labelled
``clearway-kek/<service>`` with the version as its ``CKA_ID`` (4 bytes, big
endian), created with ``CKA_SENSITIVE=true`` and ``CKA_EXTRACTABLE=false``
(PKCS#11 v2.40 §4.4): its value can never be read out. Data keys are wrapped
and unwrapped by ``CKM_AES_GCM`` encrypt/decrypt inside the token. Tests and
``make run`` use SoftHSM2 (:mod:`.softhsm`).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.mechanisms import GCMParams

from clearway.shared.crypto.keys import (
    KeyProvider,
    KeyUnavailable,
    UnwrapFailed,
    version_of,
    wrap_aad,
)

__all__ = ["KEK_TEMPLATE", "HsmProvider", "call_token", "load_library", "version_id"]

#: Attributes of every KEK object: a token object usable only to encrypt/decrypt
#: (wrap the data keys), never readable, never wrapped out.
KEK_TEMPLATE: dict[Any, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.ENCRYPT: True,
    Attribute.DECRYPT: True,
    Attribute.WRAP: False,
    Attribute.UNWRAP: False,
    Attribute.SIGN: False,
    Attribute.VERIFY: False,
    Attribute.MODIFIABLE: False,
}

#: Errors that say the token or its session went away, not that the input is bad.
_DEVICE_ERRORS: tuple[type[BaseException], ...] = (
    p11.DeviceError,
    p11.DeviceMemory,
    p11.DeviceRemoved,
    p11.SessionClosed,
    p11.SessionHandleInvalid,
    p11.TokenNotPresent,
    p11.TokenNotRecognised,
    p11.UserNotLoggedIn,
    p11.NoSuchToken,
    p11.PinIncorrect,
    p11.PinLocked,
    p11.UserAlreadyLoggedIn,
)

_LIBS: dict[str, Any] = {}
_LIBS_LOCK = threading.RLock()


def load_library(module: str) -> Any:
    """The PKCS#11 module at ``module``, loaded once per process (``C_Initialize``)."""
    with _LIBS_LOCK:
        if module not in _LIBS:
            if not os.path.exists(module):
                raise KeyUnavailable(f"PKCS#11 module {module} not found")
            try:
                _LIBS[module] = pkcs11.lib(module)
            except (p11.PKCS11Error, RuntimeError, OSError) as e:
                raise KeyUnavailable(f"PKCS#11 module {module} failed to load: {e!r}") from None
        return _LIBS[module]


@dataclass
class _Shared:
    session: Any
    pin: str
    lock: threading.RLock = field(default_factory=threading.RLock)


#: One logged-in session per token and process: PKCS#11 login state belongs to
#: the application, not the session (PKCS#11 v2.40 §5.6, CKR_USER_ALREADY_LOGGED_IN),
#: and one session runs one operation at a time, hence the lock.
_SESSIONS: dict[tuple[str, str], _Shared] = {}


def _shared_session(module: str, label: str, pin: str) -> _Shared:
    with _LIBS_LOCK:
        shared = _SESSIONS.get((module, label))
        if shared is None:
            token = load_library(module).get_token(token_label=label)
            shared = _SESSIONS[(module, label)] = _Shared(token.open(user_pin=pin, rw=True), pin)
        elif shared.pin != pin:
            raise KeyUnavailable(f"HSM token {label!r}: PIN differs from the logged-in one")
        return shared


def _drop_session(module: str, label: str) -> None:
    with _LIBS_LOCK:
        shared = _SESSIONS.pop((module, label), None)
    if shared is not None:
        try:
            shared.session.close()
        except p11.PKCS11Error:
            pass


def version_id(version: int) -> bytes:
    """The ``CKA_ID`` of a key version: 4 bytes, big endian."""
    return version.to_bytes(4, "big")


def call_token(module: str, label: str, pin: str, fn: Any) -> Any:
    """Run ``fn(session)`` on the shared session of token ``label`` under its lock; a
    device error drops the session (the next call logs in again) and raises
    :class:`KeyUnavailable`."""
    try:
        shared = _shared_session(module, label, pin)
        with shared.lock:
            return fn(shared.session)
    except _DEVICE_ERRORS as e:
        _drop_session(module, label)
        raise KeyUnavailable(f"HSM token {label!r} unavailable ({type(e).__name__})") from None


class HsmProvider(KeyProvider):
    """KEK versions of service ``name`` on the token ``token_label``."""

    kind = "hsm"

    def __init__(self, name: str, *, module: str, token_label: str, pin: str) -> None:
        super().__init__(name)
        self.module, self.token_label = module, token_label
        self._pin = pin
        self._keys: dict[int, Any] = {}

    @property
    def label(self) -> str:
        return f"clearway-kek/{self.name}"

    def _call(self, fn: Any) -> Any:
        """Run ``fn(session)`` under the token's lock; a device error drops the session
        (the next call logs in again) and raises :class:`KeyUnavailable`."""
        try:
            return call_token(self.module, self.token_label, self._pin, fn)
        except KeyUnavailable:
            self._keys = {}
            raise

    def _scan(self, session: Any) -> dict[int, Any]:
        found = session.get_objects(
            {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: self.label}
        )
        return {int.from_bytes(k[Attribute.ID], "big"): k for k in found}

    def versions(self) -> list[int]:
        def scan(session: Any) -> list[int]:
            self._keys = self._scan(session)
            return sorted(self._keys)

        return list(self._call(scan))

    def kek_object(self, version: int) -> Any:
        """The token object of a KEK version (for attribute checks; its value is unreadable)."""
        return version_of(lambda: self._keys, self.versions, self.name, version)

    def wrap(self, version: int, data_key: bytes) -> bytes:
        nonce = os.urandom(12)
        params = GCMParams(nonce, wrap_aad(self.name, version))

        def encrypt(_: Any) -> bytes:
            key = self.kek_object(version)
            return bytes(key.encrypt(data_key, mechanism=Mechanism.AES_GCM, mechanism_param=params))

        return nonce + bytes(self._call(encrypt))

    def unwrap(self, version: int, wrapped: bytes) -> bytes:
        params = GCMParams(wrapped[:12], wrap_aad(self.name, version))

        def decrypt(_: Any) -> bytes:
            key = self.kek_object(version)
            try:
                return bytes(
                    key.decrypt(wrapped[12:], mechanism=Mechanism.AES_GCM, mechanism_param=params)
                )
            except _DEVICE_ERRORS:
                raise
            except p11.PKCS11Error:
                # CKR_ENCRYPTED_DATA_INVALID / a general error: the tag did not verify
                raise UnwrapFailed(
                    f"data key does not authenticate under {self.name} v{version}"
                ) from None

        return bytes(self._call(decrypt))

    def create_version(self) -> int:
        def generate(session: Any) -> int:
            self._keys = self._scan(session)
            version = max(self._keys, default=0) + 1
            self._keys[version] = session.generate_key(
                KeyType.AES,
                256,
                label=self.label,
                id=version_id(version),
                store=True,
                template=KEK_TEMPLATE,
            )
            return version

        return int(self._call(generate))

    def destroy_version(self, version: int) -> None:
        def destroy(session: Any) -> None:
            for key in session.get_objects(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.LABEL: self.label,
                    Attribute.ID: version_id(version),
                }
            ):
                key.destroy()
            self._keys.pop(version, None)

        self._call(destroy)

    def close(self) -> None:
        self._keys = {}  # the token's session is shared by the process (see _shared_session)
