"""The checkpoint signing key in the HSM (SoftHSM2): rotated and retired with the kit's
machinery, older checkpoints and cuts still verify (docs/design.md §8, §9)."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest
from pkcs11 import Attribute
from pydantic import SecretStr

from clearway.audit.signing import Keyring
from clearway.audit.verification import verify_log
from clearway.shared.crypto.hsm_signing import HsmSigningProvider
from clearway.shared.crypto.keys import KeyUnavailable
from clearway.shared.crypto.signing_rotation import retire_signing_keys, rotate_signing_key
from clearway.shared.crypto.softhsm import DEFAULT_MODULE, ensure_token
from clearway.shared.event_writer import EventWriter

pytestmark = pytest.mark.integration


def hsm_keyring(softhsm: Path, name: str, pin: str | None = None) -> Keyring:
    provider = HsmSigningProvider(
        name,
        module=DEFAULT_MODULE,
        token_label="clearway",
        pin=pin or ensure_token(softhsm, "clearway"),
    )
    provider.ensure()
    return Keyring(provider)


async def test_rotation_and_retirement_keep_older_checkpoints_verifiable(audit_log, softhsm):
    name = f"audit-checkpoint-{uuid.uuid4().hex[:6]}"
    ring = hsm_keyring(softhsm, name)
    log = dataclasses.replace(audit_log, keyring=ring)
    assert ring.public_jwks()["keys"][0]["crv"] == "Ed25519"  # SoftHSM2 2.6 has CKM_EDDSA
    await log.append(5)
    first = await log.checkpoint()
    events = EventWriter("audit")
    new = await rotate_signing_key(log.admin, ring.provider, events, reason="drill")
    await log.append(5, start=5)
    second = await log.checkpoint()  # the new version signs at once
    assert second.key_id != first.key_id and second.key_id == ring.active
    gone = await retire_signing_keys(log.admin, ring.provider, events, below=new, reason="drill")
    assert gone == [1]
    # a fresh keyring over the same token (another replica) trusts both keys
    again = hsm_keyring(softhsm, name)
    assert again.verifies(first) and again.verifies(second)
    report = await verify_log(log.admin, again)
    assert report.ok, report.failure
    assert len(again.public_jwks()["keys"]) == 2
    assert (
        await log.admin.fetchval(
            "SELECT count(*) FROM outbox WHERE topic LIKE '%clearway.audit.events.v1'"
        )
        >= 2
    )
    private = ring.provider.private_object(new)
    assert private[Attribute.EXTRACTABLE] is False and private[Attribute.SENSITIVE] is True


def test_the_service_refuses_to_start_when_the_token_is_down(audit_log, softhsm):
    settings = audit_log.settings.model_copy(
        update={"hsm_token": "nosuchtoken", "hsm_pin": SecretStr("1234")}
    )
    with pytest.raises(KeyUnavailable, match="nosuchtoken"):
        settings.load_keyring()
    with pytest.raises(KeyUnavailable, match="PIN"):
        hsm_keyring(softhsm, "audit-checkpoint", pin="wrong")
