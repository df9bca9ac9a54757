"""What the consent API's routes answer, for the OpenAPI document only.

The routes answer the dictionaries of ``api.view`` and ``clients`` as they are
(``response_model=None``); these models and their examples describe them
(docs/design.md §10).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from clearway.consent.domain import Status
from clearway.shared.http import page_of

PAYMENT = {
    "type": "payment_initiation",
    "instructedAmount": {"amount": 12500, "currency": "EUR"},
    "creditorName": "Merchant A",
    "creditorAccount": {"iban": "DE02100100109307118603"},
    "remittanceInformation": "Invoice 2026-1142",
}
CONSENT_REQUEST = {
    "purpose": "Pay invoice 2026-1142",
    "authorization_details": [PAYMENT],
    "subject": "usr_4f1c9a2b",
    "scopes": ["payments:initiate"],
    "expires_in": 3600,
}
ADMIN_REQUEST = {"reason": "Credentials exposed in incident INC-2291", "approver": "usr_ops_lead"}
SANDBOX_CLIENT_REQUEST = {
    "name": "Checkout integration tests",
    "scopes": ["payments:initiate", "payments:read"],
    "reason": "Sandbox for the checkout team",
}
SECRET_ROTATION = {**ADMIN_REQUEST, "overlap_seconds": 3600}
CLIENT_ID = "cli_7Yq2mNpR4sT"


class StatusChange(BaseModel):
    status: Status
    at: datetime
    actor: dict[str, Any] = Field(
        description="Who changed it (`subject`, `client_id`, `delegation`)."
    )
    reason: str | None


class ConsentOut(BaseModel):
    """A consent (RFC 9396 authorization details) and its status history."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "cns_0f8e7d6c5b4a39281706f5e4d3c2b1a0",
                    "reference": "CNS7K2M9Q4XW",
                    "status": "AwaitingAuthorisation",
                    "tenant": "tnt_acme",
                    "client_id": CLIENT_ID,
                    "subject": "usr_4f1c9a2b",
                    "purpose": CONSENT_REQUEST["purpose"],
                    "authorization_details": [PAYMENT],
                    "scopes": ["payments:initiate"],
                    "terms_version": "2026-01",
                    "created_at": "2026-12-03T09:15:00+00:00",
                    "expires_at": "2026-12-03T10:15:00+00:00",
                    "status_history": [
                        {
                            "status": "AwaitingAuthorisation",
                            "at": "2026-12-03T09:15:00+00:00",
                            "actor": {
                                "subject": "usr_4f1c9a2b",
                                "client_id": CLIENT_ID,
                                "delegation": [],
                            },
                            "reason": None,
                        }
                    ],
                    "evidence": None,
                }
            ]
        }
    )
    id: str
    reference: str
    status: Status
    tenant: str
    client_id: str
    subject: str | None
    purpose: str
    authorization_details: list[dict[str, Any]]
    scopes: list[str]
    terms_version: str
    created_at: datetime
    expires_at: datetime
    status_history: list[StatusChange]
    evidence: dict[str, Any] | None = Field(description="How the user authorised it, once done.")


ConsentList = page_of(ConsentOut, "ConsentList")


class ClientDisabled(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"client_id": CLIENT_ID, "tenant": "tnt_acme", "status": "disabled"}]
        }
    )
    client_id: str
    tenant: str
    status: str


class ClientSecret(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"client_id": CLIENT_ID, "client_secret": "cs_9rXk2LpQ7vWm4TnB8yZc"}]
        }
    )
    client_id: str
    client_secret: str = Field(description="Shown once; store it now.")


class SandboxClient(ClientSecret):
    """A test-mode client of the tenant's sandbox twin (`<tenant>_test`)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "client_id": CLIENT_ID,
                    "client_secret": "cs_9rXk2LpQ7vWm4TnB8yZc",
                    "tenant": "tnt_acme_test",
                    "mode": "test",
                    "scopes": ["payments:initiate", "payments:read"],
                }
            ]
        }
    )
    tenant: str
    mode: str
    scopes: list[str]


class ClientOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "client_id": CLIENT_ID,
                    "tenant": "tnt_acme",
                    "name": "Checkout",
                    "status": "active",
                    "api_version": "2026-11-01",
                    "created_at": "2026-11-02T08:00:00+00:00",
                }
            ]
        }
    )
    client_id: str
    tenant: str
    name: str
    status: str
    api_version: str
    created_at: datetime


ClientList = page_of(ClientOut, "ClientList")


class KeyRotated(BaseModel):
    """The new token signing key: published now (in the JWKS), signing from
    ``activates_at``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "kid": "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs",
                    "alg": "ES256",
                    "activates_at": "2026-12-03T10:15:00.000000Z",
                }
            ]
        }
    )
    kid: str = Field(description="RFC 7638 thumbprint, as in `/.well-known/jwks.json`.")
    alg: str = Field(description="`EdDSA` or `ES256`.")
    activates_at: str = Field(description="RFC 3339: when it starts signing.")
