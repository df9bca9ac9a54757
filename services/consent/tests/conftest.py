"""Fixtures for the consent service's tests: the real service on uvicorn (127.0.0.1,
free port) against the session's Kafka and Postgres, seeded demo clients, and a
separate resource server built with the platform kit."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI, Security

from clearway.consent import handlers
from clearway.consent.bootstrap import build_app
from clearway.consent.service import Service
from clearway.consent.settings import ConsentSettings
from clearway.shared.auth import (
    HttpJwksSource,
    Principal,
    RevocationFeed,
    RevocationSet,
    TokenVerifier,
    require_scope,
)
from clearway.shared.events import Event
from clearway.shared.http import create_app
from clearway.shared.kafka import ensure_topics
from clearway.shared.kafka_link import KafkaLink
from clearway.shared.testing.helpers import free_port, serve


@dataclass
class Consent:
    """A running consent service and the clients seeded into it."""

    url: str
    app: FastAPI
    settings: ConsentSettings
    clients: list[dict[str, Any]]
    http: httpx.AsyncClient

    @property
    def svc(self) -> Service:
        return self.app.state.consent

    def operator(self) -> dict[str, Any]:
        """The platform operator's client (``platform:*`` scopes)."""
        return next(c for c in self.clients if c["client_id"] == "clearway-operator")

    def client(self, tenant_index: int, role: str) -> dict[str, Any]:
        tenant = ("tnt_demo_alpha", "tnt_demo_beta")[tenant_index]
        return next(c for c in self.clients if c["client_id"] == f"{tenant}-{role}")

    async def token_response(self, client: dict[str, Any], **form: Any) -> httpx.Response:
        return await self.http.post(
            f"{self.url}/oauth/token",
            data={"grant_type": "client_credentials", **form},
            auth=(client["client_id"], client["client_secret"]),
        )

    async def token(self, client: dict[str, Any], scope: str | None = None, **form: Any) -> str:
        if scope is not None:
            form["scope"] = scope
        response = await self.token_response(client, **form)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    async def create_consent(self, partner: dict[str, Any], **body: Any) -> dict[str, Any]:
        token = await self.token(partner, "consents:write")
        payload = {
            "purpose": "Pay your electricity bill",
            "authorization_details": [payment_details()],
            "scopes": ["payments:initiate", "payments:read", "consents:revoke"],
            **body,
        }
        response = await self.http.post(
            f"{self.url}/v1/consents", json=payload, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 201, response.text
        return dict(response.json())


def payment_details(amount: int = 12345, currency: str = "EUR") -> dict[str, Any]:
    return {
        "type": "payment_initiation",
        "instructedAmount": {"amount": amount, "currency": currency},
        "creditorName": "Merchant A",
        "creditorAccount": {"iban": "DE02100100109307118603"},
        "remittanceInformation": "Invoice 42",
    }


@pytest.fixture
def consent_settings(platform, tmp_path: Path) -> ConsentSettings:
    port = free_port()
    return ConsentSettings(
        platform=platform.replace(oauth_issuer=f"http://127.0.0.1:{port}", local_dir=tmp_path),
        port=port,
        seed_demo=True,
        key_activation_delay_s=6.0,
        manual_key_rotation_interval_s=0,  # one pending key at a time still holds
        expiry_sweep_s=0.5,
        # cheap hashes keep the suite fast; production keeps the RFC 9106 default
        argon2_time_cost=1,
        argon2_memory_kib=1024,
    )


@pytest_asyncio.fixture
async def consent(consent_settings: ConsentSettings) -> AsyncIterator[Consent]:
    app = build_app(consent_settings)
    async with (
        serve(app, consent_settings.port) as url,
        httpx.AsyncClient(timeout=30) as http,
    ):
        clients = json.loads((consent_settings.platform.local_dir / "dev-clients.json").read_text())
        yield Consent(url, app, consent_settings, clients, http)


@dataclass
class ResourceServer:
    """A separate service built only with the kit, protecting one route."""

    url: str
    revocations: RevocationSet
    feed: RevocationFeed


def resource_app(issuer: str, kafka: KafkaLink, topic: str, audience: str) -> tuple[FastAPI, Any]:
    revocations = RevocationSet()
    feed = RevocationFeed(kafka, topic, revocations, poll_timeout_ms=20)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # the consent service makes its topic in a background task (ADR 0053), which
        # may not have run yet
        await ensure_topics(kafka, [topic])
        await feed.start()
        try:
            yield
        finally:
            await feed.stop()

    app = create_app("resource", title="kit-protected test service", lifespan=lifespan)
    app.state.token_verifier = TokenVerifier(
        issuer=issuer,
        audience=audience,
        jwks_source=HttpJwksSource.for_issuer(issuer),
        revocations=revocations,
    )

    @app.get("/v1/transfers")
    async def transfers(p: Principal = Security(require_scope("payments:read"))) -> dict:
        return {"subject": p.subject, "consent_id": p.consent_id}

    return app, (revocations, feed)


@pytest_asyncio.fixture
async def resource(consent: Consent) -> AsyncIterator[ResourceServer]:
    app, (revocations, feed) = resource_app(
        consent.settings.issuer,
        consent.settings.platform.kafka,
        consent.settings.topic,
        "clearway-transfer",
    )
    async with serve(app, free_port()) as url:
        await asyncio.wait_for(feed.ready.wait(), 30)
        yield ResourceServer(url, revocations, feed)


async def authorised_token(
    consent: Consent, partner: dict[str, Any], subject: str = "usr_alice", **body: Any
) -> tuple[str, str]:
    """(consent id, access token bound to it): the partner creates the consent, the user
    approves it (the page's handler; the browser test walks the page itself) and the
    partner redeems the code with PKCE."""
    created = await consent.create_consent(partner, subject=subject, **body)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    redirect_uri = "http://127.0.0.1:8765/callback"
    par = {
        "client_id": partner["client_id"],
        "redirect_uri": redirect_uri,
        "code_challenge": challenge.rstrip(b"=").decode(),
        "scopes": ["payments:initiate", "payments:read"],
        "resource": [],
        "consent_id": created["id"],
    }
    code = await handlers.decide(consent.svc, par, subject, created["tenant"], True, "tests")
    response = await consent.http.post(
        f"{consent.url}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        },
        auth=(partner["client_id"], partner["client_secret"]),
    )
    assert response.status_code == 200, response.text
    return created["id"], str(response.json()["access_token"])


async def read_events(kafka: KafkaLink, topic: str, until, timeout: float = 30.0) -> list[Any]:
    """Events on ``topic`` from the beginning, read until ``until(events)`` holds."""
    consumer = AIOKafkaConsumer(
        topic, **kafka.client_options(), group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    seen: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                seen += [Event.from_kafka(r.headers, r.value) for r in records]
            if until(seen):
                return seen
        raise AssertionError(f"expected events not seen; got {[e.type for e in seen]}")
    finally:
        await consumer.stop()
