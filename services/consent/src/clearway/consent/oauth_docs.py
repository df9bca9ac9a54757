"""What the OAuth endpoints answer, for the OpenAPI document only.

The endpoints answer the dictionaries of ``oauth_api``, ``tokens``, ``authorization``
and ``keys.jwks`` as they are; these models and their examples describe them in
the terms of the RFCs they follow (docs/design.md §7, §10).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from clearway.consent.api_docs import CLIENT_ID, PAYMENT

ISSUER = "https://consent.clearway.example"


class ServerMetadata(BaseModel):
    """RFC 8414 §2 authorization server metadata (with RFC 9126, RFC 7662, RFC 7009,
    RFC 9207 and RFC 9396 members)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "issuer": ISSUER,
                    "authorization_endpoint": f"{ISSUER}/oauth/authorize",
                    "token_endpoint": f"{ISSUER}/oauth/token",
                    "pushed_authorization_request_endpoint": f"{ISSUER}/oauth/par",
                    "require_pushed_authorization_requests": True,
                    "introspection_endpoint": f"{ISSUER}/oauth/introspect",
                    "revocation_endpoint": f"{ISSUER}/oauth/revoke",
                    "jwks_uri": f"{ISSUER}/.well-known/jwks.json",
                    "scopes_supported": ["payments:initiate", "payments:read"],
                    "response_types_supported": ["code"],
                    "grant_types_supported": ["client_credentials", "authorization_code"],
                    "code_challenge_methods_supported": ["S256"],
                    "token_endpoint_auth_methods_supported": [
                        "client_secret_basic",
                        "client_secret_post",
                        "private_key_jwt",
                    ],
                    "token_endpoint_auth_signing_alg_values_supported": ["ES256", "EdDSA"],
                    "introspection_endpoint_auth_methods_supported": [
                        "client_secret_basic",
                        "private_key_jwt",
                    ],
                    "revocation_endpoint_auth_methods_supported": [
                        "client_secret_basic",
                        "private_key_jwt",
                    ],
                    "authorization_details_types_supported": ["payment_initiation"],
                    "authorization_response_iss_parameter_supported": True,
                    "access_token_signing_alg_values_supported": ["ES256", "EdDSA"],
                }
            ]
        }
    )

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    pushed_authorization_request_endpoint: str
    require_pushed_authorization_requests: bool
    introspection_endpoint: str
    revocation_endpoint: str
    jwks_uri: str
    scopes_supported: list[str]
    response_types_supported: list[str]
    grant_types_supported: list[str]
    code_challenge_methods_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    token_endpoint_auth_signing_alg_values_supported: list[str]
    introspection_endpoint_auth_methods_supported: list[str]
    revocation_endpoint_auth_methods_supported: list[str]
    authorization_details_types_supported: list[str]
    authorization_response_iss_parameter_supported: bool
    access_token_signing_alg_values_supported: list[str]


class SigningKey(BaseModel):
    """A public token signing key: an RFC 8037 OKP or RFC 7518 EC JWK, its ``kid`` the
    RFC 7638 thumbprint."""

    kty: str = Field(description="`OKP` or `EC`.")
    crv: str = Field(description="`Ed25519` or `P-256`.")
    x: str
    y: str | None = Field(None, description="EC keys only.")
    alg: str = Field(description="`EdDSA` or `ES256`.")
    use: str
    kid: str


class SigningKeys(BaseModel):
    """RFC 7517 §5 JWK Set: the keys access tokens are signed with, pending and
    still-valid retired ones included."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "keys": [
                        {
                            "kty": "EC",
                            "crv": "P-256",
                            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
                            "alg": "ES256",
                            "use": "sig",
                            "kid": "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs",
                        }
                    ]
                }
            ]
        }
    )

    keys: list[SigningKey]


class TokenResponse(BaseModel):
    """RFC 6749 §5.1 successful token response (an RFC 9068 JWT access token)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "access_token": "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJpc3MiOi…",
                    "token_type": "Bearer",
                    "expires_in": 300,
                    "scope": "payments:initiate",
                    "authorization_details": [PAYMENT],
                }
            ]
        }
    )

    access_token: str
    token_type: str = Field(description="`Bearer` (RFC 6750).")
    expires_in: int = Field(description="Seconds the token stays valid.")
    scope: str = Field(description="The granted scopes, space-separated.")
    authorization_details: list[dict[str, Any]] | None = Field(
        None, description="RFC 9396: the consent's, for a token redeemed from a code."
    )


class PushedRequest(BaseModel):
    """RFC 9126 §2.2 pushed authorization response."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "request_uri": "urn:ietf:params:oauth:request_uri:6esc_11ACC5bwc014ltc14eY22c",
                    "expires_in": 90,
                }
            ]
        }
    )

    request_uri: str = Field(description="Pass to the authorization endpoint, once.")
    expires_in: int = Field(description="Seconds the request_uri stays usable.")


class Introspection(BaseModel):
    """RFC 7662 §2.2 introspection response: ``active`` alone for a token that is not
    (expired, revoked, of another tenant, its consent ended); the token's claims when
    it is."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "active": True,
                    "token_type": "Bearer",
                    "iss": ISSUER,
                    "sub": "usr_4f1c9a2b",
                    "aud": "transfer",
                    "client_id": CLIENT_ID,
                    "scope": "payments:initiate",
                    "tenant": "tnt_acme",
                    "iat": 1796289300,
                    "nbf": 1796289300,
                    "exp": 1796289600,
                    "jti": "at_2c9f4e1a7b3d5f6071829304a5b6c7d8",
                    "cw_ver": "2026-11-01",
                    "consent_id": "cns_0f8e7d6c5b4a39281706f5e4d3c2b1a0",
                    "authorization_details": [PAYMENT],
                },
                {"active": False},
            ]
        }
    )

    active: bool
    token_type: str | None = None
    iss: str | None = None
    sub: str | None = None
    aud: str | list[str] | None = None
    client_id: str | None = None
    scope: str | None = None
    tenant: str | None = Field(None, description="The tenant the token acts for.")
    iat: int | None = None
    nbf: int | None = None
    exp: int | None = None
    jti: str | None = None
    cw_ver: str | None = Field(None, description="The client's pinned API version.")
    consent_id: str | None = None
    authorization_details: list[dict[str, Any]] | None = None
