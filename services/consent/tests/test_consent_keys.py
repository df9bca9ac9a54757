"""Token-signing keys: generated and used in the HSM (SoftHSM2), rotated with an overlap,
retired by destroying the private key, shared by replicas (docs/design.md §9, ADR 0019)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from joserfc import jws
from pkcs11 import Attribute
from pkcs11 import exceptions as p11

from clearway.consent.bootstrap import build_app, key_ring
from clearway.consent.keys import TOKEN_KEY, public_jwk
from clearway.shared.crypto import hsm
from clearway.shared.crypto.hsm_signing import HsmSigningProvider
from clearway.shared.crypto.keys import KeyVersionUnknown
from clearway.shared.crypto.signing_rotation import rotate_signing_key
from clearway.shared.testing.helpers import eventually, serve

from .conftest import read_events

pytestmark = pytest.mark.integration


async def test_tokens_are_signed_in_the_hsm_and_verified_by_another_service(consent, resource):
    keys = consent.svc.keys
    assert isinstance(keys.provider, HsmSigningProvider)
    signer = keys.signer()
    private = keys.provider.private_object(signer.version)
    assert private[Attribute.EXTRACTABLE] is False and private[Attribute.SENSITIVE] is True
    assert private[Attribute.NEVER_EXTRACTABLE] is True and private[Attribute.TOKEN] is True
    with pytest.raises(p11.AttributeSensitive):
        private[Attribute.VALUE]
    async with consent.svc.pool.acquire() as conn:
        columns = {
            r["column_name"]
            for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = 'consent' AND table_name = 'signing_keys'"
            )
        }
        row = await conn.fetchrow("SELECT * FROM signing_keys WHERE kid = $1", signer.kid)
    assert "private_ciphertext" not in columns
    assert row["version"] == signer.version and "d" not in row["public_jwk"]
    assert row["public_jwk"] == public_jwk(keys.provider.public_keys()[signer.version])

    token = await consent.token(consent.client(0, "partner"), "payments:read")
    header = jws.extract_compact(token.encode()).headers()
    assert header == {"alg": "ES256", "typ": "at+jwt", "kid": signer.kid}
    # a separate service built with the kit verifies it through the published JWKS
    r = await consent.http.get(
        f"{resource.url}/v1/transfers", headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200, r.text


async def test_rotation_keeps_old_tokens_verifiable_and_retirement_destroys_the_private_key(
    consent, resource
):
    svc, keys = consent.svc, consent.svc.keys
    partner = consent.client(0, "partner")
    old = keys.signer()
    old_token = await consent.token(partner, "payments:read")
    admin = await consent.token(consent.operator(), "platform:keys")
    rotation = f"{consent.url}/v1/platform/keys/rotation"
    auth = {"Authorization": f"Bearer {admin}"}
    assert (await consent.http.post(rotation, json={}, headers=auth)).status_code == 422
    r = await consent.http.post(rotation, json={"reason": "drill"}, headers=auth)
    assert r.status_code == 200, r.text
    again = await consent.http.post(rotation, json={"reason": "drill"}, headers=auth)
    assert again.status_code == 429 and "Retry-After" in again.headers  # a key is pending

    async def switched() -> bool:
        return keys.signer().kid == r.json()["kid"]

    await eventually(switched, timeout=30)
    new = keys.signer()
    assert new.version > old.version
    new_token = await consent.token(partner, "payments:read")
    assert jws.extract_compact(new_token.encode()).headers()["kid"] == new.kid
    for token in (old_token, new_token):  # the overlap: both keys are published
        got = await consent.http.get(
            f"{resource.url}/v1/transfers", headers={"Authorization": f"Bearer {token}"}
        )
        assert got.status_code == 200, got.text

    # Once the old key's last token expired, its private key is destroyed in the HSM
    # and the key leaves the JWKS; its public key stays on the token.
    later = datetime.now(UTC) + timedelta(seconds=svc.settings.token_ttl_s + 120)
    async with svc.pool.acquire() as conn:
        assert await keys.retire_expired(conn, svc.events) == []  # still in its overlap
        assert await keys.retire_expired(conn, svc.events, now=later) == [old.version]
        destroyed = await conn.fetchval(
            "SELECT destroyed_at FROM kek_versions WHERE kek = $1 AND version = $2",
            f"signing:{TOKEN_KEY}",
            old.version,
        )
    assert destroyed is not None
    assert old.version not in keys.provider.versions()
    with pytest.raises(KeyVersionUnknown):
        keys.provider.sign(old.version, b"after retirement")
    assert old.version in keys.provider.public_keys()
    assert [k["kid"] for k in keys.jwks(later)["keys"]] == [new.kid]

    events = await read_events(
        consent.settings.platform.kafka,
        consent.settings.topic,
        lambda seen: {"rotated", "retired"}
        <= {e.data.get("action") for e in seen if e.type == "platform.key_rotated"},
    )
    audited = [e for e in events if e.type == "platform.key_rotated"]
    assert {e.data["key_use"] for e in audited} == {"signing"}
    assert "drill" in {e.data["reason"] for e in audited}


async def test_a_version_made_by_clearway_keys_is_published_before_it_signs(consent):
    svc, keys = consent.svc, consent.svc.keys
    async with svc.pool.acquire() as conn:  # what `clearway-keys consent rotate` does
        version = await rotate_signing_key(conn, keys.provider, svc.events, reason="cli")

    async def published() -> str | None:
        key = next((k for k in keys._keys if k.version == version), None)
        return key.kid if key else None

    kid = await eventually(published, timeout=30)
    assert kid in {k["kid"] for k in keys.jwks()["keys"]}
    await eventually(lambda: _signs(keys, kid), timeout=30)


async def _signs(keys, kid: str) -> bool:
    return keys.signer().kid == kid


async def test_a_replica_signs_with_the_same_hsm_key(consent):
    replica = key_ring(consent.settings)
    async with consent.svc.pool.acquire() as conn:
        await replica.load(conn)
    assert replica.signer().kid == consent.svc.keys.signer().kid
    token = replica.sign({"iss": consent.settings.issuer, "exp": 2**40, "jti": "at_x"})
    assert jws.deserialize_compact(token, consent.svc.keys.signer().key, algorithms=["ES256"])


async def test_an_hsm_that_is_down_answers_503_with_retry_after(consent):
    partner = consent.client(0, "partner")
    assert (await consent.token_response(partner, scope="payments:read")).status_code == 200
    # The token's session goes away under the service (as a network HSM drops it); the
    # next signing fails with a device error, then the kit logs in again. The service's
    # own key check (every second) may be the next user of the token and take the
    # failure instead, so the drop is repeated until a request meets it (bounded).
    provider = consent.svc.keys.provider
    for _ in range(20):
        hsm._shared_session(provider.module, provider.token_label, provider._pin).session.close()
        down = await consent.token_response(partner, scope="payments:read")
        if down.status_code != 200:
            break
    assert down.status_code == 503, down.text
    assert down.headers["Retry-After"] and "PRIVATE" not in down.text
    assert down.headers["content-type"].startswith("application/problem+json")
    again = await consent.token_response(partner, scope="payments:read")
    assert again.status_code == 200, again.text


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
