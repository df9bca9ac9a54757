"""Signing-key providers against a real SoftHSM2 token (docs/design.md §9)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as p11

from clearway.shared.crypto.hsm import load_library
from clearway.shared.crypto.hsm_signing import HsmSigningProvider
from clearway.shared.crypto.keys import KeyUnavailable, KeyVersionUnknown
from clearway.shared.crypto.signing import Algorithm, KeyringSigningProvider, SigningProvider
from clearway.shared.crypto.signing_rotation import retire_signing_keys, rotate_signing_key
from clearway.shared.crypto.softhsm import DEFAULT_MODULE, ensure_token
from clearway.shared.db import create_pool, migrate
from clearway.shared.event_writer import EventWriter


def hsm(softhsm: Path, algorithm: Algorithm | None = None) -> HsmSigningProvider:
    name = f"s{uuid.uuid4().hex[:8]}"  # one token per session: keys differ by name
    provider = HsmSigningProvider(
        name,
        module=DEFAULT_MODULE,
        token_label="clearway",
        pin=ensure_token(softhsm, "clearway"),
        algorithm=algorithm,
    )
    provider.ensure()
    return provider


@pytest.fixture(params=["hsm", "hsm-es256", "keyring", "keyring-es256"])
def provider(request: pytest.FixtureRequest, softhsm: Path, tmp_path: Path) -> SigningProvider:
    alg: Algorithm = "ES256" if request.param.endswith("es256") else "Ed25519"
    if request.param.startswith("hsm"):
        return hsm(softhsm, alg)
    p = KeyringSigningProvider(f"s{uuid.uuid4().hex[:8]}", tmp_path, algorithm=alg)
    p.ensure()
    return p


def test_softhsm_signs_with_ed25519_by_default(softhsm: Path) -> None:
    """SoftHSM2 2.6 offers CKM_EC_EDWARDS_KEY_PAIR_GEN and CKM_EDDSA: the checkpoint
    key is Ed25519, not the ECDSA P-256 fallback."""
    provider = hsm(softhsm)
    assert provider.algorithm() == "Ed25519"
    assert provider.public_keys()[provider.primary()].alg == "Ed25519"


@pytest.mark.parametrize("alg", ["Ed25519", "ES256"])
def test_private_keys_are_sensitive_non_extractable_token_objects(
    softhsm: Path, alg: Algorithm
) -> None:
    provider = hsm(softhsm, alg)
    provider.create_version()
    for version in provider.versions():
        key = provider.private_object(version)
        assert key[Attribute.TOKEN] is True
        assert key[Attribute.EXTRACTABLE] is False
        assert key[Attribute.SENSITIVE] is True
        assert key[Attribute.NEVER_EXTRACTABLE] is True
        assert key[Attribute.ALWAYS_SENSITIVE] is True
        with pytest.raises(p11.AttributeSensitive):
            key[Attribute.VALUE]


def test_signatures_verify_with_the_exported_public_key(provider: SigningProvider) -> None:
    v = provider.primary()
    sig = provider.sign(v, b"clearway.audit/v1\n3\n")
    public = provider.public_keys()[v]
    assert len(sig) == 64
    assert public.verifies(b"clearway.audit/v1\n3\n", sig)
    assert not public.verifies(b"clearway.audit/v1\n4\n", sig)
    assert not public.verifies(b"clearway.audit/v1\n3\n", sig[:-1] + bytes([sig[-1] ^ 1]))


def test_rotation_keeps_old_public_keys_and_destroy_removes_only_the_private_key(
    provider: SigningProvider,
) -> None:
    old = provider.primary()
    old_sig = provider.sign(old, b"before")
    new = provider.create_version()
    assert provider.primary() == new > old
    provider.destroy_version(old)
    assert provider.versions() == [new]
    with pytest.raises(KeyVersionUnknown):
        provider.sign(old, b"after")
    assert provider.public_keys()[old].verifies(b"before", old_sig)
    # a destroyed version's number is never handed out again
    assert provider.create_version() == new + 1


def test_a_destroyed_version_is_gone_from_the_token(softhsm: Path) -> None:
    provider = hsm(softhsm)
    old = provider.primary()
    provider.create_version()
    provider.destroy_version(old)
    token = load_library(DEFAULT_MODULE).get_token(token_label="clearway")
    with token.open() as session:  # a second session: login state is the process's
        found = {
            cls: [
                int.from_bytes(o[Attribute.ID], "big")
                for o in session.get_objects(
                    {Attribute.CLASS: cls, Attribute.LABEL: provider.label}
                )
            ]
            for cls in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY)
        }
    assert old not in found[ObjectClass.PRIVATE_KEY]
    assert old in found[ObjectClass.PUBLIC_KEY]  # kept to verify older signatures


def test_a_token_that_is_down_is_key_unavailable(softhsm: Path) -> None:
    with pytest.raises(KeyUnavailable, match="nosuchtoken"):
        HsmSigningProvider("x", module=DEFAULT_MODULE, token_label="nosuchtoken", pin="x").ensure()
    with pytest.raises(KeyUnavailable, match="not found"):
        HsmSigningProvider("x", module="/nonexistent/lib.so", token_label="x", pin="x").ensure()
    with pytest.raises(KeyUnavailable, match="PIN"):
        HsmSigningProvider("x", module=DEFAULT_MODULE, token_label="clearway", pin="no").sign(
            1, b""
        )


async def test_rotation_and_retirement_are_recorded_and_audited(
    admin_dsn: str, softhsm: Path
) -> None:
    await migrate(admin_dsn, schema="signed", service="signed", migrations=[], role_password="x")
    pool = await create_pool(admin_dsn, schema="signed", max_size=2)
    provider = hsm(softhsm)
    events = EventWriter("audit")
    try:
        async with pool.acquire() as conn:
            with pytest.raises(ValueError, match="reason"):
                await rotate_signing_key(conn, provider, events, reason=" ")
            v2 = await rotate_signing_key(conn, provider, events, reason="yearly")
            with pytest.raises(ValueError, match="exceed"):
                await retire_signing_keys(conn, provider, events, below=v2 + 1, reason="x")
            assert await retire_signing_keys(conn, provider, events, below=v2, reason="old") == [1]
            assert provider.versions() == [v2]
            rows = await conn.fetch("SELECT kek, version, destroyed_at FROM kek_versions")
            payloads = [r["payload"] for r in await conn.fetch("SELECT payload FROM outbox")]
    finally:
        await pool.close()
    assert {(r["kek"], r["version"]) for r in rows} == {(f"signing:{provider.name}", v2)}
    assert len(payloads) == 2
    assert all(b"signing" in bytes(p) and provider.name.encode() in bytes(p) for p in payloads)
