"""Running it: the service entry point, demo seeding, and the operators' admin CLI."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys

import httpx
import pytest

from clearway.shared.testing.helpers import free_port, kafka_env

from .conftest import authorised_token, read_events

pytestmark = pytest.mark.integration


def env_for(platform, local_dir, **extra):
    return {
        **os.environ,
        "CLEARWAY_DATABASE_URL": platform.database_url,
        **kafka_env(platform),
        "CLEARWAY_TOPIC_PREFIX": platform.topic_prefix,
        "CLEARWAY_LOCAL_DIR": str(local_dir),
        "CLEARWAY_CONSENT_ARGON2_TIME_COST": "1",
        "CLEARWAY_CONSENT_ARGON2_MEMORY_KIB": "1024",
        **extra,
    }


async def run(*args, env):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, out.decode()


async def test_the_service_starts_seeds_demo_clients_and_reseeding_keeps_their_secrets(
    platform, tmp_path
):
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = env_for(
        platform,
        tmp_path,
        CLEARWAY_CONSENT_PORT=str(port),
        CLEARWAY_OAUTH_ISSUER=issuer,
        CLEARWAY_CONSENT_SEED_DEMO="1",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "clearway.consent"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            for _ in range(600):
                try:
                    if (await http.get(f"{issuer}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, "the service exited"
                await asyncio.sleep(0.1)
            clients = json.loads((tmp_path / "dev-clients.json").read_text())
            assert {c["tenant"] for c in clients} == {
                "tnt_demo_alpha",
                "tnt_demo_beta",
                "tnt_demo_alpha_test",  # the sandbox twins (docs/design.md §10)
                "tnt_demo_beta_test",
                "tnt_platform",
            }
            twin = next(c for c in clients if c["client_id"] == "tnt_demo_alpha_test-partner")
            assert twin["client_secret"].startswith("clearway_secret_test_")
            assert all(
                set(c) == {"tenant", "client_id", "client_secret", "scopes"} for c in clients
            )
            auditor = next(c for c in clients if c["client_id"] == "tnt_demo_beta-auditor")
            got = await http.post(
                f"{issuer}/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(auditor["client_id"], auditor["client_secret"]),
            )
            assert got.status_code == 200 and got.json()["scope"] == "audit:read"
            # the transfer service's client: a short-lived rail token for one scope
            transfer = next(c for c in clients if c["client_id"] == "clearway-transfer")
            got = await http.post(
                f"{issuer}/oauth/token",
                data={"grant_type": "client_credentials", "scope": "rail:charges"},
                auth=(transfer["client_id"], transfer["client_secret"]),
            )
            assert got.status_code == 200 and got.json()["scope"] == "rail:charges"
            assert got.json()["expires_in"] <= 300
            payload = got.json()["access_token"].split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            assert claims["aud"] == "clearway-rail" and claims["sub"] == "clearway-transfer"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)

    code, out = await run("-m", "clearway.consent", "seed", env=env)
    assert code == 0, out
    assert json.loads((tmp_path / "dev-clients.json").read_text()) == clients
    code, out = await run("-m", "clearway.consent", "seed", "--rotate", env=env)
    assert code == 0, out
    rotated = json.loads((tmp_path / "dev-clients.json").read_text())
    assert [c["client_id"] for c in rotated] == [c["client_id"] for c in clients]
    assert all(a["client_secret"] != b["client_secret"] for a, b in zip(rotated, clients))


async def test_operators_act_through_the_admin_cli_with_a_reason_and_every_action_is_an_event(
    consent,
):
    admin = consent.client(0, "admin")
    operator = consent.operator()
    partner = consent.client(0, "partner")
    consent_id, _ = await authorised_token(consent, partner)
    base = [
        "-m",
        "clearway.consent.admin",
        "--issuer",
        consent.url,
        "--client-id",
        admin["client_id"],
        "--client-secret",
        admin["client_secret"],
    ]
    as_operator = [*base[:4], "--client-id", operator["client_id"]]
    as_operator += ["--client-secret", operator["client_secret"]]
    env = dict(os.environ)
    code, out = await run(*as_operator, "rotate-keys", env=env)
    assert code == 2 and "--reason" in out  # a reason is required
    code, out = await run(*as_operator, "rotate-keys", "--reason", "key drill", env=env)
    assert code == 0, out
    kid = json.loads(out)["kid"]
    code, out = await run(
        *base,
        "revoke-consent",
        consent_id,
        "--reason",
        "fraud report",
        "--approver",
        "bob",
        env=env,
    )
    assert code == 0 and json.loads(out)["status"] == "Revoked", out
    code, out = await run(
        *base,
        "disable-client",
        consent.client(0, "webhooks")["client_id"],
        "--reason",
        "gone",
        env=env,
    )
    assert code == 0, out
    partner_token = await consent.token(partner, "consents:read")
    code, out = await run(
        *base[:4], "--token", partner_token, "rotate-keys", "--reason", "not allowed", env=env
    )
    assert code == 1 and "platform:keys" in out

    def actions(seen):
        return [e.data["action"] for e in seen if e.type == "consent.admin_action"]

    events = await read_events(
        consent.settings.platform.kafka,
        consent.settings.topic,
        lambda seen: len(actions(seen)) == 3,
    )
    assert sorted(actions(events)) == ["disable_client", "revoke_consent", "rotate_keys"]
    revoke = next(e for e in events if e.data.get("action") == "revoke_consent")
    assert revoke.data["reason"] == "fraud report" and revoke.data["approver"] == "bob"
    assert revoke.data["resource"] == consent_id
    assert any(e.type == "consent.signing_key_rotated" and e.subject == kid for e in events)
    assert any(e.type == "client.disabled" for e in events)
