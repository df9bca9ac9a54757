"""Issue 12 item 5: an admin action reaches the audit view of the tenant it touched.

The webhooks service (relay on) and the audit service (consuming) on one stack: a
tenant's endpoint change is a ``webhooks.admin_action`` that the tenant's auditor
finds through the audit service's tenant view, and another tenant's auditor does not.
"""

from __future__ import annotations

import httpx
import pytest

from clearway.shared.testing.helpers import eventually
from clearway.shared.testing.issuer import TestIssuer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ISSUER = "https://auth.test.clearway"


async def test_a_tenant_auditor_sees_the_webhooks_admin_actions_of_its_own_tenant(
    platform, tmp_path
):
    from clearway.audit.bootstrap import build_app as audit_app
    from clearway.audit.settings import AuditSettings
    from clearway.webhooks.bootstrap import build_app as webhooks_app
    from clearway.webhooks.settings import WebhooksSettings

    issuer = TestIssuer(ISSUER)
    platform = platform.replace(oauth_issuer=ISSUER)
    webhooks = webhooks_app(
        WebhooksSettings(
            platform=platform,
            jwks=issuer.jwks(),
            run_dispatcher=False,
            run_consumer=False,
            allow_networks=["127.0.0.0/8"],
        )
    )
    audit = audit_app(
        AuditSettings(
            platform=platform,
            jwks=issuer.jwks(),
            key_provider="keyring",
            keyring_dir=tmp_path,
            metadata_max_age_ms=1000,
        )
    )

    def bearer(tenant: str, scope: str, audience: str) -> dict[str, str]:
        token = issuer.token(
            sub="usr_ops",
            client_id=f"{tenant}-ops",
            scopes=[scope],
            audience=audience,
            tenant=tenant,
        )
        return {"Authorization": f"Bearer {token}"}

    async with (
        webhooks.router.lifespan_context(webhooks),
        audit.router.lifespan_context(audit),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=webhooks), base_url="http://w") as w,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=audit), base_url="http://a") as a,
    ):
        created = await w.post(
            "/v1/endpoints",
            json={"url": "http://127.0.0.1:9/hook", "event_types": ["transfer.*"]},
            headers=bearer("tnt_alpha", "webhooks:endpoints:manage", "clearway-webhooks"),
        )
        assert created.status_code == 201, created.text
        endpoint = created.json()["id"]
        mine = bearer("tnt_alpha", "audit:read", "clearway-audit")
        theirs = bearer("tnt_beta", "audit:read", "clearway-audit")

        async def seen() -> list[dict]:
            r = await a.get("/v1/audit/records", params={"resource": endpoint}, headers=mine)
            assert r.status_code == 200, r.text
            return [d for d in r.json()["data"] if d["type"] == "webhooks.admin_action"]

        [record] = await eventually(seen, timeout=120)
        assert record["action"] == "endpoint.created"
        other = await a.get("/v1/audit/records", params={"resource": endpoint}, headers=theirs)
        assert other.status_code == 200 and other.json()["data"] == []
