"""Signing keys: encrypted at rest, shared by replicas, rotated on a schedule."""

from __future__ import annotations

import httpx
import pytest

from clearway.consent.bootstrap import build_app, key_ring
from clearway.shared.crypto import Envelope, RecordUnreadable
from clearway.shared.crypto.keyring import KeyringProvider
from clearway.shared.testing.helpers import eventually, serve

from .conftest import read_events

pytestmark = pytest.mark.integration


async def test_private_keys_rest_encrypted_and_only_the_right_kek_opens_them(consent, tmp_path):
    async with consent.svc.pool.acquire() as conn:
        rows = await conn.fetch("SELECT kid, private_ciphertext FROM signing_keys")
        assert rows and all(b"PRIVATE KEY" not in bytes(r["private_ciphertext"]) for r in rows)
        replica = key_ring(consent.settings)  # another replica with the same KEK
        await replica.load(conn)
        assert replica.signer().kid == consent.svc.keys.signer().kid
        other_kek = KeyringProvider("consent", tmp_path)  # same name, another KEK
        other_kek.ensure()
        stranger = key_ring(consent.settings, Envelope(other_kek))
        with pytest.raises(RecordUnreadable, match=r"signing_keys\.private_ciphertext of row"):
            await stranger.load(conn)


async def test_keys_rotate_on_schedule_and_the_retired_key_stays_published(consent_settings):
    settings = consent_settings.replace(key_rotation_interval_s=3.0, key_activation_delay_s=1.0)
    app = build_app(settings)
    async with serve(app, settings.port) as url, httpx.AsyncClient() as http:
        first = app.state.consent.keys.signer().kid

        async def rotated() -> bool:
            return app.state.consent.keys.signer().kid != first

        await eventually(rotated, timeout=60)
        published = {
            k["kid"] for k in (await http.get(f"{url}/.well-known/jwks.json")).json()["keys"]
        }
        assert {first, app.state.consent.keys.signer().kid} <= published
    events = await read_events(
        settings.platform.kafka,
        settings.topic,
        lambda seen: sum(e.type == "consent.signing_key_rotated" for e in seen) >= 2,
    )
    scheduled = [e for e in events if e.type == "consent.signing_key_rotated"]
    assert first in {e.subject for e in scheduled}
    assert {e.data["reason"] for e in scheduled} == {"scheduled rotation"}
