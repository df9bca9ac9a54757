"""Signing-key rotation with the KEKs' machinery (docs/design.md §9).

The same steps as :mod:`.rotation`, without a re-wrap (a signature is never
re-made): :func:`rotate_signing_key` adds a version that signs from now on (on
demand, with a reason), :func:`rotate_signing_key_if_due` does it on a schedule,
:func:`retire_signing_keys` destroys the private keys below a minimum version in
the HSM while every public key stays for verifying older signatures;
:func:`retire_signing_keys_after_overlap` does that on a schedule once the primary
version has signed beside the older ones for an overlap window, and
:func:`signing_versions` lists the live versions with their times (what a
published key set shows). Versions
are recorded in the kit's ``kek_versions`` table as ``signing:<name>``; each step
emits an audited ``platform.key_rotated`` event with ``key_use: signing``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from clearway.shared.actor import Actor
from clearway.shared.crypto import store_keys
from clearway.shared.crypto.rotation import emit_key_rotated
from clearway.shared.crypto.signing import PublicKey, SigningProvider
from clearway.shared.event_writer import EventWriter

__all__ = [
    "SigningVersion",
    "retire_signing_keys",
    "retire_signing_keys_after_overlap",
    "rotate_signing_key",
    "rotate_signing_key_if_due",
    "signing_versions",
]


def _record(provider: SigningProvider) -> str:
    return f"signing:{provider.name}"


async def _rotate(
    conn: asyncpg.Connection,
    provider: SigningProvider,
    events: EventWriter,
    reason: str,
    actor: Actor | None,
) -> int:
    version = provider.create_version()
    await store_keys.record_version(conn, _record(provider), version)
    await emit_key_rotated(
        conn,
        events,
        provider.name,
        provider.kind,
        "rotated",
        version,
        (),
        reason,
        actor,
        key_use="signing",
    )
    return version


async def rotate_signing_key(
    conn: asyncpg.Connection,
    provider: SigningProvider,
    events: EventWriter,
    *,
    reason: str,
    actor: Actor | None = None,
) -> int:
    """A new signing version, primary at once; returns it. The event commits with the
    record of the version; the HSM key pair exists before (an unused one is harmless)."""
    if not reason.strip():
        raise ValueError("a key rotation needs a reason")
    async with conn.transaction():
        await store_keys.lock_kek(conn, _record(provider))
        return await _rotate(conn, provider, events, reason, actor)


async def rotate_signing_key_if_due(
    conn: asyncpg.Connection, provider: SigningProvider, events: EventWriter, interval: timedelta
) -> int | None:
    """The scheduled rotation: a new version when the newest one is older than ``interval``
    (the first start records the version the provider created)."""
    name = _record(provider)
    async with conn.transaction():
        await store_keys.lock_kek(conn, name)
        newest = await store_keys.newest_version_at(conn, name)
        if newest is None:
            await store_keys.record_version(conn, name, provider.primary())
            return None
        if datetime.now(UTC) - newest < interval:
            return None
        return await _rotate(conn, provider, events, "scheduled rotation", None)


async def retire_signing_keys(
    conn: asyncpg.Connection,
    provider: SigningProvider,
    events: EventWriter,
    *,
    below: int,
    reason: str,
    actor: Actor | None = None,
    among: Collection[int] | None = None,
) -> list[int]:
    """Destroy in the HSM the private key of every version below ``below`` (never the
    primary one); their public keys stay. ``among`` narrows it to the versions a
    service's own records name (the consent service retires each token key once its
    overlap ended). Returns the destroyed versions."""
    if not reason.strip():
        raise ValueError("retiring key versions needs a reason")
    if below > provider.primary():
        raise ValueError(f"{provider.name}: the minimum version cannot exceed the primary one")
    name = _record(provider)
    async with conn.transaction():
        await store_keys.lock_kek(conn, name)
        doomed = [v for v in provider.versions() if v < below and (among is None or v in among)]
        if not doomed:
            return []
        await store_keys.mark_destroyed(conn, name, doomed)
        await emit_key_rotated(
            conn,
            events,
            provider.name,
            provider.kind,
            "retired",
            below,
            doomed,
            reason,
            actor,
            key_use="signing",
        )
        for v in doomed:  # last: the transaction only commits once they are gone
            provider.destroy_version(v)
    return doomed


@dataclass(frozen=True)
class SigningVersion:
    """A live signing version: its public key, when it was recorded (``None`` before the
    first scheduled check records a version the provider made on first start) and,
    once a newer version signs, when its private key is due for destruction."""

    version: int
    public_key: PublicKey
    created_at: datetime | None
    retire_after: datetime | None


async def signing_versions(
    conn: asyncpg.Connection, provider: SigningProvider, overlap: timedelta
) -> list[SigningVersion]:
    """The versions whose private key is live, oldest first; each but the newest is due
    for retirement ``overlap`` after the next one was made."""
    live = provider.versions()
    public = provider.public_keys()
    made = {
        r["version"]: r["created_at"] for r in await store_keys.versions(conn, _record(provider))
    }
    out = []
    for i, v in enumerate(live):
        successor = made.get(live[i + 1]) if i + 1 < len(live) else None
        retire = successor + overlap if successor is not None else None
        out.append(SigningVersion(v, public[v], made.get(v), retire))
    return out


async def retire_signing_keys_after_overlap(
    conn: asyncpg.Connection, provider: SigningProvider, events: EventWriter, overlap: timedelta
) -> list[int]:
    """The scheduled retirement: once the primary version was made more than ``overlap``
    ago, destroy the private keys of the older versions (audited, as
    :func:`retire_signing_keys`). Returns the destroyed versions."""
    live = provider.versions()
    if len(live) < 2:
        return []
    made = {
        r["version"]: r["created_at"] for r in await store_keys.versions(conn, _record(provider))
    }
    created = made.get(live[-1])
    if created is None or datetime.now(UTC) - created < overlap:
        return []
    return await retire_signing_keys(
        conn, provider, events, below=live[-1], reason="scheduled retirement: overlap ended"
    )
