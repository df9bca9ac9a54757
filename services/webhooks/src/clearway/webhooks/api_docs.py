"""What the public webhooks routes answer, for the OpenAPI document only.

``GET /v1/webhooks/signing-keys`` answers ``v1a.V1aKeys.key_set`` and
``GET /v1/event-types`` the ``catalog``, as they are; these models and their
examples describe them (docs/design.md §6, §10).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from clearway.shared.http import page_of


class V1aKey(BaseModel):
    """A public key of v1a (Ed25519) signatures: an RFC 8037 OKP JWK, with its
    ``whpk_`` form and lifetime."""

    kid: str
    kty: str = Field(description="`OKP`.")
    crv: str = Field(description="`Ed25519`.")
    x: str
    alg: str = Field(description="`EdDSA`.")
    use: str
    whpk: str = Field(description="The key as a Standard Webhooks verifier takes it.")
    created_at: datetime
    retire_after: datetime | None = Field(
        description="While a newer key signs beside it: when this one stops signing."
    )


class V1aKeys(BaseModel):
    """The keys v1a signatures are made with, as a JWK Set (RFC 7517 §5)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "keys": [
                        {
                            "kid": "whk_8e1f4c7a2b5d9036",
                            "kty": "OKP",
                            "crv": "Ed25519",
                            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
                            "alg": "EdDSA",
                            "use": "sig",
                            "whpk": "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
                            "created_at": "2026-11-02T08:00:00Z",
                            "retire_after": None,
                        }
                    ]
                }
            ]
        }
    )

    keys: list[V1aKey]


class EventType(BaseModel):
    """An event type of the catalog: what its ``data`` holds, per major version."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "transfer.settled",
                    "domain": "transfer",
                    "versions": [1],
                    "description": "A transfer reached the creditor.",
                    "schema": {"type": "object", "properties": {"transfer_id": {"type": "string"}}},
                    "schemas": {
                        "v1": {"type": "object", "properties": {"transfer_id": {"type": "string"}}}
                    },
                    "changelog": "# transfer.settled\n\n## v1\n\nFirst version.\n",
                }
            ]
        }
    )

    type: str
    domain: str
    versions: list[int]
    description: str
    schema_: dict[str, Any] = Field(
        alias="schema", description="JSON Schema of the latest major version's `data`."
    )
    schemas: dict[str, dict[str, Any]] = Field(description="JSON Schema per major (`v1`, …).")
    changelog: str = Field(description="Markdown.")


EventTypeList = page_of(EventType, "EventTypeList")
