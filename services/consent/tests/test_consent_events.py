"""Consent's events go through the kit's EventWriter: source, ids and the delegated actor."""

from __future__ import annotations

import pytest

from clearway.consent import handlers
from clearway.shared.actor import Actor
from clearway.shared.events import event_id

from .conftest import read_events

pytestmark = pytest.mark.integration


async def test_an_admin_revocation_records_the_delegation_chain_under_deterministic_ids(consent):
    partner = consent.client(0, "partner")
    created = await consent.create_consent(partner)
    # What a token exchanged under RFC 8693 gives: support_7 acting for ops_1.
    actor = Actor("ops_1", "tnt_demo_alpha-admin", ("support_7",))
    revoked = await handlers.revoke_consent(
        consent.svc,
        "tnt_demo_alpha",
        created["id"],
        actor,
        "fraud report",
        admin=True,
        approver="lead_2",
    )
    events = await read_events(
        consent.settings.platform.kafka,
        consent.settings.topic,
        lambda seen: {"consent.revoked", "consent.admin_action"} <= {e.type for e in seen},
    )
    mine = {e.type: e for e in events if e.subject == created["id"]}
    for type_ in ("consent.revoked", "consent.admin_action"):
        ev = mine[type_]
        assert ev.source == "/clearway/consent"
        assert ev.id == event_id(created["id"], revoked.version, type_)
        assert Actor.from_data(ev.data["actor"]) == actor
    assert mine["consent.admin_action"].data["approver"] == "lead_2"
    assert mine["consent.created"].id == event_id(created["id"], 1, "consent.created")
    # v2 on the global topic: ids and status only, the personal data stays in the
    # region's store (ADR 0039)
    assert consent.settings.topic.endswith("clearway.consent.events.v2")
    assert mine["consent.created"].dataschema == "schemas/consent/consent.created/v2"
    assert not {"purpose", "authorization_details"} & set(mine["consent.created"].data)
