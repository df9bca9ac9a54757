"""Issue 11 item 5: the breach drill against a running platform (docs/runbooks/breach.md).

Every service as its own process, as ``make run`` starts them; ``clearway-drill breach``
as an operator would run it. The report says each step (client disabled, the tenant's
webhook secrets rotated, every KEK rotated and re-wrapped) was seen in the tenant's
audit trail, and the breached client's token is refused by every service.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from clearway.shared.testing.helpers import eventually
from tests.e2e.test_platform_flow import Platform

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

CLIENT = "tnt_demo_alpha-partner"
#: service → a read its routes answer for the partner's token (before the drill)
PROBES = {
    "transfer": "/v1/transfers?reference=CW0",
    "consent": "/v1/consents",
    "vault": "/v1/cards/tok_" + "a" * 24,
    "webhooks": "/v1/endpoints",
    "audit": "/v1/audit/records",
    "rail": "/v1/charges/ch_none",
}
#: the services the partner's token is meant for (its scopes' audiences)
AUDIENCES = ("transfer", "consent", "vault")


class WholePlatform(Platform):
    services = ["consent", "rail", "vault", "transfer", "webhooks", "audit"]

    def __init__(self, settings, local: Path) -> None:
        super().__init__(settings, local)
        self.env["CLEARWAY_TRANSFER_VAULT_URLS"] = json.dumps({"eu": self.url("vault")})
        self.env["CLEARWAY_DRILL_WEBHOOKS_URL"] = self.url("webhooks")
        self.env["CLEARWAY_DRILL_AUDIT_URL"] = self.url("audit")


async def test_the_breach_drill_contains_a_client_and_proves_it_in_the_audit_trail(
    platform, tmp_path
):
    services = WholePlatform(platform, tmp_path)
    async with httpx.AsyncClient(timeout=30) as http:
        try:
            await services.start(http)
            hooks = await services.token(http, "webhooks", "webhooks:endpoints:manage")
            r = await http.post(
                f"{services.url('webhooks')}/v1/endpoints",
                json={"url": "http://127.0.0.1:9/hook", "event_types": ["transfer.*"]},
                headers={"Authorization": f"Bearer {hooks}"},
            )
            assert r.status_code == 201, r.text
            endpoint = r.json()["id"]
            partner = await services.token(
                http, "partner", "payments:read consents:read cards:tokenize"
            )
            leaked = {"Authorization": f"Bearer {partner}"}
            for svc in AUDIENCES:  # the leaked token works where it is meant to
                r = await http.get(services.url(svc) + PROBES[svc], headers=leaked)
                assert r.status_code in (200, 404), (svc, r.text)

            drill = subprocess.run(
                [
                    str(Path(sys.executable).parent / "clearway-drill"),
                    "breach",
                    "--client",
                    CLIENT,
                    "--reason",
                    "CI breach drill",
                    "--operator",
                    "usr_ci",
                    "--json",
                ],
                env=services.env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            print(drill.stdout, drill.stderr)  # the report, in the CI log
            assert drill.returncode == 0, drill.stderr
            report = json.loads(drill.stdout)
            assert report["tenant"] == "tnt_demo_alpha" and report["all_verified"] is True
            steps = {s["name"]: s for s in report["steps"]}
            assert list(steps) == ["disable_client", "rotate_webhook_secrets", "rotate_kek"]
            assert all(s["verified"] and s["evidence"] for s in steps.values()), steps
            assert steps["disable_client"]["expected"] == [["consent.admin_action", CLIENT]]
            assert ["webhooks.admin_action", endpoint] in steps["rotate_webhook_secrets"][
                "expected"
            ]
            # every service seals something (at least its database passwords)
            assert {tuple(e) for e in steps["rotate_kek"]["expected"]} == {
                ("platform.key_rotated", f"kek:{svc}")
                for svc in ("audit", "consent", "rail", "transfer", "vault", "webhooks")
            }
            for s in steps.values():
                assert s["acted_s"] <= s["verified_s"] <= report["time_to_contain_s"]

            async def refused_everywhere() -> bool:
                answers = await asyncio.gather(
                    *(
                        http.get(services.url(svc) + path, headers=leaked)
                        for svc, path in PROBES.items()
                    )
                )
                return all(a.status_code == 401 for a in answers)

            await eventually(refused_everywhere, timeout=60)
            c = services.client("partner")
            again = await http.post(
                f"{services.url('consent')}/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(c["client_id"], c["client_secret"]),
            )
            assert again.status_code == 401, again.text
        finally:
            services.stop()
