"""The console in a real headless Chromium against every service as its own process
(docs/console.md): a partner finds a flow by its correlation id and sees every hop,
replays its failed webhook messages (previewed, with a reason) and sees them delivered,
resends one and rotates its endpoint's secret to one of its own; another tenant's
partner finds nothing of it and never reaches operator pages; an operator sees the flow
through the audit trail, the log's checkpoint and the services' delivery health. Every
page is screenshotted (``ARTIFACTS``) and checked with axe-core (no serious or critical
violation).
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from clearway_webhook_verify import Verifier
from playwright.async_api import Page, async_playwright

from clearway.shared.dlt import DeadLetters, dlt_topic
from clearway.shared.events import new_event
from clearway.shared.kafka import ensure_topics
from clearway.shared.relay import idempotent_producer
from clearway.shared.schemas import default_registry
from clearway.shared.testing.browser import launch_chromium
from clearway.shared.testing.helpers import eventually
from clearway.shared.testing.receiver import VerifyingReceiver
from tests.e2e.test_platform_flow import Platform

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "tests" / "e2e" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
#: Screenshots of every page: the work tree's git-ignored .local/artifacts/ (or the
#: directory CLEARWAY_TEST_ARTIFACTS names, e.g. one a CI job uploads).
ARTIFACTS = Path(os.environ.get("CLEARWAY_TEST_ARTIFACTS", ROOT / ".local" / "artifacts"))


@dataclass
class DeadRecord:
    """A record as a consumer had it when it gave up on it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list


class ConsolePlatform(Platform):
    services = ["consent", "rail", "transfer", "webhooks", "audit", "console"]

    def service_env(self, svc: str) -> dict[str, str]:
        if svc == "consent":
            return {
                "CLEARWAY_CONSENT_CONSOLE_REDIRECT_URIS": f"{self.url('console')}/auth/callback"
            }
        if svc == "console":
            return {
                "CLEARWAY_CONSOLE_CLIENT_SECRET": self.client_secret("clearway-console"),
                "CLEARWAY_CONSOLE_PUBLIC_URL": self.url("console"),
                "CLEARWAY_CONSOLE_TRANSFER_URL": self.url("transfer"),
                "CLEARWAY_CONSOLE_WEBHOOKS_URL": self.url("webhooks"),
                "CLEARWAY_CONSOLE_AUDIT_URL": self.url("audit"),
                "CLEARWAY_CONSOLE_JAEGER_UI_URL": "http://127.0.0.1:16686",
            }
        return super().service_env(svc)


async def launch(pw, profile: Path):
    # axe is injected as a script tag; the console's own CSP (no inline script) is checked
    # on its response headers instead
    return await launch_chromium(pw, profile, bypass_csp=True)


async def sign_in(page: Page, services: ConsolePlatform, username: str, path: str = "/") -> None:
    """Through the consent service's sign-in page and back (PAR + PKCE)."""
    await page.goto(services.url("console") + path)
    await page.fill("#username", username)
    await page.fill("#password", "demo-password")
    await page.click("#sign-in")
    await page.wait_for_url(services.url("console") + path)


async def check(page: Page, name: str) -> None:
    """Screenshot the page, then axe-core: no serious or critical violation."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("async () => await axe.run(document)")
    bad = [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert bad == [], f"{name}: {bad}"


async def test_partners_and_operators_walk_the_console(platform, tmp_path):
    started = time.monotonic()
    services = ConsolePlatform(platform, tmp_path)
    receiver = VerifyingReceiver()  # answers 400 until it has the endpoint's secret
    correlation = f"corr_console_{uuid.uuid4().hex[:12]}"
    trace = {"X-Correlation-ID": correlation}
    browsers: list = []
    async with (
        httpx.AsyncClient(timeout=30) as http,
        receiver.serving() as hook_url,
        async_playwright() as pw,
    ):
        try:
            await services.start(http)
            booted = time.monotonic()
            # The partner's own back end: an endpoint, a consent and a transfer in one flow.
            hooks = await services.token(http, "webhooks", "webhooks:endpoints:manage")
            partner = await services.token(
                http, "partner", "payments:initiate payments:read consents:write"
            )
            since = datetime.now(UTC) - timedelta(seconds=5)
            r = await http.post(
                f"{services.url('webhooks')}/v1/endpoints",
                json={"url": hook_url, "event_types": ["transfer.*", "platform.test_event"]},
                headers={"Authorization": f"Bearer {hooks}", **trace},
            )
            assert r.status_code == 201, r.text
            endpoint, secret = r.json()["id"], r.json()["secret"]
            r = await http.post(
                f"{services.url('consent')}/v1/consents",
                json={
                    "purpose": "rent",
                    "subject": "usr_alice",
                    "scopes": ["payments:initiate"],
                    "authorization_details": [
                        {
                            "type": "payment_initiation",
                            "instructedAmount": {"amount": 1250, "currency": "EUR"},
                            "creditorName": "Landlord",
                            "creditorAccount": {"iban": "DE02100100109307118603"},
                        }
                    ],
                },
                headers={"Authorization": f"Bearer {partner}", **trace},
            )
            assert r.status_code == 201, r.text
            consent_id = r.json()["id"]
            r = await http.post(
                f"{services.url('transfer')}/v1/transfers",
                json={
                    "amount": 1250,
                    "currency": "EUR",
                    "source": "acct_alphaTreasury",
                    "destination": "acct_landlord",
                    "description": "rent",
                },
                headers={
                    "Authorization": f"Bearer {partner}",
                    "Idempotency-Key": f"idem-{uuid.uuid4().hex}",
                    **trace,
                },
            )
            assert r.status_code == 201, r.text
            transfer = r.json()

            # Every delivery fails (three attempts each, schedule 0, 0.5, 1 s): the
            # receiver cannot verify them yet.
            reader = await services.token(http, "webhooks", "webhooks:read")

            async def failed_messages():
                r = await http.get(
                    f"{services.url('webhooks')}/v1/messages",
                    params={"status": "failed", "correlation_id": correlation},
                    headers={"Authorization": f"Bearer {reader}"},
                )
                data = r.json()["data"]
                return data if len(data) == 3 else None

            failed = await eventually(failed_messages, timeout=60)

            # --- the partner (alice, tnt_demo_alpha) ---
            alice = await launch(pw, tmp_path / "alice")
            browsers.append(alice)
            page = alice.pages[0] if alice.pages else await alice.new_page()
            await sign_in(page, services, "alice")
            cookie = next(c for c in await alice.cookies() if c["name"] == "cw_console")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
            response = await page.goto(services.url("console") + "/")
            headers = response.headers
            assert "'unsafe-inline'" not in headers["content-security-policy"]
            assert "frame-ancestors 'none'" in headers["content-security-policy"]
            assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"
            assert "access_token" not in await page.content()
            await check(page, "search")

            await page.fill("#q", correlation)
            await page.click("#search")
            await page.wait_for_selector("#timeline")

            async def every_hop():
                await page.reload()
                text = await page.inner_text("#timeline")
                hops = [
                    "consent.created",
                    "transfer.created",
                    "transfer.submitted",
                    "transfer.settled",
                    "webhook attempt 3",
                    "HTTP 400",
                ]
                return text if all(h in text for h in hops) else None

            text = await eventually(every_hop, timeout=60)
            assert transfer["id"] in await page.inner_text(".facts")
            assert await page.locator("a.proof").count() > 0
            assert (await page.get_attribute("#trace", "href")).startswith(
                "http://127.0.0.1:16686/trace/"
            )
            assert "4242" not in text
            await check(page, "flow")
            # the same flow by transfer id, consent id, webhook message id and trace id
            trace_id = (await page.inner_text("#trace")).split()[0]
            for term in (transfer["id"], consent_id, failed[0]["id"], trace_id):
                await page.goto(f"{services.url('console')}/flows?q={term}")
                assert correlation in await page.inner_text(".facts"), term
            await page.click("a.proof >> nth=0")
            await page.wait_for_selector(".hashes")
            await check(page, "proof")

            await page.goto(f"{services.url('console')}/webhooks?status=failed")
            assert await page.locator("#messages tr[data-status='failed']").count() >= 3
            await check(page, "webhooks")
            # The API filters (event type, created window) and pages with its cursor.
            kind = failed[0]["event_type"]
            await page.select_option("#event_type", kind)
            await page.fill("#since", since.strftime("%Y-%m-%dT%H:%M:%S"))
            await page.click("#filter")
            await page.wait_for_url("**/webhooks?**event_type=**")
            kinds = await page.locator("#messages tbody td:nth-child(2)").all_inner_texts()
            assert kinds and set(kinds) == {kind}, kinds
            await page.goto(f"{services.url('console')}/webhooks?status=failed&limit=1")
            newest = await page.inner_text("#messages tbody td a")
            await page.click("#next-page")
            assert await page.inner_text("#messages tbody td a") != newest
            assert await page.locator("#first-page").count() == 1

            # Replay the failed range: preview, then start with a reason, and see it done.
            receiver.verifier = Verifier([secret])
            await page.goto(
                f"{services.url('console')}/webhooks/replays/new?endpoint_id={endpoint}"
            )
            until = datetime.now(UTC) + timedelta(seconds=5)
            await page.fill("#since", since.strftime("%Y-%m-%dT%H:%M:%S"))
            await page.fill("#until", until.strftime("%Y-%m-%dT%H:%M:%S"))
            await check(page, "replay-new")
            await page.click("#preview")
            await page.wait_for_selector("#progress")
            assert "dry run" in await page.inner_text(".facts")
            assert await page.inner_text("#total") == "3"
            await page.fill("#reason", "partner receiver was misconfigured")
            await page.click("#start")
            await page.wait_for_function(
                "document.getElementById('state').textContent.trim() !== 'running'",
                timeout=30_000,
            )  # the page's script follows the job
            await check(page, "replay")

            async def delivered():
                return receiver.events if len(receiver.events) >= 3 else None

            await eventually(delivered, timeout=30)
            await page.goto(f"{services.url('console')}/webhooks/messages/{failed[0]['id']}")
            assert await page.inner_text("#status") == "delivered"
            await page.fill("#reason", "partner asked for it again")
            await page.click("#resend")
            await page.wait_for_selector("#resent")
            await check(page, "message")

            # Rotate the endpoint's secret to one the partner generated (ADR 0049): the
            # page never shows a secret, and the next delivery (the redrive below) is
            # signed with the new one alone (no grace period).
            mine = "whsec_" + base64.b64encode(os.urandom(32)).decode()
            await page.goto(f"{services.url('console')}/webhooks")
            await page.click(f"a[href='/webhooks/endpoints/{endpoint}']")
            assert "openssl rand -base64 32" in await page.inner_text("main")
            assert await page.get_attribute("#secret", "type") == "password"
            assert await page.get_attribute("#secret", "autocomplete") == "off"
            await page.fill("#secret", mine)
            await page.select_option("#grace_seconds", "0")
            await page.fill("#reason", "yearly secret rotation")
            await page.click("#rotate")
            await page.wait_for_selector("#rotated")
            assert await page.input_value("#secret") == ""
            assert mine.removeprefix("whsec_") not in await page.content()
            await check(page, "endpoint")
            receiver.verifier = Verifier([mine])

            # The reasons are in the tenant's audit trail, recorded by the webhooks service.
            auditor = await services.token(http, "auditor", "audit:read")

            async def reasons():
                got = {}
                for action in ("replay.started", "message.resent", "endpoint.secret_rotated"):
                    r = await http.get(
                        f"{services.url('audit')}/v1/audit/records",
                        params={"action": action, "limit": 100},
                        headers={"Authorization": f"Bearer {auditor}"},
                    )
                    for i in r.json()["data"]:
                        got[action] = (i["reason"], i["actor"]["subject"])
                wanted = {
                    "replay.started": ("partner receiver was misconfigured", "usr_alice"),
                    "message.resent": ("partner asked for it again", "usr_alice"),
                    "endpoint.secret_rotated": ("yearly secret rotation", "usr_alice"),
                }
                return got if got == wanted else None

            await eventually(reasons, timeout=30)

            # A form without the session's CSRF token is refused.
            replayed = httpx.AsyncClient(cookies={"cw_console": cookie["value"]}, timeout=30)
            async with replayed:
                r = await replayed.post(
                    f"{services.url('console')}/webhooks/messages/{failed[0]['id']}/resend",
                    data={"reason": "forged", "csrf": "x"},
                )
            assert r.status_code == 403

            # --- another tenant's partner (bob, tnt_demo_beta) ---
            bob = await launch(pw, tmp_path / "bob")
            browsers.append(bob)
            other = bob.pages[0] if bob.pages else await bob.new_page()
            await sign_in(other, services, "bob")
            r = await other.goto(f"{services.url('console')}/flows?q={correlation}")
            assert r.status == 404
            r = await other.goto(f"{services.url('console')}/flows?q={transfer['id']}")
            assert r.status == 404
            r = await other.goto(f"{services.url('console')}/webhooks/messages/{failed[0]['id']}")
            assert r.status == 404
            r = await other.goto(f"{services.url('console')}/operator")
            assert r.status == 403
            assert await other.locator("a[href='/operator']").count() == 0
            await check(other, "partner-refused")
            await bob.close()

            # A dead letter of the webhooks consumer: one of alice's events it gave up on.
            lost = new_event(
                type="platform.test_event",
                source="/tests",
                aggregate_id="thing_lost",
                aggregate_version=1,
                data={"id": "thing_lost", "amount": 1, "note": None},
                dataschema=default_registry().get("platform.test_event", 1).dataschema,
                correlation_id=correlation,
                tenant="tnt_demo_alpha",
            )
            origin = platform.topic("clearway.transfer.events.v1")
            await ensure_topics(platform.kafka, [dlt_topic(origin, "webhooks")])
            producer = idempotent_producer(platform.kafka)
            await producer.start()
            try:
                failed_record = DeadRecord(origin, 0, 7, lost.key, lost.body(), lost.headers())
                await DeadLetters(producer, "webhooks").send(
                    failed_record, ConnectionError("database unreachable"), attempts=10
                )
            finally:
                await producer.stop()

            # --- the operator (olga, tnt_platform) ---
            olga = await launch(pw, tmp_path / "olga")
            browsers.append(olga)
            op = olga.pages[0] if olga.pages else await olga.new_page()
            await sign_in(op, services, "olga", "/operator")
            await op.wait_for_selector("#health")
            assert "webhooks" in await op.inner_text("#health")
            waiting = op.locator(f"section.dlt[data-depth='1']:has-text('{lost.id}')")
            assert await waiting.count() == 1
            await check(op, "operator")
            await waiting.locator("input[name='reason']").fill("database outage is over")
            await waiting.locator("button.redrive").click()
            await op.wait_for_selector("#redriven")
            assert "1" in await op.inner_text("#redriven")
            assert await op.locator(f"section.dlt:has-text('{lost.id}')").count() == 0

            async def redriven_and_delivered():
                return receiver.of_type("platform.test_event")

            await eventually(redriven_and_delivered, timeout=30)
            await check(op, "operator-redriven")
            await op.click("#verify")
            await op.wait_for_selector("#progress")
            await check(op, "verification")
            await op.goto(f"{services.url('console')}/flows?q={correlation}&tenant=tnt_demo_alpha")
            timeline = await op.inner_text("#timeline")
            assert "transfer.settled" in timeline and "consent.created" in timeline
            await check(op, "operator-flow")
            await op.goto(f"{services.url('console')}/operator/clients")
            assert "clearway-console" in await op.inner_text("main")
            await check(op, "clients")
            r = await op.goto(f"{services.url('console')}/webhooks")
            assert r.status == 403

            # The phone: the flow page fits a 390 px wide screen.
            await page.set_viewport_size({"width": 390, "height": 844})
            await page.goto(f"{services.url('console')}/flows?q={correlation}")
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, width
            await check(page, "flow-phone")

            # Sign-out ends the session at once: its cookie no longer opens a page.
            await page.click("#sign-out")
            await page.wait_for_url(f"{services.url('console')}/signed-out")
            replayed = httpx.AsyncClient(cookies={"cw_console": cookie["value"]}, timeout=30)
            async with replayed:
                r = await replayed.get(f"{services.url('console')}/")
            assert r.status_code == 303 and r.headers["location"].startswith("/auth/sign-in")
            await alice.close()
            await olga.close()
            print(
                f"\nconsole e2e: services up in {booted - started:.1f}s,"
                f" walk in {time.monotonic() - booted:.1f}s; screenshots in {ARTIFACTS}"
            )
        except Exception:
            # what each browser showed when the walk stopped, beside the other screenshots
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            for i, ctx in enumerate(browsers):
                for j, shown in enumerate(ctx.pages):
                    path = ARTIFACTS / f"console-failed-{i}-{j}.png"
                    await shown.screenshot(path=str(path), full_page=True)
            raise
        finally:
            services.stop()
