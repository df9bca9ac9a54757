"""``clearway-drill breach``: contain a leaked client against a running platform and time it
(docs/design.md §9; the runbook is docs/runbooks/breach.md).

    clearway-drill breach --client tnt_demo_alpha-partner --reason "drill 2026-Q1" [--json]

As the platform operator (client credentials of ``CLEARWAY_DRILL_CLIENT_ID``), under
one correlation id, it

1. disables the client at the consent service (its tokens are refused by every
   service through the revocation feed; no new ones are issued),
2. rotates every webhook secret of the client's tenant (the old ones stop signing
   at once),
3. rotates the key-encryption key of every installed service that seals data and
   re-wraps their data keys (the kit's :mod:`clearway.shared.crypto.rotation`, with the
   platform's admin DSN, as ``clearway-keys`` does),

then reads the tenant's audit trail until each step's record is there
(``consent.admin_action``, ``webhooks.admin_action``, ``platform.key_rotated``) and
prints when each step was done and when the audit trail showed it. The time to
contain is the moment the last step is visible in the audit trail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import httpx
from pydantic import SecretStr

from clearway.shared.actor import Actor
from clearway.shared.context import correlation
from clearway.shared.crypto.rotation import rewrap, rotate_kek
from clearway.shared.crypto.settings import KeySettings, open_envelope
from clearway.shared.crypto.tenant_keys import TENANT_KEY_COLUMN
from clearway.shared.db import create_pool
from clearway.shared.dev_clients import seeded_client_secret
from clearway.shared.event_writer import EventWriter
from clearway.shared.settings import Base64Secret, ServiceSettings, internal
from clearway.shared.settings_doc import registered

OPERATOR_SCOPES = "platform:clients platform:webhooks platform:audit"


class DrillSettings(ServiceSettings):
    """The breach drill (``clearway-drill``): where the platform answers and the operator
    client it acts as. The consent service is the platform's OAuth issuer
    (``CLEARWAY_OAUTH_ISSUER``); the database is the platform's admin DSN."""

    service: ClassVar[str] = "drill"
    uses_kafka: ClassVar[bool] = False

    # A command, not a server: the server's fields are not read.
    host: str = internal("127.0.0.1")
    port: int = internal(8000)
    db_password: SecretStr = internal(SecretStr("dev"))
    cursor_key: Base64Secret | None = internal(None)

    webhooks_url: str = "http://127.0.0.1:8002"
    """Base URL of the webhooks service."""
    audit_url: str = "http://127.0.0.1:8004"
    """Base URL of the audit service."""
    client_id: str = "clearway-operator"
    """The platform operator's OAuth client (holds ``platform:clients``,
    ``platform:webhooks``, ``platform:audit``)."""
    client_secret: SecretStr | None = None
    """Its secret; unset in development: read from ``<local dir>/dev-clients.json``
    (written by the consent service's demo seed)."""
    kek_services: tuple[str, ...] = ()
    """Services whose key-encryption key is rotated; empty: every installed service that
    seals data."""
    verify_timeout_s: float = 120.0
    """How long to wait for the audit trail to show every step."""
    http_timeout_s: float = 30.0
    """Timeout of each HTTP call to the platform."""

    def operator_secret(self) -> str:
        """The operator client's secret, from the settings or the development seed."""
        if self.client_secret is not None:
            return self.client_secret.get_secret_value()
        seeded = seeded_client_secret(self.platform.local_dir, self.client_id)
        if seeded is not None:
            return seeded
        raise DrillError(f"no secret for {self.client_id}: set {self.env_name('client_secret')}")


class DrillError(Exception):
    """A step could not be carried out (the platform refused or is unreachable)."""


@dataclass
class Step:
    """One containment step: when it was done and when the audit trail showed it
    (seconds since the drill started)."""

    name: str
    detail: str
    expected: list[tuple[str, str]]  # (event type, resource) the audit trail must show
    acted_s: float
    verified_s: float | None = None
    evidence: list[int] = field(default_factory=list)  # audit record positions

    @property
    def verified(self) -> bool:
        return self.verified_s is not None


@dataclass
class Report:
    """The drill's outcome: every step, and the time to contain."""

    client: str
    tenant: str
    correlation_id: str
    steps: list[Step]

    @property
    def all_verified(self) -> bool:
        return all(s.verified for s in self.steps)

    @property
    def time_to_contain_s(self) -> float | None:
        """When the last step became visible in the audit trail (None: not all did)."""
        if not self.all_verified:
            return None
        return max((s.verified_s or 0.0 for s in self.steps), default=0.0)

    def as_json(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "tenant": self.tenant,
            "correlation_id": self.correlation_id,
            "steps": [
                {**asdict(s), "expected": [list(e) for e in s.expected], "verified": s.verified}
                for s in self.steps
            ],
            "all_verified": self.all_verified,
            "time_to_contain_s": self.time_to_contain_s,
        }

    def render(self) -> str:
        lines = [
            f"Breach drill: client {self.client} of tenant {self.tenant}"
            f" (correlation id {self.correlation_id})",
            f"{'step':<22} {'done at':>9} {'audited at':>11}  detail",
        ]
        for s in self.steps:
            audited = f"{s.verified_s:10.2f}s" if s.verified_s is not None else "  NOT SEEN"
            lines.append(f"{s.name:<22} {s.acted_s:8.2f}s {audited}  {s.detail}")
        ttc = self.time_to_contain_s
        lines.append(
            f"time to contain: {ttc:.2f}s" if ttc is not None else "NOT CONTAINED: see above"
        )
        return "\n".join(lines)


def _check(response: httpx.Response, what: str) -> dict[str, Any]:
    if not response.is_success:
        raise DrillError(f"{what}: HTTP {response.status_code}: {response.text[:500]}")
    body: dict[str, Any] = response.json()
    return body


async def _rotate_keks(
    settings: DrillSettings, tenant: str, cid: str, actor: Actor, reason: str
) -> list[tuple[str, int, int]]:
    """Rotate and re-wrap the KEK of each service; ``(service, version, re-wrapped)``.
    The events carry the drill's correlation id and the tenant, so they land in the
    tenant's audit view next to the other steps."""
    wanted = set(settings.kek_services)
    services = [
        c
        for c in registered()
        if issubclass(c, KeySettings) and (not wanted or c.service in wanted)
    ]
    missing = wanted - {c.service for c in services}
    if missing:
        raise DrillError(f"no installed service with a KEK: {', '.join(sorted(missing))}")
    done = []
    for cls in services:
        svc = cls.from_env(platform=settings.platform)
        envelope = open_envelope(svc)
        pool = await create_pool(settings.platform.database_url, schema=cls.service, max_size=2)
        events = EventWriter(cls.service, topic_prefix=settings.platform.topic_prefix)
        try:
            with correlation(cid, tenant):
                async with pool.acquire() as conn:
                    version = await rotate_kek(conn, envelope, events, reason=reason, actor=actor)
            rewrapped = 0
            # the tenant keys too, as `clearway-keys rewrap` does: left on the old
            # version they would pin it (retiring it would shred every tenant)
            for column in (*cls.sealed_columns, TENANT_KEY_COLUMN):
                rewrapped += (await rewrap(pool, envelope, column)).rewrapped
            done.append((cls.service, version, rewrapped))
        finally:
            await pool.close()
            envelope.provider.close()
    return done


async def breach(
    settings: DrillSettings,
    client_id: str,
    reason: str,
    *,
    operator: str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Report:
    """Run the drill against the platform ``settings`` point at; see the module doc."""
    t0 = clock()
    cid = f"corr_drill_{uuid.uuid4().hex[:16]}"
    headers = {"X-Correlation-ID": cid}
    async with httpx.AsyncClient(timeout=settings.http_timeout_s, headers=headers) as http:
        token = _check(
            await http.post(
                f"{settings.issuer}/oauth/token",
                data={"grant_type": "client_credentials", "scope": OPERATOR_SCOPES},
                auth=(settings.client_id, settings.operator_secret()),
            ),
            "operator token",
        )["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        body = {"reason": reason, "approver": operator}
        disable = f"{settings.issuer}/v1/platform/clients/{client_id}/disable"
        disabled = _check(await http.post(disable, json=body), "disable the client")
        tenant = str(disabled["tenant"])
        steps = [
            Step(
                "disable_client",
                f"{client_id} disabled, its tokens revoked",
                [("consent.admin_action", client_id)],
                clock() - t0,
            )
        ]
        rotated = _check(
            await http.post(
                f"{settings.webhooks_url}/v1/platform/tenants/{tenant}/secrets/rotation",
                json={"reason": reason},
            ),
            "rotate the tenant's webhook secrets",
        )["rotated_endpoints"]
        steps.append(
            Step(
                "rotate_webhook_secrets",
                f"{len(rotated)} endpoint(s) with new secrets",
                [("webhooks.admin_action", e) for e in rotated],
                clock() - t0,
            )
        )
        actor = Actor(subject=operator or settings.client_id, client_id=settings.client_id)
        keks = await _rotate_keks(settings, tenant, cid, actor, reason)
        steps.append(
            Step(
                "rotate_kek",
                ", ".join(f"{s} v{v} ({n} re-wrapped)" for s, v, n in keks),
                [("platform.key_rotated", f"kek:{s}") for s, _, _ in keks],
                clock() - t0,
            )
        )
        report = Report(client_id, tenant, cid, steps)
        await _verify(http, settings, report, lambda: clock() - t0)
    return report


async def _audit_records(
    http: httpx.AsyncClient, settings: DrillSettings, tenant: str, cid: str
) -> list[dict[str, Any]]:
    """Every record of the drill in the tenant's audit trail (all pages)."""
    url = f"{settings.audit_url}/v1/audit/tenants/{tenant}/records"
    params: dict[str, Any] = {"correlation_id": cid, "limit": 100}
    found: list[dict[str, Any]] = []
    for _ in range(100):  # bounded: a drill writes a handful of records
        page = _check(await http.get(url, params=params), "search the audit trail")
        found += page["data"]
        if not page["has_more"]:
            break
        params["cursor"] = page["next_cursor"]
    return found


async def _verify(
    http: httpx.AsyncClient,
    settings: DrillSettings,
    report: Report,
    elapsed: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Poll the audit trail until each step's records are there, or the timeout."""
    deadline = elapsed() + settings.verify_timeout_s
    while True:
        records = await _audit_records(http, settings, report.tenant, report.correlation_id)
        at = elapsed()
        seen = {(r["type"], r["resource"]): r["position"] for r in records}
        for step in report.steps:
            if step.verified:
                continue
            if all(e in seen for e in step.expected):
                step.verified_s = at
                step.evidence = [seen[e] for e in step.expected]
        if report.all_verified or at >= deadline:
            return
        await sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``clearway-drill``."""
    ap = argparse.ArgumentParser(prog="clearway-drill", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("breach", help="contain a leaked client and time it")
    b.add_argument("--client", required=True, help="the OAuth client id believed compromised")
    b.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
    b.add_argument("--operator", help="who runs the drill (recorded as the approver/actor)")
    b.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)
    settings = DrillSettings.from_env_or_exit()
    try:
        report = asyncio.run(breach(settings, args.client, args.reason, operator=args.operator))
    except DrillError as e:
        print(f"clearway-drill: {e}", file=sys.stderr)
        return 1
    print(json.dumps(report.as_json(), indent=2) if args.json else report.render())
    return 0 if report.all_verified else 1


if __name__ == "__main__":
    raise SystemExit(main())
