"""The v1a (Ed25519) signing key lives in the HSM and rotates without downtime: during
the overlap every delivery is signed by the old and the new key, partners verify with
either, and after retirement only the new key signs (docs/design.md §6, §9)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import datetime

import pytest
from clearway_webhook_verify import InvalidSignature, Verifier, signing_keys
from pkcs11 import Attribute

from clearway.webhooks.settings import V1A_KEY

pytestmark = pytest.mark.integration


async def keys_cli(platform, *args: str) -> str:
    """``clearway-keys webhooks ...`` as an operator runs it, against the test's database."""
    env = {
        **os.environ,
        "CLEARWAY_DATABASE_URL": platform.database_url,
        "CLEARWAY_TOPIC_PREFIX": platform.topic_prefix,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "clearway.shared.crypto.cli",
        "webhooks",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    return out.decode()


def v1a_signatures(headers: dict[str, str]) -> list[str]:
    return [s for s in headers["webhook-signature"].split(" ") if s.startswith("v1a,")]


async def key_rotated_events(pool) -> list[dict]:  # type: ignore[no-untyped-def]
    rows = await pool.fetch(
        "SELECT payload FROM outbox WHERE headers::text LIKE '%platform.key_rotated%' ORDER BY id"
    )
    return [d for d in (json.loads(bytes(r["payload"])) for r in rows) if d["kek"] == V1A_KEY]


async def test_rotation_signs_with_both_keys_during_the_overlap_then_only_the_new_one(
    service_factory, settings, receiver_factory, publish, make_event, eventually, platform
):
    # the relay stays off so that the audited events remain in the outbox to be read
    service = await service_factory(settings.replace(v1a_refresh_s=0.2, run_relay=False))
    v1a = service.app.state.ctx.v1a
    receiver = await receiver_factory()
    endpoint = await service.create_endpoint(receiver.url, ed25519_signatures=True)
    assert endpoint["ed25519_signatures"] is True
    [first] = (await service.http.get("/v1/webhooks/signing-keys")).json()["keys"]
    assert (first["kty"], first["crv"], first["alg"]) == ("OKP", "Ed25519", "EdDSA")
    assert first["retire_after"] is None and first["kid"].startswith("whk_")
    old = signing_keys({"keys": [first]})

    async def delivered(n: int, run: str) -> dict[str, str]:
        await publish([make_event(n, run=run)])
        await eventually(lambda: len(receiver.requests) == n)
        return receiver.requests[-1].__dict__

    one = await delivered(1, "before")
    assert len(v1a_signatures(one["headers"])) == 1
    Verifier(old).verify(one["body"], one["headers"])

    out = await keys_cli(
        platform, "rotate", "--key", V1A_KEY, "--reason", "yearly drill", "--operator", "alice"
    )
    assert "signs" in out
    await eventually(lambda: len(v1a.live) == 2, timeout=30)
    ring = (await service.http.get("/v1/webhooks/signing-keys")).json()["keys"]
    assert len(ring) == 2 and ring[0]["kid"] == first["kid"]
    newer = ring[1]
    assert newer["retire_after"] is None
    overlap = datetime.fromisoformat(ring[0]["retire_after"]) - datetime.fromisoformat(
        newer["created_at"]
    )
    assert overlap.total_seconds() == service.settings.v1a_overlap_s
    new = signing_keys({"keys": [newer]})

    # the overlap: two v1a signatures; a partner holding either key alone accepts them
    two = await delivered(2, "overlap")
    assert len(v1a_signatures(two["headers"])) == 2
    Verifier(old).verify(two["body"], two["headers"])
    Verifier(new).verify(two["body"], two["headers"])

    new_version = v1a.live[-1]
    await keys_cli(
        platform,
        "retire",
        "--key",
        V1A_KEY,
        "--below",
        str(new_version),
        "--reason",
        "partners switched",
        "--operator",
        "alice",
    )
    await eventually(lambda: v1a.live == [new_version], timeout=30)
    three = await delivered(3, "after")
    assert len(v1a_signatures(three["headers"])) == 1
    Verifier(new).verify(three["body"], three["headers"])
    with pytest.raises(InvalidSignature):
        Verifier(old).verify(three["body"], three["headers"])
    ring = (await service.http.get("/v1/webhooks/signing-keys")).json()["keys"]
    assert [k["kid"] for k in ring] == [newer["kid"]]

    # in the HSM: the old private key is destroyed (its public key stays); the new one
    # is a sensitive token object that can never be read out
    provider = v1a.provider
    assert provider.versions() == [new_version]
    assert set(provider.public_keys()) >= {new_version - 1, new_version}
    private = provider.private_object(new_version)
    assert private[Attribute.SENSITIVE] is True
    assert private[Attribute.EXTRACTABLE] is False
    assert private[Attribute.NEVER_EXTRACTABLE] is True

    # both steps audited with the operator and the reason
    events = await key_rotated_events(service.pool)
    assert [(e["action"], e["reason"]) for e in events][-2:] == [
        ("rotated", "yearly drill"),
        ("retired", "partners switched"),
    ]
    assert events[-1]["destroyed"] == [new_version - 1]
    assert all(e["actor"]["subject"] == "alice" for e in events[-2:])


async def test_the_scheduled_job_rotates_and_retires_after_the_overlap(
    service_factory, settings, eventually
):
    service = await service_factory(
        settings.replace(
            v1a_rotation_interval_s=1.5, v1a_overlap_s=0.5, v1a_refresh_s=0.2, run_relay=False
        )
    )

    async def retired() -> bool:
        events = await key_rotated_events(service.pool)
        return any(e["action"] == "retired" for e in events)

    await eventually(retired, timeout=30)
    events = await key_rotated_events(service.pool)
    assert events[0]["action"] == "rotated" and events[0]["reason"] == "scheduled rotation"
    done = next(e for e in events if e["action"] == "retired")
    assert done["reason"] == "scheduled retirement: overlap ended"
    assert len(service.app.state.ctx.v1a.live) >= 1


def test_an_overlap_as_long_as_the_interval_is_refused(settings):
    # each scheduled run rotates before it retires: such keys would never be retired
    with pytest.raises(ValueError, match="v1a_overlap_s must be shorter"):
        settings.replace(v1a_rotation_interval_s=60.0, v1a_overlap_s=60.0)
