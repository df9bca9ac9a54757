"""Actor: subject, client and the RFC 8693 ``act`` delegation chain, recorded one way."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from clearway.shared.actor import MAX_DELEGATION, Actor, delegation_of
from clearway.shared.auth import TokenVerifier
from clearway.shared.testing.issuer import TestIssuer


class _Principal:
    def __init__(self, claims: dict[str, Any]) -> None:
        self.subject = claims["sub"]
        self.client_id = claims["client_id"]
        self.claims = MappingProxyType(claims)


def test_a_token_without_act_is_its_subject_acting_alone():
    actor = Actor.from_principal(_Principal({"sub": "user_1", "client_id": "cli_1"}))
    assert actor == Actor("user_1", "cli_1", ())
    assert actor.acting == "user_1"
    assert actor.as_data() == {"subject": "user_1", "client_id": "cli_1", "delegation": []}


def test_nested_act_claims_give_the_chain_outermost_first():
    # RFC 8693 §4.1: the outermost act is the current actor, nested ones acted before.
    claims = {
        "sub": "user_1",
        "client_id": "cli_1",
        "act": {"sub": "support_7", "act": {"sub": "svc_batch"}},
    }
    actor = Actor.from_principal(_Principal(claims))
    assert actor.delegation == ("support_7", "svc_batch")
    assert actor.acting == "support_7"
    assert Actor.from_claims(claims) == actor


def test_the_chain_stops_at_a_malformed_link_and_is_bounded():
    assert delegation_of({"act": {"sub": "a", "act": "not an object"}}) == ("a",)
    assert delegation_of({"act": {"iss": "x", "act": {"sub": "b"}}}) == ()
    deep: dict[str, Any] = {"sub": "last"}
    for i in range(50):
        deep = {"sub": f"a{i}", "act": deep}
    assert len(delegation_of({"act": deep})) == MAX_DELEGATION


def test_as_data_and_from_data_round_trip():
    actor = Actor("user_1", "cli_1", ("support_7",))
    assert Actor.from_data(actor.as_data()) == actor
    assert Actor.from_data({"subject": "system:seed", "client_id": None}) == Actor(
        "system:seed", None, ()
    )
    assert Actor.from_data(None) is None
    assert Actor.from_data({"client_id": "x"}) is None
    assert Actor.system("purge") == Actor("system:purge")


async def test_a_verified_principal_carries_its_act_chain():
    issuer = TestIssuer()
    verifier = TokenVerifier(issuer.issuer, "aud", issuer.jwks())
    token = issuer.token(
        "user_1", "cli_1", ["s"], "aud", extra_claims={"act": {"sub": "support_7"}}
    )
    principal = await verifier.verify(token)
    assert Actor.from_principal(principal) == Actor("user_1", "cli_1", ("support_7",))
